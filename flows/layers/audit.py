"""The audit: one row per load cleaned (`audit/loads.parquet`), one per run (`runs.parquet`),
and the build lock that lets one run at a time write the layers.

A load cleaned again (a backfill, a rerun after a failed gate) gets a new row; `is_current`
marks the latest row of each load, so a sum over the current rows counts each load once.
A load whose cleaning failed gets a row `failed` with its `reason`; a load taken out with
`lagesbild retract` gets `retracting` (its removal started) and then `retracted`, with who
(`by`), when (`finished_at`) and why (`reason`): such a load is never cleaned again, and its
file (`sha256`) is not landed again.
A run's row is written when it starts ('Running'), completed when it ends, and marked
'Crashed' by a later run (or shown so by `lagesbild status`) once its process is gone.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import polars as pl
from filelock import FileLock, Timeout

from flows.layers.files import read_parquet_checked, write_parquet_atomic

log = logging.getLogger(__name__)

AUDIT_SCHEMA = {
    "run_id": pl.String,
    "source": pl.String,
    "dataset": pl.String,
    "load_id": pl.String,
    "file": pl.String,
    "periods": pl.String,
    "rows_received": pl.Int64,
    "rows_clean": pl.Int64,
    "rows_quarantined": pl.Int64,
    "rows_duplicate": pl.Int64,
    # clean rows not served: a stronger source (the dataset's precedence) has them
    "rows_superseded": pl.Int64,
    # cleaned | gate_failed | failed | retracting | retracted | deleted_by_retention
    "status": pl.String,
    "gate": pl.String,  # passed | passed_with_warnings | failed
    "started_at": pl.Datetime("us", "UTC"),
    "finished_at": pl.Datetime("us", "UTC"),
    "seconds": pl.Float64,
    # the latest row of its load: a load cleaned again has one current row, older ones false
    "is_current": pl.Boolean,
    "reason": pl.String,  # failed: why cleaning failed; retracted: the reason given
    "by": pl.String,  # retracted: the user who retracted it
    "sha256": pl.String,  # retracted: the landed file's content, not to be landed again
}

# A load whose current audit row says one of these is out of the clean layer (or on its way).
RETRACTED = ("retracting", "retracted")
# A load or clean month the retention setting deleted (flows/attendance/retention.py); its
# file (`sha256`) is not landed again.
DELETED_BY_RETENTION = "deleted_by_retention"

# what to do with a damaged audit table
AUDIT_REPAIR = (
    "Move it aside (e.g. to loads.parquet.damaged) and run `lagesbild run`: every landed load "
    "is then cleaned and accounted again."
)
RUNS_REPAIR = (
    "Move it aside (e.g. to runs.parquet.damaged): the next run starts a new run history; the "
    "data and the served marts are not affected."
)

# The columns a person reads first (run summary, `lagesbild status`).
AUDIT_OVERVIEW = [
    "dataset",
    "file",
    "rows_received",
    "rows_clean",
    "rows_quarantined",
    "rows_duplicate",
    "status",
    "gate",
]


def _read_table(path: Path, schema: dict, repair: str) -> pl.DataFrame:
    """The audit table at `path` (empty before its first row), in `schema`: a table written
    before a column was added has it null."""
    if not path.exists():
        return pl.DataFrame(schema=schema)
    table = read_parquet_checked(path, repair)
    return pl.concat([pl.DataFrame(schema=schema), table], how="diagonal_relaxed")


def read_audit(audit_dir: Path) -> pl.DataFrame:
    return _read_table(audit_dir / "loads.parquet", AUDIT_SCHEMA, AUDIT_REPAIR)


def cleaned_load_ids(audit_dir: Path) -> set[str]:
    audit = read_audit(audit_dir)
    return set(audit.filter(pl.col("status") == "cleaned").get_column("load_id").to_list())


def failed_loads(audit_dir: Path) -> pl.DataFrame:
    """The current rows of loads whose cleaning failed (they block every run until the
    cause is fixed or the load is retracted)."""
    return current_rows(read_audit(audit_dir)).filter(pl.col("status") == "failed")


def current_rows(audit: pl.DataFrame) -> pl.DataFrame:
    """The latest row of each load (a sum over them counts each load once)."""
    return audit.filter(pl.col("is_current"))


def retractions(audit_dir: Path) -> pl.DataFrame:
    """The current rows of retracted loads (and of retractions not finished yet)."""
    return current_rows(read_audit(audit_dir)).filter(pl.col("status").is_in(RETRACTED))


def append_audit(audit_dir: Path, rows: list[dict]) -> None:
    if not rows:
        return
    new = pl.DataFrame([{**row, "is_current": True} for row in rows], schema=AUDIT_SCHEMA)
    # diagonal: an audit written before a column was added keeps its rows (null there)
    merged = pl.concat([read_audit(audit_dir), new], how="diagonal_relaxed")
    latest = pl.int_range(pl.len()).over("load_id") == pl.len().over("load_id") - 1
    write_parquet_atomic(
        merged.with_columns(is_current=latest), audit_dir / "loads.parquet", "audit-loads"
    )


RUNS_SCHEMA = {
    "run_id": pl.String,
    "flow": pl.String,  # nightly | backfill
    "window": pl.String,  # backfill: source from..to
    "run_date": pl.Date,
    "started_at": pl.Datetime("us", "UTC"),
    "finished_at": pl.Datetime("us", "UTC"),
    "status": pl.String,  # Running | Completed | Failed | Crashed
    "error": pl.String,
    "loads": pl.Int64,
    "published": pl.Boolean,
    "published_at": pl.Datetime("us", "UTC"),  # when the served marts were swapped
    # what a completed run did not do and why, e.g. "nothing new: stages skipped (dbt, ...)"
    "note": pl.String,
    "pid": pl.Int64,  # the run's process, to tell a run still going from a killed one
    "host": pl.String,
}


def read_runs(audit_dir: Path) -> pl.DataFrame:
    return _read_table(audit_dir / "runs.parquet", RUNS_SCHEMA, RUNS_REPAIR)


@contextmanager
def _runs_file(audit_dir: Path) -> Iterator[pl.DataFrame]:
    """runs.parquet is written by a run waiting for the build lock too: a short lock of
    its own keeps two writers from losing each other's rows."""
    audit_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(audit_dir / ".runs.lock", timeout=60):
        yield read_runs(audit_dir)


def _write_runs(audit_dir: Path, runs: pl.DataFrame) -> None:
    write_parquet_atomic(runs.select(list(RUNS_SCHEMA)), audit_dir / "runs.parquet", "audit-runs")


def process_alive(pid: int | None, host: str | None, since: datetime | None) -> bool:
    """Whether the process that started a run still runs. On another host it cannot be
    told: assume so. A pid reused by a process started after the run is not it."""
    if pid is None or host != socket.gethostname():
        return pid is not None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        if fields[0] == "Z":  # killed, not yet reaped by its parent
            return False
        with open("/proc/stat") as stat:
            boot = next(int(line.split()[1]) for line in stat if line.startswith("btime"))
        started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return True  # no /proc: trust the pid
    return since is None or started <= since.timestamp() + 2


def with_crashed(runs: pl.DataFrame) -> pl.DataFrame:
    """Runs still 'Running' whose process is gone, shown as 'Crashed' with the reason."""
    gone = [
        row["run_id"]
        for row in runs.filter(pl.col("status") == "Running").iter_rows(named=True)
        if not process_alive(row["pid"], row["host"], row["started_at"])
    ]
    if not gone:
        return runs
    crashed = pl.col("run_id").is_in(gone)
    return runs.with_columns(
        status=pl.when(crashed).then(pl.lit("Crashed")).otherwise("status"),
        error=pl.when(crashed)
        .then(
            pl.format(
                "the run's process (pid {} on {}) ended without finishing: it was killed "
                "(kill -9, out of memory) or the machine stopped. What it changed is "
                "completed or cleaned up by the next run.",
                "pid",
                "host",
            )
        )
        .otherwise("error"),
    )


def start_run(audit_dir: Path, row: dict) -> None:
    """Record a run as it starts ('Running', this process), and any earlier run whose
    process is gone as 'Crashed'."""
    row = {**row, "status": "Running", "pid": os.getpid(), "host": socket.gethostname()}
    with _runs_file(audit_dir) as runs:
        runs = with_crashed(runs)
        _write_runs(audit_dir, pl.concat([runs, pl.DataFrame([row], schema=RUNS_SCHEMA)]))


def update_run(audit_dir: Path, run_id: str, **values) -> None:
    """Change a recorded run's row (its end, its publish time)."""
    with _runs_file(audit_dir) as runs:
        mine = pl.col("run_id") == run_id
        runs = runs.with_columns(
            pl.when(mine).then(pl.lit(v, dtype=RUNS_SCHEMA[k])).otherwise(k).alias(k)
            for k, v in values.items()
        )
        _write_runs(audit_dir, runs)


class RunLocked(RuntimeError):
    """Another run is building; this one did not start."""


@contextmanager
def run_lock(data_dir: Path, timeout: float) -> Iterator[None]:
    """Hold the data folder's build lock; wait up to `timeout` seconds for another run."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(data_dir / ".build.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning(
            "another lagesbild run is building in %s; waiting up to %.0f s", data_dir, timeout
        )
        try:
            lock.acquire(timeout=timeout)
        except Timeout as exc:
            raise RunLocked(
                f"another lagesbild run held {lock.lock_file} for more than {timeout:.0f} s; "
                "this run did not start and changed nothing. See `lagesbild status`; if no "
                "run is active the lock is released automatically when its process ends."
            ) from exc
    try:
        yield
    finally:
        lock.release()
