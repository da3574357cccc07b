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
    summary = sorted(published.runs.glob("*.md"))[-1].read_text(encoding="utf-8")
    assert f"dbt docs (each mart, its grain and tests): `{page}`" in summary
