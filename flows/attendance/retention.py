"""Retention: delete pupil-level attendance data older than N school years, once published.

With `retention_school_years` = N the nightly, after a completed publish, deletes the landed
attendance loads (exports and SS 12000 aggregatedAttendance) whose months all lie before the
N most recent school years (a school year starts on 1 July; N = 1 keeps the current one),
and the clean attendance partitions of those months (never the latest month there is). Only
when the served marts were built from exactly the clean files there are now, so every
deleted month is in a published mart.

The marts keep their figures: the work warehouse's incremental pupil-level tables keep the
rows of the months recorded here as retired (`warehouse/retired_months.json`, passed to dbt
as LAGESBILD_RETIRED_MONTHS), and a full refresh, which would rebuild them without those
months, is refused (flows.warehouse.dbt). Each deleted load and partition gets an audit row
(status `deleted_by_retention`).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime
from pathlib import Path

from connectors.attendance_export.resources import SOURCE as EXPORT_SOURCE
from connectors.ss12000.client import SOURCE as SS12000_SOURCE
from flows.layers import storage
from flows.layers.audit import DELETED_BY_RETENTION as DELETED
from flows.layers.audit import append_audit
from flows.layers.files import replace
from flows.layers.landing import Load, landed_loads, remove_load
from lagesbild.settings import Paths, Settings

log = logging.getLogger(__name__)

# pupil-level landed datasets, by source (None: every dataset of it); the SS 12000 lookups
# (persons, organisations, activities, absences) are landed under the run's month and still
# map later days: they are kept
PUPIL_LEVEL = {EXPORT_SOURCE: None, SS12000_SOURCE: "aggregated_attendance"}


def cutoff(today: date, school_years: int) -> date:
    """The first day kept: 1 July of the oldest of the `school_years` latest school years."""
    start = today.year if today.month >= 7 else today.year - 1
    return date(start - (school_years - 1), 7, 1)


def retired_file(paths: Paths) -> Path:
    return paths.warehouse / "retired_months.json"


def retired_months(paths: Paths) -> list[str]:
    """Months ('YYYY-MM') whose pupil-level data retention deleted; the work warehouse keeps
    their rows."""
    path = retired_file(paths)
    return json.loads(path.read_text())["months"] if path.exists() else []


def _record_retired(paths: Paths, months: set[str]) -> None:
    path = retired_file(paths)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"months": sorted(set(retired_months(paths)) | months)}) + "\n")
    replace(tmp, path, "retired-months")


def _published_from_current_clean(settings: Settings) -> bool:
    from flows.warehouse import dbt

    served = dbt._read_state(dbt._served_state_file(settings.paths))
    if served is None or not settings.paths.marts_db.exists():
        return False
    clean = settings.paths.clean / "attendance"
    current = dbt._clean_folder_digest(clean) if clean.exists() else None
    return served.get("inputs", {}).get("clean", {}).get("attendance") == current


def _old_loads(landing: Path, first_kept: str, latest: str | None) -> list[Load]:
    """Loads whose months all lie before `first_kept`, none of them the `latest` clean month
    (kept with its clean partition)."""
    return [
        load
        for source, dataset in PUPIL_LEVEL.items()
        for load in landed_loads(landing, source, dataset)
        if load.manifest.partitions
        and max(load.manifest.partitions)[:7] < first_kept
        and latest not in {p[:7] for p in load.manifest.partitions}
    ]


def apply_retention(settings: Settings, today: date, run_id: str | None = None) -> list[str]:
    """Delete what is older than `retention_school_years` (off when None). Returns what was
    deleted (landing load folders and clean partition folders), for the log and tests."""
    years = settings.retention_school_years
    if years is None:
        return []
    paths = settings.paths
    if not _published_from_current_clean(settings):
        log.info("retention: the served marts are not built from the current clean files; "
                 "nothing deleted until a run has published them")  # fmt: skip
        return []
    first_kept = f"{cutoff(today, years):%Y-%m}"
    clean = paths.clean / "attendance"
    # the latest month stays even when it is older: dbt's attendance source needs a file
    months_present = sorted(p for p in clean.glob("period=*") if p.is_dir())
    latest = months_present[-1].name[len("period=") :] if months_present else None
    partitions = [p for p in months_present[:-1] if p.name[len("period=") :] < first_kept]
    loads = _old_loads(paths.landing, first_kept, latest)
    if not partitions and not loads:
        return []
    months = {p.name[len("period=") :] for p in partitions}
    # recorded first: from now on dbt keeps these months' rows, even if a crash follows
    _record_retired(paths, months)
    now = datetime.now(UTC)
    reason = f"retention_school_years={years}: before {first_kept}"
    rows, deleted = [], []
    for load in loads:
        remove_load(load, paths.landing)
        deleted.append(paths.relative(load.folder))
        m = load.manifest
        periods = ",".join(m.partitions)
        row = _audit_row(m.source, m.dataset, m.load_id, periods, reason, now, run_id)
        rows.append({**row, "file": m.file, "sha256": m.sha256})  # not landed again
    for partition in partitions:
        hidden = partition.with_name(f".{partition.name}.retention.tmp")
        replace(partition, hidden, "retention-clean")
        storage.remove(hidden)
        deleted.append(paths.relative(partition))
        month = partition.name[len("period=") :]
        rows.append(_audit_row("clean", "attendance", f"clean/attendance/period={month}",
                               month, reason, now, run_id))  # fmt: skip
    append_audit(paths.audit, rows)
    log.info("retention: deleted %d landed loads and %d clean months before %s",
             len(loads), len(partitions), first_kept)  # fmt: skip
    return deleted


def _audit_row(source, dataset, load_id, periods, reason, now, run_id) -> dict:
    return {
        "run_id": run_id,
        "source": source,
        "dataset": dataset,
        "load_id": load_id,
        "periods": periods,
        "status": DELETED,
        "started_at": now,
        "finished_at": now,
        "reason": reason,
    }
