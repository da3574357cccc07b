"""dbt build of the work warehouse, and the atomic publish of the served marts.

dbt runs in a subprocess: clean global state, the DuckDB lock released when it exits, and its
log lines forwarded. It is never retried: a failing model or test fails the same way twice.

Publishing never opens the served `marts.duckdb` for writing (a BI tool may hold it open):
it copies schema `marts` of the work warehouse into the default schema of a new file and
`os.replace`s it over the served one, then swaps the parquet export folder through a symlink.
An optional PostgreSQL target (flows/publish_postgres.py) is written before either swap.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path

import duckdb

from flows import publish_postgres
from lagesbild.settings import Paths, PostgresTarget, Settings


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


def _run_dbt(
    settings: Settings, arguments: list[str], log: Callable[[str], None], as_of: date | None
) -> tuple[int, list[str]]:
    """Run one dbt command against the work warehouse; forward and return its log lines."""
    paths = settings.paths
    paths.warehouse.mkdir(parents=True, exist_ok=True)
    variables = {
        "min_persons": settings.suppression.min_persons,
        "min_denominator": settings.suppression.min_denominator,
        "min_response_rate_pct": settings.statistics.min_response_rate_pct,
        "municipality_code": settings.municipality.code,
        "municipality_name": settings.municipality.name,
        "freshness_school_days": settings.freshness_school_days,
        "as_of_date": (as_of or date.today()).isoformat(),
    }
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
        log(line.rstrip())
    return process.wait(), lines


def dbt_build(
    settings: Settings, log: Callable[[str], None] = print, as_of: date | None = None
) -> int:
    """Run `dbt build`; return the number of nodes (models, tests, seeds) it ran."""
    returncode, lines = _run_dbt(settings, ["build"], log, as_of)
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
    return nodes


def execution_seconds(paths: Paths) -> float | None:
    """How long the last dbt command spent running nodes (run_results.json `elapsed_time`);
    the rest of its wall time is starting Python and dbt and parsing the project."""
    results_file = paths.warehouse / "dbt_target" / "run_results.json"
    if not results_file.exists():
        return None
    return float(json.loads(results_file.read_text())["elapsed_time"])


def dbt_docs(
    settings: Settings, log: Callable[[str], None] = print, as_of: date | None = None
) -> Path | None:
    """Write the dbt docs site (models, grains, tests, glossary) as one self-contained page.

    Returns its path, or None when dbt could not generate it: the docs are a report, so a
    failure is logged and the run goes on (the marts are already published).
    """
    returncode, lines = _run_dbt(settings, ["docs", "generate", "--static"], log, as_of)
    page = settings.paths.warehouse / "dbt_target" / "static_index.html"
    if returncode != 0 or not page.exists():
        log("dbt docs could not be generated (the marts are published): " + " / ".join(lines[-3:]))
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


def publish(
    paths: Paths, storage_version: str, postgres: PostgresTarget | None = None
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
        for table in tables:
            name = f'"{served}".main."{table}"'
            con.execute(f'CREATE TABLE {name} AS SELECT * FROM work.marts."{table}"')
            target = next_parquet / f"{table}.parquet"
            con.execute(f"COPY {name} TO '{target}' (FORMAT parquet)")
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
