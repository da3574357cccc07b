"""The clean step fanned out on Dask (setting dask_scheduler_address; flows/layers/fanout.py):
each (dataset, period) is a Prefect task on a LocalCluster's worker processes, and the run
writes the same clean partitions, quarantine, audit and marts as the in-process baseline."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest
from distributed import LocalCluster

from flows.nightly import nightly
from tests.flows.conftest import pipeline_at

pytestmark = pytest.mark.timeout(1800)

# what differs between two runs of the same loads: when and in which run, and the landing
# time in a load id (`<landed at>-<content hash>`)
RUN_COLUMNS = ["run_id", "started_at", "finished_at", "seconds"]
LANDED_AT = r"^[^-]*-"


def without_landing_time(frame: pl.DataFrame) -> pl.DataFrame:
    if "load_id" not in frame.columns:
        return frame
    return frame.with_columns(pl.col("load_id").str.replace(LANDED_AT, ""))


def parquet_files(root: Path) -> dict[str, pl.DataFrame]:
    return {
        re.sub(r"load_id=[^-/]*-", "load_id=", str(path.relative_to(root))): without_landing_time(
            pl.read_parquet(path)
        )
        for path in sorted(root.rglob("*.parquet"))
        if not path.name.startswith(".")
    }


def marts(work_db: Path) -> dict[str, pl.DataFrame]:
    with duckdb.connect(str(work_db), read_only=True) as con:
        names = con.execute(
            "select table_name from information_schema.tables where table_schema = 'marts'"
        ).fetchall()
        return {
            n: con.sql(f'select * from marts."{n}"').pl().sort(pl.all(), nulls_last=True)
            for (n,) in sorted(names)
        }


def test_clean_on_dask_equals_in_process(baseline, municipality, tmp_path):
    drop = tmp_path / "drop"
    shutil.copytree(municipality["drop"], drop)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        pipeline_at(tmp_path / "data", drop, dask_scheduler_address=cluster.scheduler_address),
    ):
        state = nightly(return_state=True)
    assert state.is_completed(), state.message
    data, expected = tmp_path / "data", baseline["data"]

    clean, want = parquet_files(data / "clean"), parquet_files(expected / "clean")
    assert sorted(clean) == sorted(want)
    # 3 months and their source days, 2 housing years, 6 reference and 5 statistics files
    assert len(want) == 19
    for name, frame in want.items():
        assert clean[name].equals(frame), name
    quarantine = parquet_files(data / "quarantine")
    want_quarantine = parquet_files(expected / "quarantine")
    assert sorted(quarantine) == sorted(want_quarantine)
    for name, frame in want_quarantine.items():
        assert quarantine[name].equals(frame), name

    assert_same_audit_and_warehouse(data, expected)


def assert_same_audit_and_warehouse(data: Path, expected: Path) -> None:
    """The same 37 loads accounted alike (run columns and landing times aside) and the same
    tables in the work warehouse as the in-process baseline."""
    loads, want_loads = (
        without_landing_time(pl.read_parquet(d / "audit/loads.parquet").drop(RUN_COLUMNS)).sort(
            "load_id"
        )
        for d in (data, expected)
    )
    assert loads.height == 37
    assert loads.equals(want_loads)
    got, want_marts = (marts(d / "warehouse/work.duckdb") for d in (data, expected))
    assert sorted(got) == sorted(want_marts)
    for name, frame in want_marts.items():
        assert got[name].equals(frame), name
