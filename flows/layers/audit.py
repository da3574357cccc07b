"""The audit: one row per load cleaned (`audit/loads.parquet`), one per run (`runs.parquet`),
and the build lock that lets one run at a time write the layers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
from filelock import FileLock, Timeout

from flows.layers.files import write_parquet_atomic

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
    "status": pl.String,  # cleaned | gate_failed
    "gate": pl.String,  # passed | passed_with_warnings | failed
    "started_at": pl.Datetime("us", "UTC"),
    "finished_at": pl.Datetime("us", "UTC"),
    "seconds": pl.Float64,
}

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


def read_audit(audit_dir: Path) -> pl.DataFrame:
    path = audit_dir / "loads.parquet"
    if not path.exists():
        return pl.DataFrame(schema=AUDIT_SCHEMA)
    return pl.read_parquet(path)


def cleaned_load_ids(audit_dir: Path) -> set[str]:
    audit = read_audit(audit_dir)
    return set(audit.filter(pl.col("status") == "cleaned").get_column("load_id").to_list())


def append_audit(audit_dir: Path, rows: list[dict]) -> None:
    if not rows:
        return
    new = pl.DataFrame(rows, schema=AUDIT_SCHEMA)
    # diagonal: an audit written before a column was added keeps its rows (null there)
    merged = pl.concat([read_audit(audit_dir), new], how="diagonal_relaxed")
    write_parquet_atomic(merged, audit_dir / "loads.parquet")


RUNS_SCHEMA = {
    "run_id": pl.String,
    "flow": pl.String,  # nightly | backfill
    "window": pl.String,  # backfill: source from..to
    "run_date": pl.Date,
    "started_at": pl.Datetime("us", "UTC"),
    "finished_at": pl.Datetime("us", "UTC"),
    "status": pl.String,  # Completed | Failed
    "error": pl.String,
    "loads": pl.Int64,
    "published": pl.Boolean,
}


def read_runs(audit_dir: Path) -> pl.DataFrame:
    path = audit_dir / "runs.parquet"
    return pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=RUNS_SCHEMA)


def append_run(audit_dir: Path, row: dict) -> None:
    new = pl.DataFrame([row], schema=RUNS_SCHEMA)
    write_parquet_atomic(pl.concat([read_runs(audit_dir), new]), audit_dir / "runs.parquet")


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
