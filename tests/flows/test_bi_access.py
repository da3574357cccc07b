"""BI access: the served marts in an older DuckDB client, and the PostgreSQL publish target.

The PostgreSQL server is real (tests/postgres_server.py starts one on loopback); the BI login
is a member of the read-only role, as docs/bi-access.md tells the DBA to set it up. The BI contract
(docs/bi-contract.md): a comment on every table and column and the same types in every target,
user views that survive a publish, long readers that neither fail nor block it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import polars as pl
import psycopg
import pytest

from flows.nightly import nightly
from flows.warehouse import postgres as publish_postgres
from flows.warehouse import publish as warehouse
from lagesbild.settings import PostgresTarget, Settings
from tests.flows.test_nightly import file_bytes, marts
from tests.postgres_server import postgres_server

# `make test-scenarios`: PostgreSQL, Chromium and BI clients (make system-packages)
pytestmark = pytest.mark.scenario

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
    # the 1.4 CLI shows the comments too: one per table and column
    comments = subprocess.run(
        [
            str(cli),
            "-readonly",
            "-csv",
            "-noheader",
            str(published.marts_db),
            "-c",
            "select count(*), count(comment) from duckdb_columns() where database_name = 'marts'",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    columns = sum(len(c) for c in _duckdb_columns(published.marts_db).values())
    assert comments.stdout.strip() == f"{columns},{columns}"


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
        statuses = page.locator(".card > .meta > .status").all_inner_texts()
        assert len(statuses) == goals.height == 14  # the default goals
        assert statuses.count("Ingen indikator än") == 5
        for i, expected in enumerate(points):
            box = charts.nth(i).bounding_box()
            assert box and box["width"] > 300 and box["height"] > 100, i
            assert charts.nth(i).locator(".point").count() == expected, i
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


# -- the report as a reader sees it: screenshots, print, contrast ------------------------------

A4_CONTENT_PX = round((210 - 2 * 12) / 25.4 * 96)  # the print stylesheet's A4 with 12 mm margins

# In the page: layout facts a reader would notice (horizontal scroll, clipped or tiny chart
# text, tables without captions or header scope, charts without a text version).
LAYOUT_FACTS = """() => {
  const charts = [...document.querySelectorAll('svg.chart')];
  const clipped = [], small = [];
  for (const [i, svg] of charts.entries()) {
    const box = svg.getBoundingClientRect();
    const scale = svg.getScreenCTM().a;
    for (const text of svg.querySelectorAll('text')) {
      const r = text.getBoundingClientRect();
      if (r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5
          || r.bottom > box.bottom + 0.5) clipped.push(`${i}: ${text.textContent}`);
      const px = parseFloat(getComputedStyle(text).fontSize) * scale;
      if (px < 11) small.push(`${i}: ${text.textContent} ${px.toFixed(1)}px`);
    }
  }
  return {
    scrollWidth: document.documentElement.scrollWidth,
    clientWidth: document.documentElement.clientWidth,
    mains: document.querySelectorAll('main').length,
    charts: charts.length,
    clipped, small,
    chartsWithoutDesc: charts.filter(s => !(s.querySelector('desc')?.textContent.trim())).length,
    tables: document.querySelectorAll('table').length,
    tablesWithoutCaption: [...document.querySelectorAll('table')].filter(t => !t.caption).length,
    headersWithoutScope: document.querySelectorAll('th:not([scope])').length,
  };
}"""

# Every colour the charts draw series and markers with, and every status pill's text on its
# background, as computed by the browser.
COLOURS = """() => ({
  series: [...new Set([...document.querySelectorAll(
      'svg.chart .series, svg.chart .point, svg.chart .target')].map(
      e => getComputedStyle(e)[e.matches('.point:not(.partial)') ? 'fill' : 'stroke']))],
  background: [...new Set([...document.querySelectorAll('svg.chart > rect:first-of-type')].map(
      e => getComputedStyle(e).fill))],
  pills: [...new Set([...document.querySelectorAll('.status')].map(
      e => `${e.className}|${getComputedStyle(e).color}|${getComputedStyle(e).backgroundColor}`))],
})"""


def _rgb(css: str) -> tuple[int, int, int]:
    numbers = css[css.index("(") + 1 : css.index(")")].split(",")
    return tuple(int(float(n)) for n in numbers[:3])


def _contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    def luminance(rgb):
        channels = [c / 255 for c in rgb]
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.mark.parametrize("width", [1366, 390])
def test_report_fits_the_screen_and_its_charts_are_readable(published, chromium, width, tmp_path):
    from PIL import Image

    report = published.reports / "lagesbild" / "index.html"
    page = chromium.new_page(viewport={"width": width, "height": 900})
    page.goto(report.as_uri())
    facts = page.evaluate(LAYOUT_FACTS)
    shot = tmp_path / f"report-{width}.png"
    page.screenshot(path=str(shot), full_page=True)
    first_screen = tmp_path / f"first-screen-{width}.png"
    page.screenshot(path=str(first_screen))
    page.close()
    assert facts["scrollWidth"] <= facts["clientWidth"], facts  # no sideways scroll
    assert facts["clientWidth"] > width - 20, facts
    assert facts["clipped"] == [] and facts["small"] == [], facts
    assert facts["mains"] == 1 and facts["charts"] > 0 and facts["chartsWithoutDesc"] == 0
    assert facts["tables"] > 0 and facts["tablesWithoutCaption"] == 0
    assert facts["headersWithoutScope"] == 0
    image = Image.open(shot)
    assert image.width == width  # the full-page screenshot is no wider than the screen
    pixels = image.convert("RGB").resize((width // 4, image.height // 4)).get_flattened_data()
    assert len(set(pixels)) > 50  # drawn, not blank
    if os.environ.get("LAGESBILD_KEEP_SCREENSHOTS"):  # to look at them by eye
        keep = Path(os.environ["LAGESBILD_KEEP_SCREENSHOTS"])
        keep.mkdir(parents=True, exist_ok=True)
        for path in (shot, first_screen):
            (keep / path.name).write_bytes(path.read_bytes())


def test_report_colours_have_enough_contrast(published, chromium):
    report = published.reports / "lagesbild" / "index.html"
    page = chromium.new_page(viewport={"width": 1366, "height": 900})
    page.goto(report.as_uri())
    colours = page.evaluate(COLOURS)
    page.close()
    assert colours["background"] == ["rgb(255, 255, 255)"]
    background = _rgb(colours["background"][0])
    assert len(colours["series"]) >= 3
    for colour in colours["series"]:  # graphics: at least 3:1 (WCAG 1.4.11)
        assert _contrast(_rgb(colour), background) >= 3, colour
    for pill in colours["pills"]:  # status words: at least 4.5:1 (WCAG 1.4.3)
        _css, text, fill = pill.split("|")
        assert _contrast(_rgb(text), _rgb(fill)) >= 4.5, pill
    backgrounds = {p.split("|")[2] for p in colours["pills"]}
    assert len(backgrounds) == len({p.split("|")[0] for p in colours["pills"]})  # one per status


def test_report_says_what_every_status_and_symbol_means(published, chromium):
    from flows.reports.lagesbild import STATUS_LABELS, SYMBOLS

    served = marts(published)
    report = published.reports / "lagesbild" / "index.html"
    page = chromium.new_page(viewport={"width": 1366, "height": 900})
    page.goto(report.as_uri())
    legend = page.locator("#teckenforklaring")
    pills = legend.locator("dt .status").all_inner_texts()
    symbols = legend.locator("dt .symbol").all_inner_texts()
    used = set(page.locator("main .status").evaluate_all("es => es.map(e => e.className)"))
    alerts = page.locator(".alerts li").all_inner_texts()
    freshness = page.locator("#kallor tbody tr").all_inner_texts()
    cards = page.locator(".cards").inner_text()
    page.close()
    assert pills == list(STATUS_LABELS.values())  # every status, each with its own words
    assert len(set(pills)) == len(pills) == 8
    assert set(symbols[: len(SYMBOLS)]) == set(SYMBOLS)
    assert used <= {f"status status-{s}" for s in STATUS_LABELS}
    # Freshness: one row per source; nothing behind is called current; the top says so.
    rows = served["mart_source_freshness"]
    assert len(freshness) == rows.height
    stale = rows.filter(pl.col("freshness_status") != "current").height
    assert [r.split("\t")[-1] for r in freshness].count("aktuell") == rows.height - stale
    assert (
        len(alerts)
        == min(1, rows["is_calendar_outdated"].sum())
        + rows.filter(pl.col("freshness_status") == "behind").height
    )
    # Swedish numbers: no decimal point in a value.
    assert (
        cards.count("Senaste")
        == served["mart_goal_progress"]
        .filter((pl.col("area_level") == "municipality") & pl.col("is_latest"))
        .height
    )
    assert re.search(r"\d\.\d", cards) is None


def test_report_prints_to_a4_without_cut_charts(published, chromium, tmp_path):
    from typer.testing import CliRunner

    from lagesbild.cli import app

    report = published.reports / "lagesbild" / "index.html"
    page = chromium.new_page(viewport={"width": A4_CONTENT_PX, "height": 1000})
    page.emulate_media(media="print")
    page.goto(report.as_uri())
    facts = page.evaluate(LAYOUT_FACTS)
    page.close()
    assert facts["scrollWidth"] <= A4_CONTENT_PX, facts  # nothing beyond the paper's edge
    assert facts["clipped"] == [], facts

    result = CliRunner().invoke(app, ["report", "--pdf"])
    assert result.exit_code == 0, result.output
    (pdf,) = (published.reports / "lagesbild").glob("lagesbild-*.pdf")
    content = pdf.read_bytes()
    assert content.startswith(b"%PDF-")
    boxes = set(re.findall(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", content))
    assert boxes and all(
        abs(float(w) - 595.28) < 1 and abs(float(h) - 841.89) < 1 for w, h in boxes
    ), boxes  # every page A4 portrait
    pages = len(re.findall(rb"/Type /Page\b", content))
    areas = marts(published)["dim_area"].height
    assert pages > areas  # every area starts a page


def _duckdb_columns(marts_db: Path) -> dict[str, list[tuple[str, str, str | None]]]:
    con = duckdb.connect(str(marts_db), read_only=True)
    try:
        rows = con.execute(
            "select table_name, column_name, data_type, comment from duckdb_columns() "
            "where database_name = 'marts' order by table_name, column_index"
        ).fetchall()
    finally:
        con.close()
    tables: dict[str, list[tuple[str, str, str | None]]] = {}
    for table, column, type_, comment in rows:
        tables.setdefault(table, []).append((column, type_, comment))
    return tables


def test_every_published_table_and_column_has_a_description_in_every_target(published, postgres):
    """The YAML descriptions reach the DuckDB CLI, a parquet reader and psql alike: an
    undescribed published column fails here, named."""
    tables = _duckdb_columns(published.marts_db)
    con = duckdb.connect(str(published.marts_db), read_only=True)
    table_comments = dict(
        con.execute(
            "select table_name, comment from duckdb_tables() where database_name = 'marts'"
        ).fetchall()
    )
    con.close()
    assert len(tables) == 16
    undescribed = [f"{t}.{c}" for t, cols in tables.items() for c, _, note in cols if not note]
    assert undescribed == []
    # grain (and units) in every table's comment
    assert [t for t in tables if "Grain:" not in (table_comments[t] or "")] == []
    for table, columns in tables.items():
        metadata = pl.read_parquet_metadata(published.marts_parquet / f"{table}.parquet")
        assert metadata[warehouse.PARQUET_TABLE_KEY] == table_comments[table], table
        for column, _, note in columns:
            assert metadata[warehouse.PARQUET_COLUMN_KEY.format(column)] == note, (table, column)
    bi_url = postgres.replace("postgres@", f"{BI_LOGIN}:{BI_PASSWORD}@")
    with psycopg.connect(bi_url) as pg:  # what psql's \d+ shows the BI login
        in_postgres = {
            (t, c): note
            for t, c, note in pg.execute(
                "select table_name, column_name, "
                "col_description(('marts.' || table_name)::regclass, ordinal_position) "
                "from information_schema.columns where table_schema = 'marts'"
            ).fetchall()
        }
        postgres_tables = dict(
            pg.execute(
                "select relname, obj_description(oid, 'pg_class') from pg_class "
                "where relnamespace = 'marts'::regnamespace and relkind = 'r'"
            ).fetchall()
        )
    assert postgres_tables == table_comments
    assert in_postgres == {(t, c): note for t, cols in tables.items() for c, _, note in cols}


def test_column_types_agree_in_duckdb_parquet_and_postgres(published, postgres):
    tables = _duckdb_columns(published.marts_db)
    allowed = {"VARCHAR", "BOOLEAN", "DATE", "TIMESTAMP", "INTEGER", "BIGINT", "DOUBLE"}
    odd = [
        f"{t}.{c} {ty}"
        for t, cols in tables.items()
        for c, ty, _ in cols
        if ty not in allowed and not ty.startswith("DECIMAL(")
    ]
    assert odd == []  # no HUGEINT, no time zone types (DuckDB 1.4 clients would need pytz)
    con = duckdb.connect()
    with psycopg.connect(postgres) as pg:
        in_postgres = {
            (t, c): ty
            for t, c, ty in pg.execute(
                "select c.relname, a.attname, format_type(a.atttypid, a.atttypmod) "
                "from pg_class c join pg_attribute a on a.attrelid = c.oid "
                "where c.relnamespace = 'marts'::regnamespace and c.relkind = 'r' "
                "and a.attnum > 0 and not a.attisdropped"
            ).fetchall()
        }
    differences = []
    for table, columns in tables.items():
        path = published.marts_parquet / f"{table}.parquet"
        in_parquet = {
            c: ty for c, ty, *_ in con.execute(f"describe select * from '{path}'").fetchall()
        }
        for column, type_, _ in columns:
            if in_parquet.get(column) != type_:
                differences.append(f"{table}.{column}: {type_}, parquet {in_parquet.get(column)}")
            pg_type = publish_postgres.postgres_type(type_)
            if in_postgres.get((table, column)) != pg_type:
                differences.append(
                    f"{table}.{column}: {pg_type}, PostgreSQL {in_postgres.get((table, column))}"
                )
    assert differences == []
    # the examples: exact decimals, not doubles with float noise
    types = {(t, c): ty for t, cols in tables.items() for c, ty, _ in cols}
    assert types["mart_vandalism_area_year", "cost_per_apartment_sek"] == "DECIMAL(18,2)"
    assert types["mart_attendance_area_term", "offered_minutes"] == "DECIMAL(18,2)"
    assert types["mart_attendance_area_term", "total_absence_pct"] == "DECIMAL(9,2)"
    assert types["mart_indicator_values", "fetched_at"] == "TIMESTAMP"


def test_a_user_view_and_grant_survive_a_nightly_publish(published, postgres):
    bi_url = postgres.replace("postgres@", f"{BI_LOGIN}:{BI_PASSWORD}@")
    with psycopg.connect(postgres, autocommit=True) as admin:
        admin.execute("CREATE SCHEMA IF NOT EXISTS analysis")
        admin.execute(
            "CREATE OR REPLACE VIEW analysis.absence_by_area AS "
            "SELECT area_code, term, total_absence_pct FROM marts.mart_attendance_area_term"
        )
        admin.execute(f"GRANT USAGE ON SCHEMA analysis TO {BI_LOGIN}")
        admin.execute(f"GRANT SELECT ON analysis.absence_by_area TO {BI_LOGIN}")
        admin.execute(f"GRANT SELECT ON marts.dim_area TO {BI_LOGIN}")  # a user's own grant
    state = nightly(return_state=True)
    assert state.is_completed(), state.message
    expected = marts(published)["mart_attendance_area_term"].height
    with psycopg.connect(bi_url) as con:
        (rows,) = con.execute("select count(*) from analysis.absence_by_area").fetchone()
        assert rows == expected
    with psycopg.connect(postgres) as admin:
        grants = admin.execute(
            "select grantee from information_schema.role_table_grants "
            "where table_schema = 'marts' and table_name = 'dim_area' and privilege_type = 'SELECT'"
        ).fetchall()
    assert {g for (g,) in grants} >= {BI_LOGIN, "lagesbild_bi"}


def test_a_changed_mart_with_a_dependent_view_is_refused_naming_the_view(published, postgres):
    target = PostgresTarget(url=postgres)
    tables = sorted(marts(published))
    with psycopg.connect(postgres, autocommit=True) as admin:
        admin.execute("CREATE SCHEMA IF NOT EXISTS analysis")
        admin.execute("ALTER TABLE marts.dim_school ADD COLUMN legacy integer")
        admin.execute(
            "CREATE VIEW analysis.schools AS SELECT school_unit_code FROM marts.dim_school"
        )
    try:
        with pytest.raises(publish_postgres.PostgresPublishFailed) as refused:
            publish_postgres.publish(published.marts_db, tables, target)
        assert "marts.dim_school" in str(refused.value)
        assert "analysis.schools" in str(refused.value)
        with psycopg.connect(postgres) as admin:  # nothing changed
            (legacy,) = admin.execute(
                "select count(*) from information_schema.columns "
                "where table_schema = 'marts' and column_name = 'legacy'"
            ).fetchone()
        assert legacy == 1
    finally:
        with psycopg.connect(postgres, autocommit=True) as admin:
            admin.execute("DROP VIEW analysis.schools")
    # without the view, the table is re-created with the mart's columns
    publish_postgres.publish(published.marts_db, tables, target)
    assert _postgres_marts(postgres)["dim_school"].columns == marts(published)["dim_school"].columns


def _short_reads(url: str, table: str, stop: threading.Event, waits: list[float]) -> None:
    with psycopg.connect(url, autocommit=True) as con:
        while not stop.is_set():
            started = time.monotonic()
            con.execute(f"select count(*) from marts.{table}").fetchone()
            waits.append(time.monotonic() - started)
            time.sleep(0.1)


def test_a_90_second_bi_query_neither_fails_nor_blocks_the_publish(published, postgres, tmp_path):
    """A BI query holds two marts for 90 s while the marts are published twice: rows only
    (nobody waits for anybody), then with one of them changed (its DROP TABLE waits for the
    query; other readers of that table wait at most lock_timeout_ms per attempt)."""
    bi_url = postgres.replace("postgres@", f"{BI_LOGIN}:{BI_PASSWORD}@")
    tables = sorted(marts(published))
    target = PostgresTarget(
        url=postgres, lock_timeout_ms=2_000, lock_retries=60, lock_retry_seconds=1
    )
    changed = tmp_path / "marts.duckdb"  # the same marts, dim_area with one more column
    shutil.copyfile(published.marts_db, changed)
    con = duckdb.connect(str(changed))
    con.execute("ALTER TABLE dim_area ADD COLUMN population_group VARCHAR")
    con.close()
    result: list[object] = []

    def long_query() -> None:
        with psycopg.connect(bi_url) as con:
            result.append(
                con.execute(
                    "select (select count(*) from marts.mart_attendance_area_term "
                    "cross join marts.dim_area), pg_sleep(90)"
                ).fetchone()[0]
            )

    reader = threading.Thread(target=long_query)
    started = time.monotonic()
    reader.start()
    with psycopg.connect(postgres, autocommit=True) as admin:
        for _ in range(100):  # until the query holds its locks
            (holding,) = admin.execute(
                "select count(*) from pg_locks l join pg_stat_activity a on a.pid = l.pid "
                "where a.query like '%pg_sleep(90)%' and l.granted "
                "and l.relation = 'marts.dim_area'::regclass"
            ).fetchone()
            if holding:
                break
            time.sleep(0.1)
    stop = threading.Event()
    waits: dict[str, list[float]] = {"mart_attendance_area_term": [], "dim_area": []}
    short = [
        threading.Thread(target=_short_reads, args=(bi_url, t, stop, w)) for t, w in waits.items()
    ]
    for thread in short:
        thread.start()
    try:
        tick = time.monotonic()
        publish_postgres.publish(published.marts_db, tables, target)
        rows_only = time.monotonic() - tick
        assert reader.is_alive()  # published while the 90 s query ran
        tick = time.monotonic()
        publish_postgres.publish(changed, tables, target)
        with_change = time.monotonic() - tick
        assert time.monotonic() - started >= 89  # the DROP waited for the query to end
    finally:
        stop.set()
        for thread in short:
            thread.join()
        reader.join()
    publish_postgres.publish(published.marts_db, tables, target)  # the real columns again
    served = marts(published)
    assert result == [served["mart_attendance_area_term"].height * served["dim_area"].height]
    longest = {t: round(max(w), 2) for t, w in waits.items()}
    print(
        f"rows-only publish during a 90 s query: {rows_only:.1f} s; publish with a changed "
        f"mart: {with_change:.1f} s; longest short read: {longest}"
    )
    # readers of unchanged marts never wait; of the changed one at most lock_timeout_ms
    assert longest["mart_attendance_area_term"] < 1.0
    assert longest["dim_area"] < target.lock_timeout_ms / 1000 + 1.0
    assert rows_only < 30


@pytest.mark.parametrize(
    "packages",
    [
        # Superset's SQLAlchemy 1.4 with the DuckDB 1.4 that BI images bundle
        ("duckdb-engine==0.17.0", "sqlalchemy>=1.4,<2", "duckdb>=1.4,<1.5"),
        # SQLAlchemy 2 lists columns only with DuckDB >= 1.5 (pg_collation)
        ("duckdb-engine==0.17.0", "sqlalchemy>=2,<2.1", "duckdb>=1.5,<2.1"),
    ],
    ids=["sqlalchemy-1.4-duckdb-1.4", "sqlalchemy-2-duckdb-1.5+"],
)
def test_duckdb_engine_route_lists_columns_and_reads_timestamps_without_pytz(published, packages):
    """The Superset route of docs/bi-contract.md, in a fresh environment of its own (these
    versions cannot share the project's): list the tables and columns, read a timestamp."""
    uv = [shutil.which("uv") or "uv"] if shutil.which("uv") else ["python3", "-m", "uv"]
    script = Path(__file__).with_name("duckdb_engine_client.py")
    with_args = [a for p in packages for a in ("--with", p)]
    result = subprocess.run(
        [
            *uv,
            "run",
            "--no-project",
            "--isolated",
            *with_args,
            "python",
            str(script),
            str(published.marts_db),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    columns = len(_duckdb_columns(published.marts_db)["mart_indicator_values"])
    assert result.stdout.split() == ["16", str(columns), "datetime"]
