"""Optional publish target: the marts in a PostgreSQL schema for BI tools that want a server.

The whole schema is swapped in one transaction: the new tables are built in a schema of their
own, then the served schema is dropped and the new one renamed to its name, and the read-only
role is granted USAGE and SELECT. PostgreSQL's DDL is transactional, so a BI query sees the
previous marts or the new ones, never a mix; on any error nothing changes. The role itself is
created once by the database administrator (docs/bi-access.md); publishing only grants to it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import duckdb
import psycopg
from psycopg import sql

from lagesbild.settings import ConfigError, PostgresTarget

# DuckDB column types → PostgreSQL; anything else is refused with a clear error.
_TYPES = {
    "BOOLEAN": "boolean",
    "TINYINT": "smallint",
    "SMALLINT": "smallint",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "HUGEINT": "numeric(38, 0)",
    "UTINYINT": "smallint",
    "USMALLINT": "integer",
    "UINTEGER": "bigint",
    "UBIGINT": "numeric(20, 0)",
    "FLOAT": "real",
    "DOUBLE": "double precision",
    "VARCHAR": "text",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
}


class PostgresPublishFailed(RuntimeError):
    """The PostgreSQL target could not be written; the schema it serves is unchanged."""


def _postgres_type(duckdb_type: str) -> str:
    if duckdb_type.startswith("DECIMAL"):
        return duckdb_type.replace("DECIMAL", "numeric")
    try:
        return _TYPES[duckdb_type]
    except KeyError:
        raise ConfigError(
            f"a mart column has DuckDB type {duckdb_type}, which the PostgreSQL publish does not "
            "map; cast it in the mart's SQL"
        ) from None


def publish(marts_db: Path, tables: list[str], target: PostgresTarget) -> None:
    """Replace `target.schema_name` with `tables` of the DuckDB file `marts_db`, atomically."""
    staging = f"{target.schema_name}_next_{uuid.uuid4().hex[:8]}"
    source = duckdb.connect(str(marts_db), read_only=True)
    try:
        with psycopg.connect(
            target.url.get_secret_value(), connect_timeout=target.connect_timeout
        ) as pg:
            # Waiting forever behind a long BI query would hold the nightly; fail clearly.
            pg.execute(sql.SQL("SET lock_timeout = {}").format(target.lock_timeout_ms))
            pg.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(staging)))
            for table in tables:
                _copy_table(source, pg, staging, table)
            served, role = sql.Identifier(target.schema_name), sql.Identifier(target.readonly_role)
            pg.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(served))
            pg.execute(
                sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(staging), served)
            )
            for grant in (
                "GRANT USAGE ON SCHEMA {} TO {}",
                "GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}",
            ):
                pg.execute(sql.SQL(grant).format(served, role))
    except psycopg.Error as exc:
        # The message names the server and the problem (libpq never echoes the password).
        raise PostgresPublishFailed(
            f"publishing the marts to PostgreSQL schema '{target.schema_name}' failed; it still "
            f"serves the previous marts. {type(exc).__name__}: {str(exc).strip()}"
        ) from None
    finally:
        source.close()


def _copy_table(
    source: duckdb.DuckDBPyConnection, pg: psycopg.Connection, schema: str, table: str
) -> None:
    columns = source.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_name = ? order by ordinal_position",
        [table],
    ).fetchall()
    name = sql.Identifier(schema, table)
    pg.execute(
        sql.SQL("CREATE TABLE {} ({})").format(
            name,
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(_postgres_type(t)))
                for c, t in columns
            ),
        )
    )
    rows = source.execute(f'select * from "{table}"')
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
        name, sql.SQL(", ").join(sql.Identifier(c) for c, _ in columns)
    )
    with pg.cursor().copy(copy) as out:
        while batch := rows.fetchmany(10_000):
            for row in batch:
                out.write_row(row)
