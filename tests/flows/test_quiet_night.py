"""A quiet night: a nightly with nothing new skips dbt, publish and report and leaves the
served marts untouched; a new run date rebuilds only the run-date mart; a changed reference
file is built and published (docs/operations.md, *A quiet night*)."""

from __future__ import annotations

import json
import shutil
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

from flows.layers.audit import read_runs
from flows.nightly import nightly
from flows.warehouse import dbt
from lagesbild.cli import app
from lagesbild.settings import Settings
from tests.flows.conftest import copy_baseline, pipeline_at

pytestmark = pytest.mark.flow

SKIPPED = "nothing new: stages skipped (dbt, publish, report)"


def served(data: Path) -> dict[str, tuple[int, bytes]]:
    """Every served file: its modification time (ns) and its bytes."""
    files = [data / "warehouse/marts.duckdb", *sorted((data / "warehouse/marts").glob("*.parquet"))]
    assert len(files) > 10
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}


def last_summary(data: Path) -> str:
    return max((data / "reports/runs").glob("*.md"), key=lambda p: p.stat().st_mtime).read_text()


def checked_on(data: Path) -> set[date]:
    con = duckdb.connect(str(data / "warehouse/marts.duckdb"), read_only=True)
    try:
        return {
            r[0] for r in con.execute("select checked_on from mart_source_freshness").fetchall()
        }
    finally:
        con.close()


@pytest.fixture(scope="module")
def copy(baseline, tmp_path_factory):
    return copy_baseline(baseline, tmp_path_factory.mktemp("quiet"))


def test_a_night_with_nothing_new_skips_every_stage_after_clean(copy):
    run_date = read_runs(copy["data"] / "audit")["run_date"][-1]
    before = served(copy["data"])
    report = copy["data"] / "reports/lagesbild/index.html"
    report_before = report.stat().st_mtime_ns
    with pipeline_at(copy["data"], copy["drop"]):
        started = time.perf_counter()
        summary = nightly(run_date=run_date)
        seconds = time.perf_counter() - started
    print(f"quiet nightly (Prefect API already up): {seconds:.1f} s")
    assert summary.status == "Completed"
    assert summary.skipped == ["dbt", "publish", "report"]
    assert list(summary.stage_seconds) == ["extract", "clean"]
    assert summary.landed == [] and summary.clean.loads == [] and summary.published == []
    assert served(copy["data"]) == before  # same bytes, same modification times
    assert report.stat().st_mtime_ns == report_before
    assert f"- {SKIPPED}" in last_summary(copy["data"])
    runs = read_runs(copy["data"] / "audit")
    last = runs.row(-1, named=True)
    assert (last["status"], last["published"], last["note"], last["loads"]) == (
        "Completed",
        False,
        SKIPPED,
        0,
    )
    assert runs["note"][-2] is None  # the baseline run built and published
    with pipeline_at(copy["data"], copy["drop"]):  # `lagesbild status` says why
        status = CliRunner().invoke(app, ["status"], env={"COLUMNS": "200"}).output
    assert f"The last run (nightly): {SKIPPED}" in status, status


def test_a_new_run_date_rebuilds_only_the_freshness_mart(copy):
    """The freshness mart judges lag on the run date; every other mart is the same."""
    run_date = read_runs(copy["data"] / "audit")["run_date"][-1] + timedelta(days=1)
    before = served(copy["data"])
    with pipeline_at(copy["data"], copy["drop"]):
        summary = nightly(run_date=run_date)
    assert summary.skipped == [] and summary.note is None
    assert summary.dbt_mode.endswith("(--select mart_source_freshness)"), summary.dbt_mode
    assert summary.dbt_mode.startswith("incremental: only the run date changed")
    assert summary.dbt_nodes == 14  # the mart and its 13 tests
    after = served(copy["data"])
    assert after["marts.duckdb"][0] != before["marts.duckdb"][0]  # published again
    changed = sorted(n for n in after if n.endswith(".parquet") and after[n][1] != before[n][1])
    assert changed == ["mart_source_freshness.parquet"]
    assert checked_on(copy["data"]) == {run_date}
    # and that new day, run once more, is quiet again
    with pipeline_at(copy["data"], copy["drop"]):
        assert nightly(run_date=run_date).skipped == ["dbt", "publish", "report"]


def test_a_changed_reference_file_is_not_skipped(copy, tmp_path):
    """An area renamed in the drop folder's reference data: nothing lands, but the clean
    reference file changes; everything is built (reference data is not a subgraph)."""
    data, drop = tmp_path / "data", tmp_path / "drop"
    shutil.copytree(copy["data"], data, symlinks=True)
    shutil.copytree(copy["drop"], drop)
    run_date = read_runs(data / "audit")["run_date"][-1]
    areas = drop / "reference/areas.csv"
    text = areas.read_text(encoding="utf-8")
    name = pl.read_csv(areas)["area_name"][0]
    areas.write_text(text.replace(f",{name},", f",{name} norra,", 1), encoding="utf-8")
    before = served(data)
    with pipeline_at(data, drop):
        summary = nightly(run_date=run_date)
    assert summary.skipped == [] and summary.landed == []
    assert (
        summary.dbt_mode
        == "incremental: the dbt project is unchanged; only changed months are rebuilt"
    )
    assert summary.dbt_nodes > 200
    assert served(data)["marts.duckdb"][0] != before["marts.duckdb"][0]
    con = duckdb.connect(str(data / "warehouse/marts.duckdb"), read_only=True)
    try:
        names = {r[0] for r in con.execute("select area_name from dim_area").fetchall()}
    finally:
        con.close()
    assert f"{name} norra" in names and name not in names
    assert read_runs(data / "audit")["note"][-1] is None


def _grade_test(data: Path) -> tuple[str, set[str]]:
    """What the last dbt build ran as the grade test of the pupil days, and the kinds of nodes
    it ran."""
    results = json.loads((data / "warehouse/dbt_target/run_results.json").read_text())
    kinds = {r["unique_id"].split(".")[0] for r in results["results"]}
    code = next(
        r["compiled_code"]
        for r in results["results"]
        if r["unique_id"].startswith("test.lagesbild.accepted_values_int_pupil_days_enriched")
    )
    return code, kinds


def test_dbt_tests_the_rows_it_wrote_and_every_row_after_a_failed_build(copy, tmp_path):
    """The pupil-level tests check the rows the build wrote (`where: this_build`); a build
    that failed leaves its rows untested, so the next one tests every row: a bad month cannot
    slip through behind a good new one. An incremental build runs no dbt unit tests."""
    data, drop = tmp_path / "data", tmp_path / "drop"
    shutil.copytree(copy["data"], data, symlinks=True)
    shutil.copytree(copy["drop"], drop)
    run_date = read_runs(data / "audit")["run_date"][-1]
    months = sorted((data / "clean/attendance").glob("period=*/part-0.parquet"))
    bad, later = months[0], months[-1]
    good = pl.read_parquet(bad)
    # a grade no school has (as a bug in the clean step could write): one row of the month
    good.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("X")).otherwise("grade").alias("grade")
    ).write_parquet(bad)
    marker = data / "warehouse/work.build-unfinished"
    this_build = "where built_at = cast("
    with pipeline_at(data, drop):
        with pytest.raises(dbt.DbtFailed, match="accepted_values_int_pupil_days"):
            dbt.dbt_build(Settings(), run_date)  # the bad month is rebuilt and tested
        assert this_build in _grade_test(data)[0]
        assert marker.exists()
        later.touch()  # a new version of another month: the next build rebuilds only that one
        with pytest.raises(dbt.DbtFailed, match="accepted_values_int_pupil_days"):
            dbt.dbt_build(Settings(), run_date)  # every row tested: the bad month still fails
        assert this_build not in _grade_test(data)[0]
        good.write_parquet(bad)  # repaired
        assert dbt.dbt_build(Settings(), run_date).selected
        assert not marker.exists()
        later.touch()
        build = dbt.dbt_build(Settings(), run_date)  # green before: its own rows only
    code, kinds = _grade_test(data)
    assert this_build in code
    assert kinds == {"model", "test", "exposure"}  # no unit_test: the code has not changed
    assert build.selected and not build.full_refresh and not marker.exists()
    con = duckdb.connect(str(data / "warehouse/work.duckdb"), read_only=True)
    try:
        built = con.execute(
            "select strftime(month, '%Y-%m'), count(*) from intermediate.int_pupil_days_enriched "
            "where built_at = (select max(built_at) from intermediate.int_pupil_days_enriched) "
            "group by 1 order by 1"
        ).fetchall()
    finally:
        con.close()
    # the last build wrote the month touched, and its tests checked those rows only
    assert built == [(later.parent.name.removeprefix("period="), pl.read_parquet(later).height)]
