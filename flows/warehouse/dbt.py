"""dbt build of the work warehouse (and the dbt docs page).

dbt runs in a subprocess: clean global state, the DuckDB lock released when it exits, and its
log lines forwarded. It is never retried: a failing model or test fails the same way twice.

The two pupil-level models are incremental (they rebuild the months and terms whose clean
files changed, see dbt_project/README.md). What the files cannot tell is a change of the
code that builds them: the build therefore runs with `--full-refresh` when the dbt project,
the dbt variables or the dbt/DuckDB versions differ from those of the last successful build
(a fingerprint kept next to the work warehouse), and whenever asked to
(`lagesbild run --full-refresh`).

Besides that fingerprint, the build records the state of every dbt input it was built from
(`input_state`: the dbt project, seeds and settings through the fingerprint, each clean
folder's files, the run date). The next build compares: nothing changed → no dbt at all;
only attendance (or housing work-order) partitions changed → `dbt build --select` of the
models downstream of them; a new run date → also the run-date marts (`RUN_DATE_MODELS`).
The nightly compares the same state with the one of the last completed publish to skip a
quiet night (docs/operations.md, *A quiet night*).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import date
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import duckdb

from flows.attendance.retention import retired_file, retired_months
from flows.layers import storage
from flows.layers.clean import check_clean_files
from flows.layers.files import replace
from lagesbild.settings import Paths, Settings, today

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
    """The dbt variables that come from the settings. The run date goes in the environment
    (LAGESBILD_AS_OF_DATE, macro as_of_date): a changed --vars value makes dbt parse the whole
    project again, a changed environment variable only the files that use it."""
    return {
        "min_persons": settings.suppression.min_persons,
        "min_denominator": settings.suppression.min_denominator,
        "min_response_rate_pct": settings.statistics.min_response_rate_pct,
        "municipality_code": settings.municipality.code,
        "municipality_name": settings.municipality.name,
        "freshness_school_days": settings.freshness_school_days,
    }


_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.+?) \(PID (\d+)\)")


def _held_open(work_db: Path, holder: re.Match, seconds: float) -> DbtFailed:
    program, pid = holder.groups()
    return DbtFailed(
        f"{work_db} is held open by PID {pid} ({program}) for more than {seconds:.0f} s, so "
        "dbt cannot build; the served marts are unchanged. End that session and run again; "
        "analysts read marts.duckdb or the parquet files, never work.duckdb (docs/bi-access.md)."
    )


def _wait_for_work_db(settings: Settings) -> None:
    """A reader holding work.duckdb open (e.g. an analyst's DuckDB session) blocks dbt: wait
    up to `work_db_lock_timeout` seconds for it, then fail in one line naming it."""
    work_db, timeout = settings.paths.work_db, settings.work_db_lock_timeout
    deadline, warned = time.monotonic() + timeout, False
    while work_db.exists():
        try:
            duckdb.connect(str(work_db)).close()
            return
        except duckdb.IOException as exc:
            holder = _LOCK_HOLDER.search(str(exc))
            if holder is None:
                raise
            if time.monotonic() >= deadline:
                raise _held_open(work_db, holder, timeout) from None
            if not warned:
                log.warning(
                    "%s is held open by PID %s (%s); dbt waits up to %.0f s for it",
                    work_db,
                    holder.group(2),
                    holder.group(1),
                    timeout,
                )
                warned = True
            time.sleep(min(2.0, max(deadline - time.monotonic(), 0.1)))


def clean_for_dbt(paths: Paths) -> Path:
    """Where dbt reads the clean layer: the layer itself when it is local; a local copy
    when it is on an object store (`layers_url`). dbt-duckdb would read s3:// through
    DuckDB's httpfs extension, which DuckDB downloads on first use: not on a server
    without internet access, so the copy (docs/design.md, "Layers on object storage")."""
    return paths.clean if storage.is_local(paths.clean) else paths.warehouse / "clean-copy"


def copy_clean_for_dbt(paths: Paths) -> None:
    """Refresh dbt's local copy of a clean layer on an object store (whole: the build reads
    every partition anyway); nothing to do for a local one."""
    copy = clean_for_dbt(paths)
    if copy == paths.clean:
        return
    storage.remove(copy)
    copy.mkdir(parents=True)
    if paths.clean.exists():
        paths.clean.fs.get(paths.clean.path + "/", str(copy), recursive=True)


def _run_dbt(
    settings: Settings, arguments: list[str], as_of: date | None, only_this_build: bool = False
) -> tuple[int, list[str]]:
    """Run one dbt command against the work warehouse; forward and return its log lines.
    `only_this_build`: the tests with `where: this_build` check only the rows this command
    writes (macro get_where_subquery); otherwise every row."""
    paths = settings.paths
    paths.warehouse.mkdir(parents=True, exist_ok=True)
    _wait_for_work_db(settings)
    variables = _dbt_variables(settings)
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
        "LAGESBILD_CLEAN_DIR": str(clean_for_dbt(paths)),
        "LAGESBILD_WORK_DB": str(paths.work_db),
        "LAGESBILD_AS_OF_DATE": (as_of or today()).isoformat(),
        "LAGESBILD_DUCKDB_MEMORY_LIMIT": settings.warehouse_memory_limit,
        # months whose clean files retention deleted: the incremental tables keep their rows
        "LAGESBILD_RETIRED_MONTHS": ",".join(retired_months(paths)),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DO_NOT_TRACK": "1",
        "LAGESBILD_TEST_THIS_BUILD_ONLY": "1" if only_this_build else "",
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


def _unfinished_file(paths: Paths) -> Path:
    """Present while a build of the pupil-level tables runs and after one that failed or was
    killed: rows it wrote may be untested, so the next build tests every row, not only the
    rows it writes itself (`where: this_build`)."""
    return paths.warehouse / "work.build-unfinished"


# The marts whose rows depend on the run date (macro as_of_date) and not only on the data:
# mart_source_freshness judges each source's lag on the run date. Every other mart (the goal
# marts too: `data_through`, partial periods) depends on the data alone. So a new run date
# with nothing new rebuilds these and nothing else; `tests/unit/test_quiet_night.py` checks
# that no other model uses as_of_date (nor today's date).
RUN_DATE_MODELS = ("mart_source_freshness",)

# Clean folders whose change can be built as a dbt subgraph: the models (and source tests)
# downstream of them. A change anywhere else (reference data, statistics) builds everything.
SUBGRAPHS = {
    "attendance": ("source:attendance+", "path:models/staging/attendance+"),
    "housing_work_orders": (
        "source:housing.work_orders+",
        "path:models/staging/housing/stg_housing__work_orders.sql+",
    ),
}


def _clean_folder_digest(folder: Path) -> str:
    """A partition file (`period=` in its path) by size and modification time: the clean
    step rewrites one only when its period changed (dbt's month versions rely on the same).
    Every other clean file (reference, statistics: small, rewritten by every run) by
    content."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue  # staging and temporary files of an unfinished write
        digest.update(f"{relative.as_posix()}\0".encode())
        if any(part.startswith("period=") for part in relative.parts):
            digest.update(f"{storage.version(path)}\0".encode())
        else:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def input_state(settings: Settings, run_date: date) -> dict[str, object]:
    """Everything the work warehouse's rows are built from: the dbt fingerprint (project,
    seeds, dbt variables of the settings, versions), a digest per clean folder (attendance,
    housing_work_orders, reference, statistics) and the run date."""
    clean = settings.paths.clean
    folders = sorted(p for p in clean.iterdir() if p.is_dir()) if clean.exists() else []
    return {
        "dbt": build_fingerprint(settings),
        "clean": {p.name: _clean_folder_digest(p) for p in folders},
        "run_date": run_date.isoformat(),
    }


def _read_state(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # missing, or cut short by a crash: as if never built
        return None


def _write_state(path: Path, state: dict) -> None:
    """Written in place, no temporary file to leave behind: a write cut short leaves JSON
    that does not parse, read as no record (the next run builds and publishes again)."""
    path.write_text(json.dumps(state, sort_keys=True, indent=1) + "\n")


def _built_state_file(paths: Paths) -> Path:
    return paths.warehouse / "work.inputs.json"


def _served_state_file(paths: Paths) -> Path:
    return paths.warehouse / "served.inputs.json"


def _served_files(paths: Paths) -> dict[str, str]:
    """What is served now, by size and modification time (a quiet night leaves both)."""
    files = {}
    for path in [paths.marts_db, *sorted(paths.marts_parquet.glob("*.parquet"))]:
        if path.exists():
            stat = path.stat()
            files[path.name] = f"{stat.st_size}:{stat.st_mtime_ns}"
    return files


def _without_password(url: str) -> str:
    """A database URL without its password: where the marts go, not the secret."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _publish_code(settings: Settings) -> str:
    """What else decides the served files and the report: the publish settings (the
    PostgreSQL target without its password) and the code that writes them."""
    digest = hashlib.sha256()
    postgres = settings.postgres
    publish_settings = {
        "served_storage_version": settings.served_storage_version,
        "postgres": {
            **postgres.model_dump(exclude={"url"}),
            "target": _without_password(postgres.url.get_secret_value()),
        }
        if postgres
        else None,
        "municipality": settings.municipality.name,
    }
    digest.update(json.dumps(publish_settings, sort_keys=True, default=str).encode())
    root = Path(__file__).resolve().parents[1]
    code = [root / "warehouse" / "publish.py", root / "warehouse" / "postgres.py"]
    code += sorted((root / "reports").rglob("*"))
    for path in code:
        if path.is_file() and path.suffix != ".pyc":
            digest.update(path.read_bytes())
    return digest.hexdigest()


def served_state(settings: Settings, built: dict[str, object]) -> dict[str, object]:
    return {
        "inputs": built,
        "publish": _publish_code(settings),
        "served": _served_files(settings.paths),
    }


def record_served(settings: Settings, built: dict[str, object]) -> None:
    """After a completed publish and report: what the served marts were built from."""
    _write_state(_served_state_file(settings.paths), served_state(settings, built))


def nothing_new(settings: Settings, run_date: date) -> bool:
    """Whether the served marts, report and run date are exactly those of the last completed
    run: every dbt input, the publish settings and code unchanged, the served files untouched
    since. Then dbt, publish and report would write the same again."""
    recorded = _read_state(_served_state_file(settings.paths))
    if recorded is None or not settings.paths.marts_db.exists():
        return False
    return recorded == served_state(settings, input_state(settings, run_date))


def _selection(previous: dict | None, current: dict[str, object]) -> tuple[list[str] | None, str]:
    """What to build, from the inputs of the last successful build: None is everything,
    [] nothing, else `--select` arguments; and why."""
    if previous is None or previous.get("dbt") != current["dbt"]:
        return None, "no record of the inputs of the last successful build"
    before, now = previous.get("clean", {}), current["clean"]
    changed = sorted(f for f in set(before) | set(now) if before.get(f) != now.get(f))
    new_day = previous.get("run_date") != current["run_date"]
    if not changed and not new_day:
        return [], "nothing changed since the last successful build"
    if any(folder not in SUBGRAPHS for folder in changed):
        return None, f"changed: {', '.join(changed)}"
    selected = [s for folder in changed for s in SUBGRAPHS[folder]]
    if new_day:
        selected += RUN_DATE_MODELS
    what = [f"clean {folder}" for folder in changed] + (["the run date"] if new_day else [])
    return selected, f"only {' and '.join(what)} changed; building what depends on it"


@dataclass
class DbtBuild:
    nodes: int  # models, tests, seeds that dbt ran
    full_refresh: bool  # rebuilt every table from scratch (`dbt build --full-refresh`)
    reason: str  # why it was a full refresh, or why not
    inputs: dict[str, object] | None = None  # `input_state` the work warehouse now holds
    selected: list[str] | None = None  # the `--select` of a partial build


def dbt_build(
    settings: Settings, as_of: date | None = None, full_refresh: bool = False
) -> DbtBuild:
    """Run `dbt build`, incremental unless asked for a full refresh or the fingerprint of the
    dbt project changed since the last successful build (then `--full-refresh`)."""
    paths = settings.paths
    check_clean_files(paths.clean)  # a damaged file is named here, with its repair
    copy_clean_for_dbt(paths)
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
    retired = retired_months(paths)
    if full_refresh and retired and paths.work_db.exists():
        raise DbtFailed(
            f"dbt build refused: {reason}, but retention (retention_school_years) has deleted "
            f"the clean attendance data of {len(retired)} months ({retired[0]}..{retired[-1]}) "
            "whose pupil-level rows only the work warehouse still holds; a full refresh would "
            "publish marts without them. The served marts are unchanged. Restore those clean "
            "partitions from a backup and remove their months from "
            f"{retired_file(paths)}, or, to accept marts without those months, move that file "
            "aside (docs/operations.md, 'Retention')."
        )
    inputs = input_state(settings, as_of or today())
    selected = None
    incremental = not full_refresh and paths.work_db.exists()
    if incremental:
        selected, why = _selection(_read_state(_built_state_file(paths)), inputs)
        if selected == []:
            reason = f"skipped: {why}"
            log.info("dbt build: %s", reason)
            return DbtBuild(0, False, reason, inputs, [])
        if selected is not None:
            reason = f"incremental: {why} (--select {' '.join(selected)})"
    log.info("dbt build: %s", reason)
    arguments = ["build", "--full-refresh"] if full_refresh else ["build"]
    if selected:
        arguments += ["--select", *selected]
    if incremental:
        # dbt's unit tests check the SQL on fixed inputs: they ran when the code (the
        # fingerprint) last changed, which made that build a full refresh.
        arguments += ["--exclude-resource-type", "unit_test"]
    # The fingerprint is recorded only after a successful build: a build of changed code that
    # fails half-way is done again, in full, by the next run.
    unfinished = _unfinished_file(paths)
    only_this_build = not unfinished.exists()
    if not only_this_build:
        log.info("dbt build: the last build did not finish; every pupil-level row is tested")
    builds_pupil_rows = selected is None or SUBGRAPHS["attendance"][0] in selected
    if builds_pupil_rows:
        paths.warehouse.mkdir(parents=True, exist_ok=True)
        unfinished.touch()
    returncode, lines = _run_dbt(settings, arguments, as_of, only_this_build)
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
        holder = next(filter(None, map(_LOCK_HOLDER.search, lines)), None)
        if holder is not None:  # opened between the wait and dbt's start
            raise _held_open(paths.work_db, holder, settings.work_db_lock_timeout)
        detail = "\n".join(failures) or "\n".join(lines[-30:])
        raise DbtFailed(f"dbt build failed; the served marts are unchanged.\n{detail}")
    tmp = recorded.with_name(f".{recorded.name}.{uuid.uuid4().hex}")
    tmp.write_text(fingerprint + "\n")
    replace(tmp, recorded, "fingerprint")
    _write_state(_built_state_file(paths), inputs)
    if builds_pupil_rows:
        unfinished.unlink(missing_ok=True)
    return DbtBuild(nodes, full_refresh, reason, inputs, selected)


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
