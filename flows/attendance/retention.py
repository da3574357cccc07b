"""Retention: delete pupil-level attendance data older than N school years, once published.

With `retention_school_years` = N the nightly, after a completed publish, deletes every
pupil-level layer of what lies before the N most recent school years (a school year starts on
1 July; N = 1 keeps the current one):

* the landed attendance loads (exports and SS 12000 aggregatedAttendance) whose months all lie
  before the first kept month, and the clean attendance partitions of those months (never the
  latest month there is);
* the quarantine of every load retention deletes (it holds the load's rejected pupil rows);
* SS 12000 absences loads (landed under the month of the run that fetched them) landed before
  the first kept month whose absences all end before it: they only name days to fetch again,
  and those days are retired;
* SS 12000 persons loads landed before the first kept month that map no kept or later day:
  each row is an older version of a person whose latest version is landed later, or the latest
  version of a person whose enrolments all ended before the cutoff (a pupil who has left). A
  load holding a current person's latest version stays whole (landing is never rewritten), and
  so does a left pupil's latest version while an older version of them stays elsewhere, so the
  persons read from landing map every day the same way as before.

The absences and persons load that holds the resource's watermark (its latest `meta.modified`)
always stays: without it the next run would ask the platform for everything again.
Organisations, activities and absence deletions name no pupil and stay; so do the validation
results (counts and codes; the values of personal columns are never written, flows.layers.gate).

Only when the served marts were built from exactly the clean files there are now, so every
deleted month is in a published mart. The marts keep their figures: the work warehouse's
incremental pupil-level tables keep the rows of the months recorded here as retired
(`warehouse/retired_months.json`, passed to dbt as LAGESBILD_RETIRED_MONTHS), and a full
refresh, which would rebuild them without those months, is refused (flows.warehouse.dbt). Each
deleted load, clean partition and quarantine file gets an audit row (status
`deleted_by_retention`).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

from connectors.attendance_export.resources import SOURCE as EXPORT_SOURCE
from connectors.ss12000.client import SOURCE as SS12000_SOURCE
from flows.layers import storage
from flows.layers.audit import DELETED_BY_RETENTION as DELETED
from flows.layers.audit import append_audit, read_audit
from flows.layers.files import replace
from flows.layers.landing import Load, landed_loads, remove_load
from lagesbild.settings import Paths, Settings

log = logging.getLogger(__name__)

# pupil-level landed datasets partitioned by the months they describe, by source (None: every
# dataset of it); the SS 12000 persons and absences are landed under the run's month and are
# judged by what they hold (`_old_absences`, `_old_persons`)
PUPIL_LEVEL = {EXPORT_SOURCE: None, SS12000_SOURCE: "aggregated_attendance"}
PERSONS, ABSENCES = "persons", "absences"


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


def _instant(column: str) -> pl.Expr:
    # as flows.attendance.ss12000 reads meta.modified: text that is no instant sorts first
    return pl.col(column).str.to_datetime(time_zone="UTC", strict=False)


def _rows_of(loads: list[Load], columns: list[str]) -> pl.DataFrame:
    """The loads' rows in landed order, with `_load` (the load's index) and `_at`."""
    frames = [load.read(columns).with_columns(_load=pl.lit(i)) for i, load in enumerate(loads)]
    return pl.concat(frames, how="diagonal_relaxed").with_columns(_at=_instant("meta_modified"))


def _watermark_load(rows: pl.DataFrame) -> int:
    """The load whose row is the watermark (what flows.attendance.ss12000.watermark picks)."""
    return rows.sort("_at", maintain_order=True)["_load"][-1]


def _landed_before(load: Load, first_kept: str) -> bool:
    return bool(load.manifest.partitions) and max(load.manifest.partitions)[:7] < first_kept


def _old_absences(landing: Path, first_kept: str, first_day: str) -> list[Load]:
    """Absences loads landed before the first kept month whose absences all end before it."""
    loads = landed_loads(landing, SS12000_SOURCE, ABSENCES)
    if not loads:
        return []
    rows = _rows_of(loads, ["end_time", "meta_modified"])
    # an absence without an end is open: it never ends before the cutoff
    end = pl.col("end_time").str.slice(0, 10).fill_null("9999")
    last_day = rows.group_by("_load").agg(end.max())
    ends = dict(last_day.iter_rows())
    keep = _watermark_load(rows)
    return [
        load
        for i, load in enumerate(loads)
        if i != keep and _landed_before(load, first_kept) and (ends.get(i) or "") < first_day
    ]


def _old_persons(landing: Path, first_kept: str, first_day: str) -> list[Load]:
    """Persons loads landed before the first kept month that hold no person's latest version
    but a left pupil's, and no left pupil's latest version while an older one of theirs stays
    (the rule of the module docstring)."""
    loads = landed_loads(landing, SS12000_SOURCE, PERSONS)
    if not loads:
        return []
    rows = _rows_of(loads, ["person_id", "enrolments", "meta_modified"])
    # the version flows.attendance.ss12000.Lookups reads: the latest, the last landed on a tie
    latest = rows.sort("_at", maintain_order=True).unique("person_id", keep="last")
    enrolled = (
        pl.col("enrolments")
        .list.eval(pl.element().struct.field("end_date").fill_null("9999").str.slice(0, 10))
        .list.max()
        .fill_null("")
    )
    latest = latest.with_columns(current=enrolled >= first_day)
    needed = set(latest.filter("current")["_load"]) | {_watermark_load(rows)}
    old = {i for i, load in enumerate(loads) if _landed_before(load, first_kept)} - needed
    left = latest.filter(~pl.col("current")).select("person_id", "_load")
    while True:
        staying = rows.filter(~pl.col("_load").is_in(list(old)))["person_id"].unique()
        exposed = left.filter(
            pl.col("_load").is_in(list(old)), pl.col("person_id").is_in(staying.implode())
        )
        if exposed.is_empty():
            return [load for i, load in enumerate(loads) if i in old]
        old -= set(exposed["_load"])


def _quarantine_of(paths: Paths, load_ids: set[str]) -> list[Path]:
    """The quarantine folders of these loads (each holds the load's rejected rows)."""
    return sorted(
        folder
        for folder in paths.quarantine.glob("*/period=*/load_id=*")
        if folder.is_dir() and folder.name[len("load_id=") :] in load_ids
    )


def _delete(folder: Path, point: str) -> None:
    """Locally: hide a folder with one rename, then remove it, so a crash in between leaves a
    hidden leftover the next run sweeps away, never half a partition that readers would see.
    An object store has no rename (a move copies every object): removed in place there, as
    `remove_load` does."""
    if not storage.is_local(folder):
        storage.remove(folder)
        return
    hidden = folder.with_name(f".{folder.name}.retention.tmp")
    replace(folder, hidden, point)
    storage.remove(hidden)


def apply_retention(settings: Settings, today: date, run_id: str | None = None) -> list[str]:
    """Delete what is older than `retention_school_years` (off when None). Returns what was
    deleted (landing load, clean partition and quarantine folders), for the log and tests."""
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
    first_day = cutoff(today, years).isoformat()
    loads = _old_loads(paths.landing, first_kept, latest)
    loads += _old_absences(paths.landing, first_kept, first_day)
    loads += _old_persons(paths.landing, first_kept, first_day)
    # the quarantine of the loads deleted now, and of those an earlier run deleted
    audit = read_audit(paths.audit)
    gone = set(audit.filter(pl.col("status") == DELETED)["load_id"])
    quarantine = _quarantine_of(paths, gone | {load.load_id for load in loads})
    if not partitions and not loads and not quarantine:
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
        _delete(partition, "retention-clean")
        deleted.append(paths.relative(partition))
        month = partition.name[len("period=") :]
        rows.append(_audit_row("clean", "attendance", f"clean/attendance/period={month}",
                               month, reason, now, run_id))  # fmt: skip
    for folder in quarantine:
        _delete(folder, "retention-quarantine")
        if storage.is_local(folder) and not any(folder.parent.iterdir()):
            folder.parent.rmdir()  # a period no other load has quarantine in
        name = paths.relative(folder)
        deleted.append(name)
        period = folder.parent.name[len("period=") :]
        rows.append(_audit_row("quarantine", folder.parent.parent.name, name, period, reason,
                               now, run_id))  # fmt: skip
    append_audit(paths.audit, rows)
    log.info(
        "retention: deleted %d landed loads, %d clean months and %d quarantine folders before %s",
        len(loads),
        len(partitions),
        len(quarantine),
        first_kept,
    )
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
