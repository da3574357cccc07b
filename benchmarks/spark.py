"""The dbt project on Spark (dbt-spark, session method) and its marts against the DuckDB build.

One place for the Spark build command and the cell-by-cell comparison, used by
`tests/scale/test_spark_warehouse.py` and by the scale-out bench (`lagesbild bench
--scale-out`). Needs the optional extra `spark` and Java 17 to build, not to compare.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from flows.warehouse.dbt import dbt_executable
from lagesbild.settings import PROJECT_ROOT

DBT_PROJECT = PROJECT_ROOT / "dbt_project"
# The engines' settings the scale-out bench runs with (named in its results).
SPARK_MASTER = "local[2]"
SPARK_DRIVER_MEMORY = "2g"
DASK_WORKERS, DASK_THREADS = 2, 1

# The known differences: a value rounded from a double. Vandalism cost per apartment
# (int_indicator_values_same_period) and the absence percentages (macro safe_pct) divide
# decimals, which DuckDB does in double and Spark in decimal: DuckDB rounds the double's exact
# binary value, Spark the exact quotient, so a quotient like 1310.685 (binary 1310.68499...)
# gives 1310.68 on DuckDB and 1310.69 on Spark (4 absence percentages of
# mart_attendance_school_grade_month at 10,000 pupils × 3 years; none in the demo). Those cells
# may differ by at most 0.01, the rest of their row exactly; every other cell of every mart is
# compared exactly.
_RATES = ["valid_absence_pct", "invalid_absence_pct", "other_absence_pct", "total_absence_pct"]
ROUNDING_EDGE = {
    "mart_goal_progress": (
        pl.col("indicator_id") == "vandalism_cost_per_apartment_sek",
        ["value", "baseline_value", "previous_value", "target_value", "change_since_baseline"],
    ),
    "mart_attendance_school_grade_month": (pl.lit(True), _RATES),
    "mart_attendance_area_term": (pl.lit(True), _RATES),
}


def missing_for_spark() -> str | None:
    """What the Spark + Dask path lacks on this machine (with the command that installs it),
    or None."""
    modules = ("pyspark", "dbt.adapters.spark", "prefect_dask", "distributed")
    if any(importlib.util.find_spec(m) is None for m in modules):
        return (
            "the Spark + Dask path needs the optional extra `spark` (dbt-spark, pyspark, "
            "prefect-dask, dask): run `uv sync --extra spark`, then run the bench with "
            "`uv run --extra spark lagesbild bench ...`"
        )
    home = os.environ.get("JAVA_HOME")
    if not shutil.which("java") and not (home and (Path(home) / "bin" / "java").exists()):
        return (
            "the Spark + Dask path needs Java 17 or later (pyspark): run `bash scripts/java.sh` "
            "(installs openjdk-17-jre-headless as root), or set JAVA_HOME to a Java 17+ install"
        )
    return None


def spark_build(
    clean: Path, variables: dict, warehouse: Path, as_of: date | None = None
) -> tuple[list[str], dict[str, str]]:
    """The command and environment of `dbt build --target spark` (seeds and models; dbt's
    tests run in the DuckDB build) on the clean layer `clean`, tables under `warehouse`."""
    env = {
        **os.environ,
        "LAGESBILD_CLEAN_DIR": str(clean),
        "LAGESBILD_SPARK_WAREHOUSE": str(warehouse),
        "LAGESBILD_WORK_DB": str(warehouse / "unused.duckdb"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DO_NOT_TRACK": "1",
    }
    if as_of is not None:  # the run date of the DuckDB build (macro as_of_date)
        env["LAGESBILD_AS_OF_DATE"] = as_of.isoformat()
    command = [
        dbt_executable(),
        "build",
        "--resource-type",
        "seed",
        "--resource-type",
        "model",
        "--target",
        "spark",
        "--project-dir",
        str(DBT_PROJECT),
        "--profiles-dir",
        str(DBT_PROJECT),
        "--target-path",
        str(warehouse / "dbt_target"),
        "--log-path",
        str(warehouse / "dbt_logs"),
        "--vars",
        json.dumps(variables),
        "--no-use-colors",
    ]
    return command, env


def duckdb_marts(work_db: Path) -> dict[str, pl.DataFrame]:
    with duckdb.connect(str(work_db), read_only=True) as con:
        names = con.execute(
            "select table_name from information_schema.tables where table_schema = 'marts'"
        ).fetchall()
        return {n: con.sql(f'select * from marts."{n}"').pl() for (n,) in sorted(names)}


def spark_marts(tables: Path) -> dict[str, pl.DataFrame]:
    """The marts as Spark wrote them: managed parquet tables under <warehouse>/marts.db/."""
    with duckdb.connect() as con:
        return {
            folder.name: con.sql(f"select * from read_parquet('{folder}/*.parquet')").pl()
            for folder in sorted((tables / "marts.db").iterdir())
            if folder.is_dir()
        }


def mart_differences(
    expected: dict[str, pl.DataFrame], actual: dict[str, pl.DataFrame]
) -> dict[str, str | None]:
    """Per mart of either build: None when the Spark mart (`actual`) equals the DuckDB one cell
    by cell (same columns in the same order, same rows in any order, every value equal after
    casting Spark's types to DuckDB's; ROUNDING_EDGE allowed), else what differs."""
    differences: dict[str, str | None] = {}
    for name in sorted(set(expected) | set(actual)):
        if name not in actual:
            differences[name] = "missing on Spark"
        elif name not in expected:
            differences[name] = "not in the DuckDB build"
        else:
            differences[name] = _difference(name, expected[name], actual[name])
    return differences


def _difference(name: str, want: pl.DataFrame, got: pl.DataFrame) -> str | None:
    if got.columns != want.columns:
        return f"columns {got.columns}, expected {want.columns}"
    # the same typing: Spark's decimals may be wider (decimal(38, s)); cast to DuckDB's
    try:
        got = got.with_columns(pl.col(c).cast(t, strict=True) for c, t in want.schema.items())
    except pl.exceptions.PolarsError as exc:
        return f"cannot cast to the DuckDB types ({type(exc).__name__})"
    if name in ROUNDING_EDGE:
        rows, columns = ROUNDING_EDGE[name]
        columns = [c for c in columns if c in want.columns]
        keys = [c for c in want.columns if c not in columns]  # the rest of the row: exact
        edge = want.filter(rows).join(got.filter(rows), on=keys, how="full", nulls_equal=True)
        if not edge.height == want.filter(rows).height == got.filter(rows).height:
            return "the rounding-edge rows do not match one to one"
        for c in columns:
            gap = (edge[c] - edge[f"{c}_right"]).abs().cast(pl.Float64).fill_null(0)
            if gap.max() > 0.01 or not (edge[c].is_null() == edge[f"{c}_right"].is_null()).all():
                return f"column {c} of the rounding-edge rows differs by more than 0.01"
        want, got = (f.filter(~rows) for f in (want, got))
    want, got = (f.sort(pl.all(), nulls_last=True) for f in (want, got))
    if got.height != want.height:
        return f"{got.height:,} rows, expected {want.height:,}"
    changed = [_cells(got[c], want[c]) for c in want.columns if not got[c].equals(want[c])]
    return f"values differ in {', '.join(changed)}" if changed else None


def _cells(got: pl.Series, want: pl.Series) -> str:
    """`column (n cells)`, with the largest gap for numbers: how far apart the builds are."""
    differs = got.ne_missing(want)
    text = f"{want.name} ({differs.sum():,} of {want.len():,} cells"
    if want.dtype.is_numeric():
        gap = (got - want).abs().filter(differs).cast(pl.Float64).max()
        text += "" if gap is None else f", at most {gap:g} apart"
    return text + ")"
