"""The benchmark's results writer, summary parser and marts comparison, on constructed figures."""

from __future__ import annotations

import os
import sys
from datetime import UTC, date, datetime

import polars as pl
import pytest

from benchmarks.compare import difference
from benchmarks.results import (
    GB,
    PYTHON_ALONE,
    Machine,
    NightlyRun,
    Peer,
    Process,
    Results,
    ScaleOutRun,
    ScaleResult,
    cost_model,
    fit_exponent,
    projected_rows,
    render,
    scale_out_exponents,
    scale_out_rows,
    targets,
)
from benchmarks.run import BenchFailed, measure, parse_summary
from benchmarks.spark import mart_differences
from flows.layers.gate import GateResult
from flows.reports.run_summary import RunSummary
from flows.reports.run_summary import render as render_summary
from lagesbild.settings import Paths

MACHINE = Machine("Test CPU 9000", 2, 24 * GB, "3.11.7", "Linux 6", "abc1234")
EQUAL = dict.fromkeys(["mart_a", "mart_b"])


def nightly(wall, stages, rows, rss=GB):
    return NightlyRun(Process(wall, rss, rss // 2), stages, rows, 2)


def scale(pupils, years, full, new_day, limit_stages, pandas_seconds=None, rss=GB, rows=1_000_000):
    return ScaleResult(
        pupils=pupils,
        years=years,
        seed=2026,
        new_day=date(2026, 6, 1),
        generation_seconds=10.0,
        full=nightly(full["wall"], full["stages"], rows, rss),
        new_day_run=nightly(new_day["wall"], new_day["stages"], 5_000),
        limit=Peer(Process(5.0, GB, GB), limit_stages, EQUAL, {"mart_a": 10, "mart_b": 3}),
        pandas=None
        if pandas_seconds is None
        else Peer(Process(pandas_seconds, 2 * GB, 2 * GB), {"read": 1.0}, EQUAL),
        extract_floor=Peer(Process(30.0, GB, GB), {"read": 20.0}, {}),
    )


def results():
    stages = {"extract": 80, "clean": 50, "gate": 10, "dbt": 20, "publish": 5, "report": 3}
    stages |= {"gx_startup": 8, "dbt_startup": 7}  # within gate and dbt
    small = {"extract": 1, "clean": 2, "gate": 1, "dbt": 3, "publish": 1, "report": 2}
    return Results(
        machine=MACHINE,
        started=datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
        scales=[
            scale(
                1500,
                1,
                {"wall": 40.0, "stages": small},
                {"wall": 30.0, "stages": small},
                {"clean": 1.0, "marts": 1.0, "publish": 0.0},
            ),
            scale(
                10_000,
                3,
                {"wall": 190.0, "stages": stages},
                {"wall": 30.0, "stages": {"extract": 1.0, "clean": 2.0, "dbt": 5.0}},
                {"clean": 40.0, "marts": 10.0, "publish": 1.0},
                pandas_seconds=1650.0,
            ),
            scale(
                100_000,
                1,
                {"wall": 900.0, "stages": stages},
                {"wall": 60.0, "stages": {"extract": 4.0, "clean": 4.0, "dbt": 1.0}},
                {"clean": 40.0, "marts": 10.0, "publish": 1.0},
                rss=int(8.2 * GB),
            ),
        ],
        fixed_costs={"Prefect": 20.0, "dbt": 8.0, PYTHON_ALONE: 0.2},
        fixed_costs_warm={"Prefect": 4.0, "dbt": 2.0, PYTHON_ALONE: 0.4},
        label="constructed figures",
    )


def with_quiet_nights(figures):
    """1,500 × 1: 12 s, nothing rewritten; 10,000 × 3: 9 s but the marts rewritten."""
    quiet = {"extract": 0.5, "clean": 0.5}
    # strict=False: the third scale (100,000 × 1) has no quiet night ("not measured")
    for scale_, wall, untouched in zip(figures.scales, (12.0, 9.0), (True, False), strict=False):
        scale_.quiet_night, scale_.quiet_untouched = nightly(wall, quiet, 0), untouched
    return figures


def test_targets_are_judged_at_their_scales():
    figures = with_quiet_nights(results())
    # 100,000 × 1: the new day's run (its dbt) peaks above the full build, and that counts
    figures.scales[-1].new_day_run.process = Process(30.0, int(8.5 * GB), GB)
    assert targets(figures) == [
        (
            "peak RSS of the process tree ≤ 6 GB, every nightly run",
            "100,000 × 1",
            "8.50 GB (full build 8.20 GB)",
            "missed",
        ),
        # landing → marts: (50 + 10 - 8 + 20 - 7 + 5) / (40 + 10 + 1) = 1.37 (1,500: 7 / 2);
        # extract 80 / 20 (1,500: 1 / 20)
        (
            "pipeline / floor measured at every scale (extract and landing → marts)",
            "1,500 × 1, 10,000 × 3, 100,000 × 1",
            "1,500 × 1: 3.50× landing → marts, 0.05× extract, "
            "10,000 × 3: 1.37× landing → marts, 4.00× extract, "
            "100,000 × 1: 1.37× landing → marts, 4.00× extract",
            "met",
        ),
        # 1650 / (80 + 50 + 10 + 20 + 5 - 8 - 7) = 11.0; with start-up 1650 / 165 = 10.0
        (
            "at least 4× faster than pandas",
            "10,000 × 3",
            "pandas takes 11.0× the pipeline (10.0× with the pipeline's start-up)",
            "met",
        ),
        # (1 + 2 + 5) / 150 = 5.3 %; with start-up 8 / 165 = 4.8 %
        (
            "a nightly with one new day ≤ 3 % of a full build",
            "10,000 × 3",
            "5.3 % (4.8 % with start-up)",
            "missed",
        ),
        # (4 + 4 + 1) / 150 = 6.0 %; with start-up 9 / 165 = 5.5 %
        (
            "a nightly with one new day ≤ 3 % of a full build",
            "100,000 × 1",
            "6.0 % (5.5 % with start-up)",
            "missed",
        ),
        # a small municipality: (1 + 2 + 1 + 3 + 1) / 8 both times = 100 %
        (
            "a nightly with one new day ≤ 15 % of a full build",
            "1,500 × 1",
            "100.0 % (100.0 % with start-up)",
            "missed",
        ),
        *[
            (
                "a night with nothing new ≤ 15 s (Prefect included), the served marts untouched",
                label,
                figure,
                status,
            )
            for label, figure, status in (
                ("1,500 × 1", "12.0 s wall, served marts untouched", "met"),
                ("10,000 × 3", "9.0 s wall, served marts REWRITTEN", "missed"),
                ("100,000 × 1", "–", "not measured"),
            )
        ],
        # (4 + 2) / the demo's full build wall of 40 s: Python's own start is in no target
        (
            "fixed start-up (Prefect, dbt, GX; warm) ≤ 15 % of the demo nightly",
            "1,500 × 1",
            "15.0 % (6.0 s, Python's own start counted in each)",
            "met",
        ),
    ]


def test_targets_not_measured_without_their_scale():
    only_demo = results()
    only_demo.scales = only_demo.scales[:1]
    statuses = [status for *_, status in targets(only_demo)]
    # RSS, floor, pandas, the small new day, the quiet night, the fixed start-up
    assert statuses == ["not measured", "met", "not measured", "missed", "not measured", "met"]


def test_cost_model_fits_the_exponent_and_projects_a_year():
    a, b = fit_exponent([(1_000, 2.0), (10_000, 20.0), (100_000, 200.0)])
    assert (round(a, 6), round(b, 6)) == (0.002, 1.0)
    assert fit_exponent([(1_000, 2.0)]) is None
    assert fit_exponent([(1_000, 2.0), (1_000, 3.0)]) is None  # one size: no slope
    quadratic = fit_exponent([(10, 100.0), (100, 10_000.0)])
    assert round(quadratic[1], 6) == 2.0
    grown = results()
    for scale_, rows in zip(grown.scales, (1_000_000, 30_000_000, 100_000_000), strict=True):
        scale_.full.rows = rows
    grown.scales[2].cut = True  # a cut year gives no rows per pupil-year
    # (1e6 / 1,500 + 3e7 / 30,000) / 2 = 833.33 rows per pupil-year × 250,000
    assert projected_rows(grown) == 208_333_333
    extract = cost_model(grown)[0]
    assert extract[:4] == ["extract", "1.0", "80.0", "80.0"]
    assert extract[5].endswith("min)")


def test_render_writes_machine_stages_ratios_and_fixed_costs():
    text = render(results())
    assert "> **constructed figures**" in text
    assert "Test CPU 9000, 2 cores, 24.0 GB RAM, Linux 6, Python 3.11.7." in text
    # stages of the 10,000 × 3 full build: start-up = 190 - 168 = 22, rows/s = 1e6 / 150
    assert (
        "| 10,000 × 3 | full build | 1,000,000 | 2 | 22.0 | 80.0 | 50.0 | 10.0 | 20.0 | 5.0 "
        "| 8.0 + 7.0 | 3.0 | 190.0 | 6,667 | 1.00 GB | 0.50 GB |"
    ) in text
    assert "| 10,000 × 3 | clean + gate / clean | 52.0 | 8.0 | 40.0 | 1.30× | 1.50× |" in text
    assert (
        "| 10,000 × 3 | **total** (landing → published marts) | 70.0 | 15.0 | 51.0 | **1.37×** "
        "| 1.67× |"
    ) in text
    assert "equal (10, 3 rows)" in text
    assert "| 10,000 × 3 | 1,650.0 | read 1.0 | 150.0 | 11.00× | 10.00× | 2.00 GB | equal" in text
    assert "| 1,500 × 1 | not run |" in text
    # fixed costs, first and later start, the later one as a share of the 1,500 × 1 full
    # build's wall time (40 s)
    assert "| Prefect | 20.0 | 4.0 | 10 % |" in text
    assert "| dbt | 8.0 | 2.0 | 5 % |" in text
    assert f"| {PYTHON_ALONE} | 0.2 | 0.4 | 1 % |" in text
    quiet = render(with_quiet_nights(results()))
    assert (
        "| 1,500 × 1 | nothing new (the same run date again) | 0 | 2 | 11.0 | 0.5 | 0.5 | – | – "
        "| – | – + – | – | 12.0 | 0 | 1.00 GB | 0.50 GB |"
    ) in quiet


def test_a_difference_is_reported():
    broken = results()
    assert broken.all_equal
    broken.scales[0].limit.differences = {"mart_a": None, "mart_b": "3 rows, expected 4"}
    assert "DIFFERENT: mart_b: 3 rows, expected 4" in render(broken)
    assert not broken.all_equal  # `lagesbild bench` exits 1


def test_parse_summary_reads_what_the_run_summary_writes(tmp_path):
    summary = RunSummary("run-1", date(2026, 6, 1), status="Completed")
    summary.stage_seconds = {"extract": 1.5, "clean": 9.0, "dbt": 20.25, "publish": 0.5}
    summary.clean.gates = [
        GateResult("suite", "period=2026-05", 10, [], seconds=3.0, startup_seconds=2.5),
        GateResult("suite", "loads", 1, [], seconds=1.0),
    ]
    summary.clean.loads = [
        {
            "dataset": "skola24_csv",
            "file": f"f{i}.csv",
            "rows_received": 1_234_567,
            "rows_clean": 1_234_560,
            "rows_quarantined": 7,
            "rows_duplicate": 0,
            "status": "cleaned",
            "gate": "passed",
        }
        for i in range(2)
    ]
    summary.landed = ["f0.csv", "f1.csv"]
    summary.dbt_execution_seconds = 15.0
    text = render_summary(summary, Paths(tmp_path, tmp_path))
    stages, rows, files = parse_summary(text)
    # the summary rounds to 0.1 s; clean without the gate = 9.0 - (3.0 + 1.0); dbt's start-up
    # = 20.2 - 15.0 of execution
    assert stages == {
        "extract": 1.5,
        "clean": 5.0,
        "dbt": 20.2,
        "publish": 0.5,
        "gate": 4.0,
        "gx_startup": 2.5,
        "dbt_startup": pytest.approx(5.2),
    }
    assert (rows, files) == (2_469_134, 2)


def test_difference_is_exact_and_order_free():
    published = pl.DataFrame({"area": ["a", "b"], "pupils": [12, None], "pct": [1.25, None]})
    assert difference(published, published.reverse()) is None
    changed = published.with_columns(pct=pl.Series([1.26, None]))
    assert "1 published rows not produced" in difference(published, changed)
    assert difference(published, published.head(1)) == "1 rows, expected 2"
    widened = published.with_columns(pl.col("pupils").cast(pl.Int32))
    assert difference(published, widened) == "types differ: pupils Int32 (expected Int64)"
    assert difference(published, widened, cast=True) is None
    assert difference(published, published.select("pupils", "area", "pct")).startswith("columns")


def test_measure_sees_the_memory_of_a_grandchild(tmp_path):
    """Peak RSS counts the whole process tree (dbt, Prefect's server are grandchildren)."""
    grandchild = "b = b'x' * 300_000_000; import time; time.sleep(1.0)"
    child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {grandchild!r}])"
    process = measure([sys.executable, "-c", child], dict(os.environ), tmp_path / "ok.log")
    assert process.peak_rss >= 300_000_000
    assert process.max_process_rss >= 300_000_000
    with pytest.raises(BenchFailed, match="boom"):
        measure(
            [sys.executable, "-c", "raise SystemExit('boom')"], dict(os.environ), tmp_path / "x.log"
        )


def test_pandas_peer_rounds_like_duckdb():
    """4.585 is stored as 4.58499…: DuckDB rounds it down, scaling by 100 first would not;
    an exact tie (0.125) goes away from zero. Checked against DuckDB itself."""
    import duckdb
    import pandas as pd

    from benchmarks.pandas_peer import _round2

    values = [100.0 * 13755 / 300000, 100.0 * 13785 / 300000, 0.125, -0.125, 2.675, float("nan")]
    expected = duckdb.execute(
        "select round(v, 2) from unnest(?) with ordinality t(v, i) order by i", [values[:-1]]
    ).fetchall()
    assert [r[0] for r in expected] == [4.58, 4.59, 0.13, -0.13, 2.67]
    rounded = _round2(pd.Series(values)).tolist()
    assert rounded[:-1] == [4.58, 4.59, 0.13, -0.13, 2.67]
    assert rounded[-1] != rounded[-1]  # NaN stays NaN


def test_a_scale_without_the_floor_is_said_so():
    big = results()
    big.scales[2].limit = None
    text = render(big)
    assert "- 100,000 × 1: the floor was not run." in text
    assert "| 100,000 × 1 | clean + gate / clean" not in text
    assert targets(big)[1][3] == "missed"


def scale_out(wall=200.0, spark=120.0, execution=90.0, differences=EQUAL, **changed):
    """The Spark + Dask path's full build: the run (its DuckDB build, publish and report are
    not the path's) and dbt on Spark."""
    stages = {"extract": 70, "clean": 25, "gate": 12, "gx_startup": 9, "dbt": 30}
    stages |= {"publish": 5, "report": 4} | changed
    run = NightlyRun(Process(wall, 3 * GB, GB), stages, 1_000_000, 2)
    rows = {"mart_a": 10, "mart_b": 3}
    return ScaleOutRun(run, Process(spark, 2 * GB, 2 * GB), execution, differences, rows, 6.5)


def test_scale_out_side_by_side_with_the_default_path():
    figures = results()
    big = figures.scales[1]  # default full: extract 80, clean 50, gate 10 (GX 8), dbt 20 (7)
    big.scale_out = scale_out()
    assert scale_out_rows(big) == [
        # start-up: 190 - 168 = 22 against 200 - 146 = 54 (the cluster's start within it)
        ["10,000 × 3", "full build", "start-up + shutdown of `lagesbild run`", "22.0", "54.0",
         "2.45×"],
        ["10,000 × 3", "full build", "extract", "80.0", "70.0", "0.88×"],
        ["10,000 × 3", "full build", "clean (without the gate)", "50.0", "25.0", "0.50×"],
        ["10,000 × 3", "full build", "gate", "10.0", "12.0", "1.20×"],
        ["10,000 × 3", "full build", "… of which the GX import", "8.0", "9.0", "1.12×"],
        # the Spark process, not the run's DuckDB build (30 s)
        ["10,000 × 3", "full build", "dbt (DuckDB within the run / Spark, own process)", "20.0",
         "120.0", "6.00×"],
        ["10,000 × 3", "full build", "… of which start-up and parse", "7.0", "30.0", "4.29×"],
        # 80 + 50 + 10 + 20 = 160 against 70 + 25 + 12 + 120 = 227
        ["10,000 × 3", "full build", "**exports → marts** (extract + clean + gate + dbt)",
         "160.0", "227.0", "1.42×"],
        # 160 - 8 - 7 = 145 against 70 + 25 + 3 + 90 = 188
        ["10,000 × 3", "full build", "exports → marts, start-up excluded", "145.0", "188.0",
         "1.30×"],
        ["10,000 × 3", "full build", "peak RSS (process tree)", "1.00 GB",
         "3.00 GB run with the Dask workers, 2.00 GB dbt on Spark (JVM included)", "3.00×"],
        ["10,000 × 3", "full build", "marts", "–", "equal (2 marts, 13 rows)", "–"],
    ]  # fmt: skip
    text = render(figures)
    assert "## The default path against Spark + Dask (same exports, same run date)" in text
    assert (
        "- 10,000 × 3, full build on Spark + Dask: the LocalCluster started in 6.5 s (within "
        "start-up); the run also built the warehouse on DuckDB (30.0 s), published it (5.0 s)"
    ) in text
    assert "- 10,000 × 3, one new day on Spark + Dask: not run (out of time)." in text
    assert "1,500 × 1, full build on Spark + Dask" not in text  # that scale ran one path
    assert "How each stage grows" not in text  # one scale: no exponent


def test_scale_out_exponents_and_a_difference():
    figures = results()
    small, big = figures.scales[:2]
    small.full.rows, big.full.rows = 1_000_000, 10_000_000
    small.scale_out = scale_out(spark=12.0, execution=9.0, extract=7)
    big.scale_out = scale_out(differences={"mart_a": None, "mart_b": "values differ in pct"})
    extract, *_, dbt_gross, total = scale_out_exponents(figures)
    # extract: default 1 → 80 over 10× the rows: b = log10(80) = 1.90; Spark + Dask 7 → 70
    assert extract == ["extract", "1.0 / 7.0", "80.0 / 70.0", "1.90", "1.00"]
    assert dbt_gross == ["dbt (with start-up)", "3.0 / 12.0", "20.0 / 120.0", "0.82", "1.00"]
    # 1,500 × 1 start-up excluded: default 1 + 2 + 1 + 3 = 7; Spark + Dask 7 + 25 + 3 + 9 = 44
    assert total[:3] == ["**exports → marts** (start-up excluded)", "7.0 / 44.0", "145.0 / 188.0"]
    text = render(figures)
    assert "| stage | 1,500 × 1: default / Spark + Dask s | 10,000 × 3: default / Spark" in text
    assert "| marts | – | DIFFERENT: mart_b: values differ in pct | – |" in text
    assert not figures.all_equal  # `lagesbild bench` exits 1


def test_spark_marts_are_compared_cell_by_cell():
    """benchmarks/spark.py, as tests/scale/test_spark_warehouse.py uses it: Spark's wider
    decimals cast to DuckDB's, rows in any order, the one rounding edge allowed (0.01)."""
    want = pl.DataFrame(
        {
            "indicator_id": ["vandalism_cost_per_apartment_sek", "pupils"],
            "value": [1310.68, 12.0],
            "n": pl.Series([1, 2], dtype=pl.Decimal(18, 0)),
        }
    )
    wider = want.with_columns(pl.col("n").cast(pl.Decimal(38, 0)))
    edge = wider.with_columns(value=pl.Series([1310.69, 12.0])).reverse()
    assert mart_differences({"mart_goal_progress": want}, {"mart_goal_progress": edge}) == {
        "mart_goal_progress": None
    }
    other = wider.with_columns(value=pl.Series([1310.68, 12.01]))
    assert mart_differences({"mart_goal_progress": want}, {"mart_goal_progress": other}) == {
        "mart_goal_progress": "values differ in value (1 of 1 cells, at most 0.01 apart)"
    }
    beyond = wider.with_columns(value=pl.Series([1310.70, 12.0]))
    assert mart_differences({"mart_goal_progress": want}, {"mart_goal_progress": beyond}) == {
        "mart_goal_progress": "column value of the rounding-edge rows differs by more than 0.01"
    }
    assert mart_differences({"mart_x": want}, {"mart_x": edge, "mart_y": want}) == {
        "mart_x": "values differ in value (1 of 2 cells, at most 0.01 apart)",
        "mart_y": "not in the DuckDB build",
    }
