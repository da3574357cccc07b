"""BI access: the served marts in an older DuckDB client, and the PostgreSQL publish target.

The PostgreSQL server is real (tests/postgres_server.py starts one on loopback); the BI login
is a member of the read-only role, as the README tells the DBA to set it up.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import psycopg
import pytest

from flows.nightly import nightly
from lagesbild.settings import Settings
from tests.flows.test_nightly import file_bytes, marts
from tests.postgres_server import postgres_server

BI_LOGIN, BI_PASSWORD = "metabase", "bi-test-password"


@pytest.fixture(scope="module")
def postgres():
    with postgres_server() as url:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("CREATE DATABASE lagesbild")
        url = url.rsplit("/", 1)[0] + "/lagesbild"
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("CREATE ROLE lagesbild_bi NOLOGIN")
            admin.execute(
                f"CREATE ROLE {BI_LOGIN} LOGIN PASSWORD '{BI_PASSWORD}' IN ROLE lagesbild_bi"
            )
        yield url


@pytest.fixture(scope="module")
def published(pipeline_env, postgres):
    """The baseline (a copy), run again with the PostgreSQL target and dbt docs switched on."""
    os.environ["LAGESBILD_POSTGRES__URL"] = postgres
    os.environ["LAGESBILD_DBT_DOCS"] = "true"
    try:
        state = nightly(return_state=True)
        assert state.is_completed(), state.message
        yield Settings().paths
    finally:
        os.environ.pop("LAGESBILD_POSTGRES__URL")
        os.environ["LAGESBILD_DBT_DOCS"] = "false"


def _postgres_marts(url: str) -> dict[str, pl.DataFrame]:
    with psycopg.connect(url) as con:
        names = [
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables where table_schema = 'marts'"
            ).fetchall()
        ]
        frames = {}
        for name in sorted(names):
            cursor = con.execute(f'select * from marts."{name}"')
            columns = [d.name for d in cursor.description]
            frames[name] = pl.DataFrame(
                cursor.fetchall(), schema=columns, orient="row", infer_schema_length=None
            ).sort(pl.all(), nulls_last=True)
        return frames


def test_postgres_serves_the_same_marts_as_duckdb(published, postgres):
    served = marts(published)
    in_postgres = _postgres_marts(postgres)
    assert sorted(in_postgres) == sorted(served)
    assert "mart_attendance_area_term" in served
    for name, frame in served.items():
        assert in_postgres[name].columns == frame.columns, name
        assert in_postgres[name].height == frame.height, name
        # numeric(p, s) arrives as Decimal: compare values, not dtypes.
        assert in_postgres[name].cast(frame.schema).equals(frame), name


def test_bi_role_reads_but_cannot_write(published, postgres):
    bi_url = postgres.replace("postgres@", f"{BI_LOGIN}:{BI_PASSWORD}@")
    with psycopg.connect(bi_url) as con:
        (rows,) = con.execute("select count(*) from marts.mart_attendance_area_term").fetchone()
        assert rows == marts(published)["mart_attendance_area_term"].height
    for statement in (
        "delete from marts.mart_attendance_area_term",
        "create table marts.scratch (x int)",
        "drop table marts.mart_attendance_area_term",
    ):
        with psycopg.connect(bi_url) as con, pytest.raises(psycopg.errors.InsufficientPrivilege):
            con.execute(statement)


def test_unreachable_postgres_fails_the_run_and_publishes_nothing(published, postgres):
    duckdb_before = file_bytes(published.warehouse / "marts")
    served_before = published.marts_db.read_bytes()
    postgres_before = _postgres_marts(postgres)
    closed_port = "postgresql://postgres@127.0.0.1:1/lagesbild"
    os.environ["LAGESBILD_POSTGRES__URL"] = closed_port
    try:
        state = nightly(return_state=True)
    finally:
        os.environ["LAGESBILD_POSTGRES__URL"] = postgres
    assert state.is_failed()
    assert "PostgresPublishFailed" in state.message, state.message
    assert published.marts_db.read_bytes() == served_before
    assert file_bytes(published.warehouse / "marts") == duckdb_before
    assert list(published.warehouse.glob(".marts.*")) == []
    after = _postgres_marts(postgres)
    assert sorted(after) == sorted(postgres_before)
    assert all(after[n].equals(postgres_before[n]) for n in after)


def test_duckdb_1_4_client_opens_the_served_marts(published):
    """BI drivers bundle older DuckDB releases; the served file must open in 1.4."""
    cli = Path(sys.executable).parent / "duckdb"  # the duckdb-cli 1.4 dev dependency
    version = subprocess.run([str(cli), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("v1.4"), version.stdout
    result = subprocess.run(
        [
            str(cli),
            "-readonly",
            "-csv",
            "-noheader",
            str(published.marts_db),
            "-c",
            "select count(*), sum(pupils) from marts.mart_attendance_area_term",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    frame = marts(published)["mart_attendance_area_term"]
    assert result.stdout.strip() == f"{frame.height},{frame['pupils'].sum()}"


def test_dbt_docs_page_describes_the_marts(published):
    page = published.reports / "dbt-docs" / "index.html"
    text = page.read_text(encoding="utf-8")
    # The static page embeds the manifest and catalog: every mart, its grain, the glossary.
    for expected in (
        "mart_attendance_area_term",
        "mart_problematic_absence_area_term",
        "Skolenhet",
    ):
        assert expected in text, expected
    # this module's first run: [0] is the summary of the baseline run the module copied
    summary = sorted(published.runs.glob("*.md"))[1].read_text(encoding="utf-8")
    assert f"dbt docs (each mart, its grain and tests): `{page}`" in summary


CHROMIUM_ARGS = [  # headless on a closed network: no background connections, no sandbox as root
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def test_lagesbild_report_opens_in_chromium_and_its_charts_render(published, tmp_path):
    from PIL import Image
    from playwright.sync_api import sync_playwright

    report = published.reports / "lagesbild" / "index.html"
    served = marts(published)
    attendance, problem = (
        served["mart_attendance_area_term"],
        served["mart_problematic_absence_area_term"],
    )
    # Each chart draws one point per published value of its mart; suppressed values are gaps.
    # Page order: a chart per goal × indicator (municipality); the municipality's problematic
    # absence and vandalism; per area absence, problematic absence and vandalism.
    goals = served["mart_goal_status"].filter(pl.col("area_level") == "municipality")
    progress = served["mart_goal_progress"].filter(pl.col("area_level") == "municipality")
    points = []
    for goal in goals.sort("display_order")["goal_id"]:
        mine = progress.filter(pl.col("goal_id") == goal)
        points += [
            mine.filter(pl.col("indicator_id") == indicator)["value"].count()
            for indicator in sorted(mine["indicator_id"].unique())
        ]
    points.append(
        problem.filter(pl.col("scope") == "municipality")["share_at_or_above_pct"].count()
    )
    vandalism = served["mart_vandalism_area_year"]
    points.append(vandalism.filter(pl.col("scope") == "municipality")["vandalism_cost_sek"].count())
    for code in served["dim_area"].sort("area_name")["area_code"]:
        area = attendance.filter(pl.col("area_code") == code)
        points.append(
            sum(
                area[c].count()
                for c in ("total_absence_pct", "valid_absence_pct", "invalid_absence_pct")
            )
        )
        points.append(problem.filter(pl.col("area_code") == code)["share_at_or_above_pct"].count())
        mine = vandalism.filter((pl.col("scope") == "area") & (pl.col("area_code") == code))
        points.append(mine["cost_per_apartment_sek"].count())
    assert sum(points) > 0
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else 0)
        page.on("pageerror", lambda e: errors.append(str(e)))
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(report.as_uri())
        assert page.title().startswith("Lägesbild")
        charts = page.locator("svg.chart")
        assert charts.count() == len(points)
        statuses = page.locator("table.text tbody tr td:last-child").all_inner_texts()
        assert len(statuses) == goals.height == 14  # the default goals
        assert statuses.count("Ingen indikator än") == 5
        for i, expected in enumerate(points):
            box = charts.nth(i).bounding_box()
            assert box and box["width"] > 300 and box["height"] > 100, i
            assert charts.nth(i).locator("circle").count() == expected, i
            assert charts.nth(i).locator("text.empty").count() == (expected == 0), i
        shot = tmp_path / "first-area.png"
        page.locator("section.area").first.screenshot(path=str(shot))
        browser.close()
    assert errors == []
    assert requests == [report.as_uri()]  # self-contained: nothing else fetched
    # The screenshot shows the charts: the first series colour is drawn, not a blank page.
    pixels = list(Image.open(shot).convert("RGB").get_flattened_data())
    series_colour = (0x1F, 0x5F, 0x8B)
    assert sum(1 for p in pixels if p == series_colour) > 200
    assert len(set(pixels)) > 50
