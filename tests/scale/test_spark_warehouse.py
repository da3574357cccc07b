"""The dbt project on Spark (dbt-spark, session method: a local Spark in the dbt process)
builds the same marts as on DuckDB, cell by cell, from the same clean parquet. The build
command and the comparison live in benchmarks/spark.py (the scale-out bench uses them too)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from benchmarks.spark import duckdb_marts, mart_differences, spark_build, spark_marts
from flows.layers.audit import read_runs

pytestmark = pytest.mark.timeout(3600)


def test_demo_warehouse_on_spark_equals_duckdb(baseline, tmp_path):
    data = baseline["data"]
    # the variables and the run date of the baseline's DuckDB build (a run may cross midnight)
    results = json.loads((data / "warehouse/dbt_target/run_results.json").read_text())
    run_date = read_runs(data / "audit")["run_date"][-1]
    command, env = spark_build(data / "clean", results["args"]["vars"], tmp_path, run_date)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-6000:]
    print(f"spark build: {time.perf_counter() - started:.0f} s")

    expected = duckdb_marts(data / "warehouse/work.duckdb")
    assert len(expected) == 16
    assert mart_differences(expected, spark_marts(tmp_path / "tables")) == dict.fromkeys(expected)
