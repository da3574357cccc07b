"""Files of the layers: landing loads, atomic parquet writes, the audit table.

Landing is immutable: one folder per load with the rows as parquet and `_manifest.json`.
Everything else is written to a temporary name and renamed into place, so a crash never
leaves half a partition behind.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from filelock import FileLock, Timeout

from flows.gate import GateResult

MANIFEST = "_manifest.json"
DATA_FILE = "data.parquet"


@dataclass
class Manifest:
    source: str
    dataset: str
    load_id: str
    period: str
    periods: list[str]
    file: str
    sha256: str
    rows: int
    extracted_at: str
    columns: list[str]
    dropped_columns: list[str] = field(default_factory=list)
    pseudonymised: dict[str, str] = field(default_factory=dict)
    request: dict = field(default_factory=dict)  # API loads: what was asked (e.g. the days)
    # what the source said about this release (statistics: updated/publication dates, request)
    release: dict = field(default_factory=dict)
    # drop-folder files: size and modification time when found (drop_files.Landed's quick check)
    size: int | None = None
    mtime_ns: int | None = None


@dataclass
class CleanOutcome:
    """What one run's clean stage did for a dataset; datasets' outcomes add up with `+=`."""

    loads: list[dict] = field(default_factory=list)  # audit rows of this run
    gates: list[GateResult] = field(default_factory=list)
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    partitions_replaced: list[str] = field(default_factory=list)  # "<dataset>/period=<p>"

    @property
    def gate_failed(self) -> bool:
        return any(g.critical_failures for g in self.gates)

    def __iadd__(self, other: CleanOutcome) -> CleanOutcome:
        self.loads += other.loads
        self.gates += other.gates
        for reason, count in other.quarantine_reasons.items():
            self.quarantine_reasons[reason] = self.quarantine_reasons.get(reason, 0) + count
        self.partitions_replaced += other.partitions_replaced
        return self


def new_load_id(sha256: str, now: datetime | None = None) -> str:
    """Sortable by time, unique by content."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S%f}-{sha256[:10]}"


def write_parquet_atomic(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    frame.write_parquet(tmp, statistics=True)
    os.replace(tmp, path)


def land(root: Path, manifest: Manifest, rows: pl.DataFrame) -> Path:
    """Write one landing load; the folder appears complete or not at all."""
    final = (
        root
        / manifest.source
        / manifest.dataset
        / f"period={manifest.period}"
        / f"load_id={manifest.load_id}"
    )
    staged = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    rows.write_parquet(staged / DATA_FILE)
    (staged / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2, ensure_ascii=False))
    os.replace(staged, final)
    return final


def land_export(
    root: Path,
    drop: Path,
    source: str,
    batch,
    periods: list[str],
    pseudonymised: dict | None = None,
) -> Manifest:
    """Land one file read from the drop folder (a connector's ExportBatch) with its manifest."""
    manifest = Manifest(
        source=source,
        dataset=batch.file.layout.name,
        load_id=new_load_id(batch.file.sha256),
        period=periods[0],
        periods=periods,
        file=str(batch.file.path.relative_to(drop)),
        sha256=batch.file.sha256,
        rows=batch.rows.height,
        extracted_at=datetime.now(UTC).isoformat(timespec="seconds"),
        columns=batch.rows.columns,
        dropped_columns=batch.dropped_columns,
        pseudonymised=pseudonymised or {},
    )
    if batch.file.stat is not None:
        manifest.size, manifest.mtime_ns = batch.file.stat
    land(root, manifest, batch.rows)
    return manifest


def landed_loads(root: Path, source: str) -> list[tuple[Manifest, Path]]:
    loads = []
    for manifest_path in sorted((root / source).glob(f"*/period=*/load_id=*/{MANIFEST}")):
        manifest = Manifest(**json.loads(manifest_path.read_text(encoding="utf-8")))
        loads.append((manifest, manifest_path.parent))
    return sorted(loads, key=lambda item: item[0].load_id)


# -- audit -----------------------------------------------------------------------------------

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
    # clean rows not served: a source earlier in `attendance_precedence` has that school-day
    "rows_superseded": pl.Int64,
    "status": pl.String,  # cleaned | gate_failed | failed
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


def append_audit(audit_dir: Path, rows: list[dict]) -> None:
    if not rows:
        return
    new = pl.DataFrame(rows, schema=AUDIT_SCHEMA)
    # diagonal: an audit written before a column was added keeps its rows (null there)
    merged = pl.concat([read_audit(audit_dir), new], how="diagonal_relaxed")
    write_parquet_atomic(merged, audit_dir / "loads.parquet")


# -- runs ------------------------------------------------------------------------------------

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


# -- one build at a time ---------------------------------------------------------------------


class RunLocked(RuntimeError):
    """Another run is building; this one did not start."""


@contextmanager
def run_lock(data_dir: Path, timeout: float, log) -> Iterator[None]:
    """Hold the data folder's build lock; wait up to `timeout` seconds for another run."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(data_dir / ".build.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log(f"another lagesbild run is building in {data_dir}; waiting up to {timeout:.0f} s")
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
