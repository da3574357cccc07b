"""The atomic publish of the served marts.

Publishing never opens the served `marts.duckdb` for writing (a BI tool may hold it open):
it copies schema `marts` of the work warehouse into the default schema of a new file and
renames it over the served one, then swaps the parquet export folder through a symlink. The
descriptions dbt persisted as comments travel along: `COMMENT ON` in the served file,
key-value metadata in each parquet file, `COMMENT ON` in PostgreSQL (docs/bi-contract.md).
An optional PostgreSQL target (flows/warehouse/postgres.py) is written before either swap,
so a failure there leaves every target serving the same previous marts.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import duckdb

from flows import disclosure
from flows.layers import files
from flows.layers.files import replace
from flows.warehouse import postgres as postgres_target
from lagesbild.settings import Paths, PostgresTarget


class PublishFailed(RuntimeError):
    """Nothing to publish; the served marts are untouched."""


def _marts_tables(work: duckdb.DuckDBPyConnection) -> list[str]:
    rows = work.execute(
        "select table_name from information_schema.tables "
        "where table_catalog = 'work' and table_schema = 'marts' order by table_name"
    ).fetchall()
    return [r[0] for r in rows]


def _comments(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str | None, dict[str, str]]]:
    """The descriptions dbt wrote on the work marts (`persist_docs`): per table its comment
    and its columns' comments (only those that have one)."""
    tables = dict(
        con.execute(
            "select table_name, comment from duckdb_tables() "
            "where database_name = 'work' and schema_name = 'marts'"
        ).fetchall()
    )
    result: dict[str, tuple[str | None, dict[str, str]]] = {t: (c, {}) for t, c in tables.items()}
    for table, column, comment in con.execute(
        "select table_name, column_name, comment from duckdb_columns() "
        "where database_name = 'work' and schema_name = 'marts' and coalesce(comment, '') <> '' "
        "order by table_name, column_index"
    ).fetchall():
        result.setdefault(table, (None, {}))[1][column] = comment
    return result


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# Parquet key-value metadata: the table's description and one key per column (docs/bi-contract.md).
PARQUET_TABLE_KEY = "description"
PARQUET_COLUMN_KEY = "column.{}.description"


def _parquet_metadata(table_comment: str | None, column_comments: dict[str, str]) -> str:
    entries = {PARQUET_TABLE_KEY: table_comment} if table_comment else {}
    entries |= {PARQUET_COLUMN_KEY.format(c): text for c, text in column_comments.items()}
    # An empty struct is not valid SQL; a marker key keeps the syntax uniform.
    entries = entries or {"lagesbild": "marts"}
    pairs = ", ".join(
        '"' + key.replace('"', '""') + '": ' + _literal(text) for key, text in entries.items()
    )
    return "{" + pairs + "}"


def publish(
    paths: Paths,
    storage_version: str,
    postgres: PostgresTarget | None = None,
    min_persons: int = 5,
) -> list[str]:
    """Copy schema `marts` to a new served file, withhold what linked suppression decides
    over all marts together (flows/disclosure.py, in the new file only: the work warehouse
    stays dbt's), write the parquet folder, then swap both in.

    With a PostgreSQL target, that is written from the new file first: if it fails, nothing
    is swapped, so every target keeps serving the same previous marts.
    """
    con, next_db, next_parquet = new_served(paths, storage_version)
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"ATTACH '{paths.work_db}' AS work (READ_ONLY)")
        tables = _marts_tables(con)
        if not tables:
            raise PublishFailed(
                "no tables in the work warehouse's schema marts: nothing to publish"
            )
        # The served file holds the marts in its default schema: its catalog is named `marts`
        # (from the file name), so BI users write `marts.<table>` or just `<table>`.
        (served,) = con.execute("SELECT current_database()").fetchone()
        comments = _comments(con)
        for table in tables:
            con.execute(
                f'CREATE TABLE "{served}".main."{table}" AS SELECT * FROM work.marts."{table}"'
            )
        disclosure.protect(con, served, min_persons)
        for table in tables:
            name = f'"{served}".main."{table}"'
            table_comment, column_comments = comments.get(table, (None, {}))
            if table_comment:
                con.execute(f"COMMENT ON TABLE {name} IS {_literal(table_comment)}")
            for column, comment in column_comments.items():
                con.execute(f'COMMENT ON COLUMN {name}."{column}" IS {_literal(comment)}')
            target = next_parquet / f"{table}.parquet"
            metadata = _parquet_metadata(table_comment, column_comments)
            con.execute(
                f"COPY (FROM {name} ORDER BY ALL) TO '{target}' "
                f"(FORMAT parquet, KV_METADATA {metadata})"
            )
        con.execute("DETACH work")
    finally:
        con.close()
    if postgres is not None:
        try:
            postgres_target.publish(next_db, tables, postgres)
        except Exception:
            next_db.unlink(missing_ok=True)
            shutil.rmtree(next_parquet, ignore_errors=True)
            raise
    swap_in(paths, next_db, next_parquet, "publish")
    return tables


def new_served(paths: Paths, storage_version: str) -> tuple[duckdb.DuckDBPyConnection, Path, Path]:
    """A connection to a new served marts file and a new parquet folder beside the served
    ones (removing files a killed publish left), to fill and then `swap_in`."""
    paths.warehouse.mkdir(parents=True, exist_ok=True)
    for orphan in paths.warehouse.glob(".marts.*.duckdb*"):
        orphan.unlink()
    token = uuid.uuid4().hex[:12]
    next_db = paths.warehouse / f".marts.{token}.duckdb"
    next_parquet = paths.warehouse / f"marts-{token}"
    next_parquet.mkdir()
    con = duckdb.connect(str(next_db), config={"storage_compatibility_version": storage_version})
    return con, next_db, next_parquet


def swap_in(paths: Paths, next_db: Path, next_parquet: Path, point: str) -> None:
    """Serve a filled marts file and parquet folder: readable by BI users (the pupil-level
    layers beside them are owner-only), each swapped in atomically (renames `<point>-marts`
    and `<point>-parquet`)."""
    files.world_readable(next_db)
    files.world_readable(next_parquet)
    replace(next_db, paths.marts_db, f"{point}-marts")
    _swap_symlink(paths.marts_parquet, next_parquet, f"{point}-parquet")


def _swap_symlink(link: Path, new_target: Path, point: str) -> None:
    """Point `link` at `new_target` atomically.

    The folder it pointed to before stays until the next publish, so a reader that listed
    the files just before the swap can still read them; older folders are removed.
    """
    previous = link.resolve() if link.is_symlink() else None
    if link.exists() and not link.is_symlink():
        raise RuntimeError(f"{link} is a real folder; move it away so publishing can manage it")
    tmp_link = link.with_name(f".{link.name}.{uuid.uuid4().hex}")
    tmp_link.symlink_to(new_target.name)
    replace(tmp_link, link, point)
    keep = {new_target.resolve(), previous}
    for folder in link.parent.glob(f"{link.name}-*"):
        if folder.resolve() not in keep:
            shutil.rmtree(folder, ignore_errors=True)
