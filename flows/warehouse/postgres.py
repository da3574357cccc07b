"""Optional publish target: the marts in a PostgreSQL schema for BI tools that want a server.

The served tables are kept and their rows replaced, in one transaction: `DELETE` then `COPY`
for every mart, the comments and grants brought up to date, then `COMMIT`. So

* BI queries see the previous marts or the new ones, never a mix (MVCC), and on any error
  nothing changes;
* views and grants that BI users built on the marts survive a publish: the tables they
  depend on are never dropped;
* a long BI query neither blocks the publish nor is blocked by it: `DELETE` takes a ROW
  EXCLUSIVE lock, which does not conflict with the ACCESS SHARE lock of a reader, and
  readers never queue behind it.

Only a change of a mart's columns (names, order or types) or a mart that is no longer built
needs `DROP TABLE`, which waits for every reader of that table and makes new readers wait
behind it. That wait is bounded by `lock_timeout_ms` per attempt (default 5 s: the longest a
reader can be held up); after a timeout the transaction is rolled back, readers go on, and
the publish tries again after `lock_retry_seconds`, up to `lock_retries` times. A table that
user views depend on is never dropped: the publish refuses with a message naming the views.

The role itself is created once by the database administrator (docs/bi-access.md);
publishing only grants to it. See docs/bi-contract.md.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import duckdb
import psycopg
from psycopg import sql

from lagesbild.settings import ConfigError, PostgresTarget

logger = logging.getLogger(__name__)

# DuckDB column types → PostgreSQL, spelled as PostgreSQL's format_type() prints them (so a
# served table's columns compare equal); anything else is refused with a clear error.
_TYPES = {
    "BOOLEAN": "boolean",
    "TINYINT": "smallint",
    "SMALLINT": "smallint",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "HUGEINT": "numeric(38,0)",
    "UTINYINT": "smallint",
    "USMALLINT": "integer",
    "UINTEGER": "bigint",
    "UBIGINT": "numeric(20,0)",
    "FLOAT": "real",
    "DOUBLE": "double precision",
    "VARCHAR": "text",
    "DATE": "date",
    "TIMESTAMP": "timestamp without time zone",
    "TIMESTAMP WITH TIME ZONE": "timestamp with time zone",
}


class PostgresPublishFailed(RuntimeError):
    """The PostgreSQL target could not be written; the schema it serves is unchanged."""


def postgres_type(duckdb_type: str) -> str:
    if duckdb_type.startswith("DECIMAL"):
        return duckdb_type.replace("DECIMAL", "numeric").replace(" ", "")
    try:
        return _TYPES[duckdb_type]
    except KeyError:
        raise ConfigError(
            f"a mart column has DuckDB type {duckdb_type}, which the PostgreSQL publish does not "
            "map; cast it in the mart's SQL"
        ) from None


def publish(marts_db: Path, tables: list[str], target: PostgresTarget) -> None:
    """Replace the rows of `target.schema_name` with `tables` of the DuckDB file `marts_db`,
    in one transaction; retried when a lock could not be had within `lock_timeout_ms`."""
    source = duckdb.connect(str(marts_db), read_only=True)
    try:
        marts = {table: _describe(source, table) for table in tables}
        with psycopg.connect(
            target.url.get_secret_value(), connect_timeout=target.connect_timeout, autocommit=True
        ) as pg:
            pg.execute(sql.SQL("SET lock_timeout = {}").format(target.lock_timeout_ms))
            for attempt in range(target.lock_retries + 1):
                try:
                    with pg.transaction():
                        _publish_once(source, pg, marts, target)
                    return
                except psycopg.errors.LockNotAvailable:
                    if attempt == target.lock_retries:
                        raise
                    logger.warning(
                        "PostgreSQL publish: a BI query held a lock longer than %s ms "
                        "(attempt %s of %s); trying again in %s s",
                        target.lock_timeout_ms,
                        attempt + 1,
                        target.lock_retries + 1,
                        target.lock_retry_seconds,
                    )
                    time.sleep(target.lock_retry_seconds)
    except psycopg.Error as exc:
        # The message names the server and the problem (libpq never echoes the password).
        raise PostgresPublishFailed(
            f"publishing the marts to PostgreSQL schema '{target.schema_name}' failed; it still "
            f"serves the previous marts. {type(exc).__name__}: {str(exc).strip()}"
        ) from None
    finally:
        source.close()


_Mart = tuple[str | None, list[tuple[str, str, str | None]]]  # comment, (column, type, comment)


def _describe(source: duckdb.DuckDBPyConnection, table: str) -> _Mart:
    (comment,) = source.execute(
        "select comment from duckdb_tables() where table_name = ? and schema_name = 'main'",
        [table],
    ).fetchone()
    columns = source.execute(
        "select column_name, data_type, comment from duckdb_columns() "
        "where table_name = ? and schema_name = 'main' order by column_index",
        [table],
    ).fetchall()
    return comment, [(c, postgres_type(t), note) for c, t, note in columns]


def _served_columns(pg: psycopg.Connection, schema: str) -> dict[str, list[tuple[str, str]]]:
    rows = pg.execute(
        "select c.relname, a.attname, format_type(a.atttypid, a.atttypmod) "
        "from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped "
        "where n.nspname = %s and c.relkind = 'r' order by c.relname, a.attnum",
        [schema],
    ).fetchall()
    served: dict[str, list[tuple[str, str]]] = {}
    for table, column, type_ in rows:
        served.setdefault(table, []).append((column, type_))
    return served


def _dependent_views(pg: psycopg.Connection, schema: str, table: str) -> list[str]:
    """Views (and materialized views) of anyone that select from `schema.table`."""
    rows = pg.execute(
        "select distinct v.relnamespace::regnamespace::text || '.' || v.relname "
        "from pg_depend d join pg_rewrite r on r.oid = d.objid "
        "join pg_class v on v.oid = r.ev_class "
        "where d.classid = 'pg_rewrite'::regclass and v.oid <> d.refobjid "
        "and d.refobjid = (quote_ident(%s) || '.' || quote_ident(%s))::regclass order by 1",
        [schema, table],
    ).fetchall()
    return [r[0] for r in rows]


def _drop(pg: psycopg.Connection, schema: str, table: str, why: str) -> None:
    views = _dependent_views(pg, schema, table)
    if views:
        raise PostgresPublishFailed(
            f"publishing the marts to PostgreSQL schema '{schema}' refused: {why}, so table "
            f"{schema}.{table} must be re-created, but these views depend on it: "
            f"{', '.join(views)}. Drop them (keep their SQL), run again, then re-create them "
            "against the new columns. Nothing was changed."
        )
    pg.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, table)))


def _publish_once(
    source: duckdb.DuckDBPyConnection,
    pg: psycopg.Connection,
    marts: dict[str, _Mart],
    target: PostgresTarget,
) -> None:
    schema, role = target.schema_name, sql.Identifier(target.readonly_role)
    pg.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    served = _served_columns(pg, schema)
    for table in sorted(set(served) - set(marts)):
        _drop(pg, schema, table, "the mart is no longer built")
    for table, (comment, columns) in marts.items():
        name = sql.Identifier(schema, table)
        wanted = [(c, t) for c, t, _ in columns]
        if table in served and served[table] != wanted:
            _drop(pg, schema, table, "the mart's columns changed")
        if table in served and served[table] == wanted:
            # ROW EXCLUSIVE: readers keep reading the old rows until COMMIT, nobody waits.
            pg.execute(sql.SQL("DELETE FROM {}").format(name))
        else:
            pg.execute(
                sql.SQL("CREATE TABLE {} ({})").format(
                    name,
                    sql.SQL(", ").join(
                        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in wanted
                    ),
                )
            )
        _copy_rows(source, pg, name, table, [c for c, _ in wanted])
        _comment(pg, schema, table, comment, columns)
        (granted,) = pg.execute(
            "select has_table_privilege(%s, quote_ident(%s) || '.' || quote_ident(%s), 'SELECT')",
            [target.readonly_role, schema, table],
        ).fetchone()
        if not granted:
            pg.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(name, role))
    (usage,) = pg.execute(
        "select has_schema_privilege(%s, %s, 'USAGE')", [target.readonly_role, schema]
    ).fetchone()
    if not usage:
        pg.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), role))


def _comment(
    pg: psycopg.Connection,
    schema: str,
    table: str,
    comment: str | None,
    columns: list[tuple[str, str, str | None]],
) -> None:
    """COMMENT ON where the text differs (it takes a SHARE UPDATE EXCLUSIVE lock, which readers
    do not wait for, but an unchanged comment need not be written every night)."""
    current = dict(
        pg.execute(
            "select coalesce(a.attname, ''), d.description from pg_description d "
            "left join pg_attribute a on a.attrelid = d.objoid and a.attnum = d.objsubid "
            "where d.classoid = 'pg_class'::regclass "
            "and d.objoid = (quote_ident(%s) || '.' || quote_ident(%s))::regclass",
            [schema, table],
        ).fetchall()
    )
    if comment and current.get("") != comment:
        pg.execute(
            sql.SQL("COMMENT ON TABLE {} IS {}").format(
                sql.Identifier(schema, table), sql.Literal(comment)
            )
        )
    for column, _, text in columns:
        if text and current.get(column) != text:
            pg.execute(
                sql.SQL("COMMENT ON COLUMN {} IS {}").format(
                    sql.Identifier(schema, table, column), sql.Literal(text)
                )
            )


def _copy_rows(
    source: duckdb.DuckDBPyConnection,
    pg: psycopg.Connection,
    name: sql.Identifier,
    table: str,
    columns: list[str],
) -> None:
    rows = source.execute(f'select * from "{table}"')
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
        name, sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    with pg.cursor().copy(copy) as out:
        while batch := rows.fetchmany(10_000):
            for row in batch:
                out.write_row(row)
