"""Markers and scheduling for the whole suite (no fixtures: unit tests stay free of Prefect).

Every test under tests/flows starts Prefect or runs a flow: it is marked `flow`, so
`pytest -m "not flow"` (`make test-fast`) runs the rest in under a minute.

`make test` runs two pytest-xdist workers (`-n 2 --dist loadfile`: a module's tests run on
one worker, in file order, since many build on each other's runs). The workers take the
end-to-end modules first, longest first, and the fast tests last, to fill the gaps.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # xdist starts its workers with COLUMNS=80: a rich console created then keeps that width
    # for good (`lagesbild status` would wrap file names), unlike in a plain pytest run.
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)

FLOWS = Path(__file__).parent / "flows"
# The end-to-end modules, longest first.
ORDER = [
    "test_operations",
    "test_ss12000",
    "test_bi_access",
    "test_statistics",
    "test_housing",
    "test_nightly",
]


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if FLOWS in item.path.parents:
            item.add_marker(pytest.mark.flow)
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker collects: the order must be stable

        def rank(item: pytest.Item) -> int:
            if FLOWS in item.path.parents and item.path.stem in ORDER:
                return ORDER.index(item.path.stem)
            return len(ORDER) + (0 if FLOWS in item.path.parents else 1)

        items.sort(key=rank)  # stable: file order within each rank
