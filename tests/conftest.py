"""Markers and scheduling for the whole suite (no fixtures: unit tests stay free of Prefect).

Every test under tests/flows starts Prefect or runs a flow: it is marked `flow`, so
`pytest -m "not flow"` (`make test-fast`) runs the rest in under a minute. The tests under
tests/scale are marked `spark` and run only in `make test-spark` (the optional extra `spark`).
The long end-to-end scenarios are marked `scenario` in their modules and run in
`make test-scenarios`, outside the dev loop (docs/testing.md).

`make test` runs two pytest-xdist workers (`-n 2 --dist loadgroup`). A module whose tests
build on each other's runs is one xdist group (one worker, file order); the tests of
test_operations each work in their own copy and are spread singly. xdist hands out the groups
first (most tests first), then single tests in the order below: the fast tests, so that one
worker runs them while the other builds the shared baseline run, then the other end-to-end
tests.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # xdist starts its workers with COLUMNS=80: a rich console created then keeps that width
    # for good (`lagesbild status` would wrap file names), unlike in a plain pytest run.
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)

FLOWS = Path(__file__).parent / "flows"
# Scale-out tests (Spark, Dask): the optional extra `spark`; `make test-spark` only. Without
# the extra they are not even collected (their modules import it).
SCALE = Path(__file__).parent / "scale"
if importlib.util.find_spec("pyspark") is None or importlib.util.find_spec("prefect_dask") is None:
    collect_ignore = ["scale"]
# Modules whose tests share one data folder in order; the longest first.
GROUPED = [
    "test_region",  # its own Prefect server, two workers and six nightly runs
    "test_ss12000",
    "test_prefect_server",
    "test_bi_access",
    "test_statistics",
    "test_housing",
    "test_nightly",
]


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups and `-m` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SCALE in item.path.parents:
            item.add_marker(pytest.mark.spark)
        if FLOWS in item.path.parents:
            item.add_marker(pytest.mark.flow)
            if item.path.stem in GROUPED:
                item.add_marker(pytest.mark.xdist_group(item.path.stem))
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker collects: the order must be stable

        def rank(item: pytest.Item) -> int:
            if item.path.stem in GROUPED and FLOWS in item.path.parents:
                return GROUPED.index(item.path.stem)
            # the fast tests before the other end-to-end ones: one worker runs them while the
            # other builds the session's baseline run (the first group needs it)
            return len(GROUPED) + (1 if FLOWS in item.path.parents else 0)

        items.sort(key=rank)  # stable: file order within each rank
