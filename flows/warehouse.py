"""dbt build of the work warehouse, and the atomic publish of the served marts.

dbt runs in a subprocess: clean global state, the DuckDB lock released when it exits, and its
log lines forwarded. It is never retried: a failing model or test fails the same way twice.

The two pupil-level models are incremental (they rebuild the months and terms whose clean
files changed, see dbt_project/README.md). What the files cannot tell is a change of the
code that builds them: the build therefore runs with `--full-refresh` when the dbt project,
the dbt variables or the dbt/DuckDB versions differ from those of the last successful build
(a fingerprint kept next to the work warehouse), and whenever asked to
(`lagesbild run --full-refresh`).

Publishing never opens the served `marts.duckdb` for writing (a BI tool may hold it open):
it copies schema `marts` of the work warehouse into the default schema of a new file and
`os.replace`s it over the served one, then swaps the parquet export folder through a symlink.
The descriptions dbt persisted as comments travel along: `COMMENT ON` in the served file,
key-value metadata in each parquet file, `COMMENT ON` in PostgreSQL (docs/bi-contract.md).
An optional PostgreSQL target (flows/publish_postgres.py) is written before either swap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import date
from importlib import metadata
from pathlib import Path

import duckdb

from flows import disclosure, publish_postgres
from flows.layers import files
from lagesbild.settings import Paths, PostgresTarget, Settings

log = logging.getLogger(__name__)


class DbtFailed(RuntimeError):
    """dbt build failed: a model or a test; the served marts are untouched."""


def _dies_with_parent(command: list[str]) -> list[str]:
    """A killed run must not leave dbt running: it would keep work.duckdb's lock and the
    next run's dbt would fail on it. util-linux `setpriv --pdeathsig` makes Linux kill dbt
    when its parent dies (no preexec_fn: that is unsafe in Prefect's threads)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", *command] if setpriv else command


def dbt_executable() -> str:
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


def _dbt_variables(settings: Settings) -> dict[str, object]:
    """The dbt variables that come from the settings (as_of_date is added per run)."""
    return {
        "min_persons": settings.suppression.min_persons,
        "min_denominator": settings.suppression.min_denominator,
        "min_response_rate_pct": settings.statistics.min_response_rate_pct,
        "municipality_code": settings.municipality.code,
        "municipality_name": settings.municipality.name,
        "freshness_school_days": settings.freshness_school_days,
    }


def _run_dbt(settings: Settings, arguments: list[str], as_of: date | None) -> tuple[int, list[str]]:
    """Run one dbt command against the work warehouse; forward and return its log lines."""
    paths = settings.paths
    paths.warehouse.mkdir(parents=True, exist_ok=True)
    variables = {**_dbt_variables(settings), "as_of_date": (as_of or date.today()).isoformat()}
    command = [
        dbt_executable(),
        *arguments,
        "--project-dir",
        str(settings.dbt_project_dir),
        "--profiles-dir",
        str(settings.dbt_project_dir),
        "--target-path",
        str(paths.warehouse / "dbt_target"),
        "--log-path",
        str(paths.warehouse / "dbt_logs"),
        "--vars",
        json.dumps(variables),
        "--no-use-colors",
    ]
    env = {
        **os.environ,
        "LAGESBILD_CLEAN_DIR": str(paths.clean),
        "LAGESBILD_WORK_DB": str(paths.work_db),
        "LAGESBILD_DUCKDB_MEMORY_LIMIT": settings.warehouse_memory_limit,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DO_NOT_TRACK": "1",
    }
    process = subprocess.Popen(
        _dies_with_parent(command),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line.rstrip())
        log.info("%s", line.rstrip())
    return process.wait(), lines


# Not part of the fingerprint: dbt's own output and state (manual runs write them here).
_NOT_PROJECT_FILES = {"target", "logs", "dbt_packages", ".user.yml", "__pycache__"}


def build_fingerprint(settings: Settings) -> str:
    """What the incremental models' rows depend on besides their input files: every file of
    the dbt project but its markdown (README, doc blocks), the dbt variables of the settings
    (not the run date) and the versions of dbt and DuckDB. sha256, hex."""
    digest = hashlib.sha256()
    project = settings.dbt_project_dir
    for path in sorted(project.rglob("*")):
        relative = path.relative_to(project)
        if path.is_file() and path.suffix != ".md" and not _NOT_PROJECT_FILES & set(relative.parts):
            digest.update(f"{relative.as_posix()}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    digest.update(json.dumps(_dbt_variables(settings), sort_keys=True).encode())
    for package in ("dbt-core", "dbt-duckdb", "duckdb"):
        digest.update(f"{package}={metadata.version(package)}\0".encode())
    return digest.hexdigest()


def _fingerprint_file(paths: Paths) -> Path:
    return paths.warehouse / "work.fingerprint"


@dataclass
class DbtBuild:
    nodes: int  # models, tests, seeds that dbt ran
    full_refresh: bool  # rebuilt every table from scratch (`dbt build --full-refresh`)
    reason: str  # why it was a full refresh, or why not


def dbt_build(
    settings: Settings, as_of: date | None = None, full_refresh: bool = False
) -> DbtBuild:
    """Run `dbt build`, incremental unless asked for a full refresh or the fingerprint of the
    dbt project changed since the last successful build (then `--full-refresh`)."""
    paths = settings.paths
    fingerprint = build_fingerprint(settings)
    recorded = _fingerprint_file(paths)
    previous = recorded.read_text().strip() if recorded.exists() else None
    if full_refresh:
        reason = "full refresh: asked for"
    elif not paths.work_db.exists():
        reason = "full build: the work warehouse is new"
    elif previous != fingerprint:
        full_refresh = True
        reason = (
            "full refresh: the dbt project, its variables or the dbt/DuckDB versions changed "
            "since the last successful build"
            if previous
            else "full refresh: no fingerprint of the last successful build"
        )
    else:
        reason = "incremental: the dbt project is unchanged; only changed months are rebuilt"
    log.info("dbt build: %s", reason)
    arguments = ["build", "--full-refresh"] if full_refresh else ["build"]
    # The fingerprint is recorded only after a successful build: a build of changed code that
    # fails half-way is done again, in full, by the next run.
    returncode, lines = _run_dbt(settings, arguments, as_of)
    failures, nodes = [], 0
    results_file = settings.paths.warehouse / "dbt_target" / "run_results.json"
    if results_file.exists():
        results = json.loads(results_file.read_text())["results"]
        nodes = len(results)
        failures = [
            f"{r['unique_id']}: {r['status']} {r.get('message') or ''}".strip()
            for r in results
            if r["status"] in ("error", "fail", "runtime error")
        ]
    if returncode != 0:
        detail = "\n".join(failures) or "\n".join(lines[-30:])
        raise DbtFailed(f"dbt build failed; the served marts are unchanged.\n{detail}")
    tmp = recorded.with_name(f".{recorded.name}.{uuid.uuid4().hex}")
    tmp.write_text(fingerprint + "\n")
    os.replace(tmp, recorded)
    return DbtBuild(nodes, full_refresh, reason)


def execution_seconds(paths: Paths) -> float | None:
    """How long the last dbt command spent running nodes (run_results.json `elapsed_time`);
    the rest of its wall time is starting Python and dbt and parsing the project."""
    results_file = paths.warehouse / "dbt_target" / "run_results.json"
    if not results_file.exists():
        return None
    return float(json.loads(results_file.read_text())["elapsed_time"])


def dbt_docs(settings: Settings, as_of: date | None = None) -> Path | None:
    """Write the dbt docs site (models, grains, tests, glossary) as one self-contained page.

    Returns its path, or None when dbt could not generate it: the docs are a report, so a
    failure is logged and the run goes on (the marts are already published).
    """
    returncode, lines = _run_dbt(settings, ["docs", "generate", "--static"], as_of)
    page = settings.paths.warehouse / "dbt_target" / "static_index.html"
    if returncode != 0 or not page.exists():
        log.warning(
            "dbt docs could not be generated (the marts are published): %s", " / ".join(lines[-3:])
        )
        return None
    target = settings.paths.reports / "dbt-docs" / "index.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".index.{uuid.uuid4().hex}.html")
    shutil.copyfile(page, tmp)
    os.replace(tmp, target)
    return target


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
    """Copy schema `marts` to a new served file and parquet folder, then swap both in.

    With a PostgreSQL target, that is written from the new file first: if it fails, nothing
    is swapped, so every target keeps serving the same previous marts.
    """
    paths.warehouse.mkdir(parents=True, exist_ok=True)
    for orphan in paths.warehouse.glob(".marts.*.duckdb*"):  # left by a killed publish
        orphan.unlink()
    token = uuid.uuid4().hex[:12]
    next_db = paths.warehouse / f".marts.{token}.duckdb"
    next_parquet = paths.warehouse / f"marts-{token}"
    next_parquet.mkdir()
    con = duckdb.connect(str(next_db), config={"storage_compatibility_version": storage_version})
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"ATTACH '{paths.work_db}' AS work (READ_ONLY)")
        tables = _marts_tables(con)
        if not tables:
            raise DbtFailed("the work warehouse has no tables in schema marts; nothing to publish")
        # The served file holds the marts in its default schema: its catalog is named `marts`
        # (from the file name), so BI users write `marts.<table>` or just `<table>`.
        (served,) = con.execute("SELECT current_database()").fetchone()
        comments = _comments(con)
        for table in tables:
            con.execute(
                f'CREATE TABLE "{served}".main."{table}" AS SELECT * FROM work.marts."{table}"'
            )
        # Linked suppression across the marts, in the new file only (flows/disclosure.py).
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
            con.execute(f"COPY {name} TO '{target}' (FORMAT parquet, KV_METADATA {metadata})")
        con.execute("DETACH work")
    finally:
        con.close()
    if postgres is not None:
        try:
            publish_postgres.publish(next_db, tables, postgres)
        except Exception:
            next_db.unlink(missing_ok=True)
            shutil.rmtree(next_parquet, ignore_errors=True)
            raise
    files.world_readable(next_db)  # the pupil-level layers beside it are owner-only
    files.world_readable(next_parquet)
    os.replace(next_db, paths.marts_db)
    _swap_symlink(paths.marts_parquet, next_parquet)
    return tables


def _swap_symlink(link: Path, new_target: Path) -> None:
    """Point `link` at `new_target` atomically.

    The folder it pointed to before stays until the next publish, so a reader that listed
    the files just before the swap can still read them; older folders are removed.
    """
    previous = link.resolve() if link.is_symlink() else None
    if link.exists() and not link.is_symlink():
        raise RuntimeError(f"{link} is a real folder; move it away so publishing can manage it")
    tmp_link = link.with_name(f".{link.name}.{uuid.uuid4().hex}")
    tmp_link.symlink_to(new_target.name)
    os.replace(tmp_link, link)
    keep = {new_target.resolve(), previous}
    for folder in link.parent.glob(f"{link.name}-*"):
        if folder.resolve() not in keep:
            shutil.rmtree(folder, ignore_errors=True)
