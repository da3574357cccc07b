"""End-to-end fixtures, shared by the whole session where a test does not need its own: one
Prefect test API (one per pytest-xdist worker), one small generated municipality, and one
baseline nightly run over it that modules copy (shutil.copytree) before they change anything.
The municipality and the baseline are built once even when two workers run the suite.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pytest
from filelock import FileLock

from lagesbild import runtime

runtime.configure()

PUPILS = 300
THROUGH = date(2025, 10, 31)  # HT2025 up to höstlov's end: three monthly files per system
TEST_KEY = "end-to-end-test-key-0123456789"


def build_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder built once per test session, also across pytest-xdist workers (they share the
    parent of their temporary folders): the first to take the lock builds, the others wait."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    folder, built = base / name, base / f"{name}.built"
    with FileLock(base / f"{name}.lock"):
        if not built.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed build left
            folder.mkdir()
            build(folder)
            built.touch()
    return folder


@pytest.fixture(scope="session", autouse=True)
def prefect_api():
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        prefect_test_harness(server_startup_timeout=180),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield


@pytest.fixture(scope="session")
def municipality(tmp_path_factory) -> dict[str, Path]:
    from demo.generate import generate

    def build(root: Path) -> None:
        generate(
            root / "drop",
            pupils=PUPILS,
            years=1,
            seed=7,
            through=THROUGH,
            truth_dir=root / "truth",
            ss12000_dir=root / "ss12000",
        )

    root = build_once(tmp_path_factory, "municipality", build)
    return {
        "root": root,
        "drop": root / "drop",
        "truth": root / "truth",
        "ss12000": root / "ss12000",
    }


@pytest.fixture(scope="session")
def baseline(municipality, tmp_path_factory) -> dict[str, Path]:
    """One nightly run over the whole generated drop folder, with the default settings. Never
    changed: a test that runs the pipeline again works in a copy (`copy_baseline`)."""
    from flows.nightly import nightly

    def build(root: Path) -> None:
        shutil.copytree(municipality["drop"], root / "drop")
        with pipeline_at(root / "data", root / "drop"):
            state = nightly(return_state=True)
        assert state.is_completed(), state.message

    root = build_once(tmp_path_factory, "baseline", build)
    return {"data": root / "data", "drop": root / "drop"}


def copy_baseline(baseline: dict[str, Path], target: Path) -> dict[str, Path]:
    """A copy of the baseline's data folder and of its drop folder, under `target`."""
    copy = {"data": target / "data", "drop": target / "drop"}
    for name, path in copy.items():
        shutil.copytree(baseline[name], path, symlinks=True)
    return copy


@pytest.fixture(scope="module")
def pipeline_env(baseline, tmp_path_factory):
    """Point the pipeline at a copy of the baseline run (data and drop folder: tests may add
    files to either)."""
    copy = copy_baseline(baseline, tmp_path_factory.mktemp("pipeline"))
    with pipeline_at(copy["data"], copy["drop"]):
        yield copy["data"]


@contextmanager
def pipeline_at(data: Path, drop: Path, **settings: str) -> Iterator[None]:
    """Point the pipeline (settings read from the environment) at a data and drop folder."""
    values = {
        "LAGESBILD_DATA_DIR": str(data),
        "LAGESBILD_DROP_DIR": str(drop),
        "LAGESBILD_PSEUDONYM_KEY": TEST_KEY,
        "LAGESBILD_DBT_DOCS": "false",  # ~10 s a run; test_bi_access checks the docs
        "LAGESBILD_MIN_FILE_AGE_SECONDS": "0",  # tests drop files and run at once
        **{f"LAGESBILD_{k.upper()}": v for k, v in settings.items()},
    }
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
