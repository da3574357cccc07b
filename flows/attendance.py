"""Attendance exports through the layers: drop folder → landing → clean + quarantine → audit.

The clean stage also takes the SS 12000 attendance loads (`flows.ss12000`): per month, the
lessons of every source are combined, and where more than one source has a school unit on a
day, `attendance_precedence` decides (the audit counts each load's `rows_superseded`).

`land_new_exports` lands every new file (by sha256). `clean_pending_loads` cleans every landed
load that has not been cleaned yet (derived from landing and the audit, not from local state,
so a crashed or gate-failed run is simply picked up by the next one). It builds and gates one
period (month) at a time, staging each clean partition on disk, and only when no critical
expectation failed swaps the staged partitions in and writes quarantine; the audit records
either outcome.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from connectors.attendance_export.layouts import Layout, LayoutError, load_layouts
from connectors.attendance_export.resources import SOURCE, read_new_exports
from connectors.drop_files import Landed
from flows import gate, ss12000
from flows.clean_attendance import LoadResult, parse_date, periods_of, pupil_days, split_load
from flows.reference import Reference
from flows.storage import (
    DATA_FILE,
    CleanOutcome,
    Manifest,
    append_audit,
    land_export,
    landed_loads,
    read_audit,
    write_parquet_atomic,
)
from lagesbild.settings import Settings

DATASET = "attendance"  # the clean dataset all export layouts feed
# Days each source delivered, before precedence: freshness per attendance system even when
# another source wins every school-day (mart_source_freshness). Not pupil-level.
SOURCE_DAYS = "attendance_source_days"
SUITE = "attendance_pupil_days.json"


def land_new_exports(settings: Settings, key: bytes, log: Callable[[str], None]) -> list[Manifest]:
    paths = settings.paths
    layouts = load_layouts(settings.attendance_layouts)
    landed = Landed.of(m for m, _ in landed_loads(paths.landing, SOURCE))
    matched = {p for layout in layouts.values() for p in paths.drop.glob(layout.files)}
    for stray in sorted(set((paths.drop / "attendance").rglob("*")) - matched):
        if stray.is_file():  # e.g. 'Frånvaro.CSV' or an .xls: say so instead of ignoring it
            log(
                f"WARNING {stray.relative_to(paths.drop)} matches no attendance layout's "
                "`files` pattern and was not loaded"
            )
    manifests = []
    for batch in read_new_exports(paths.drop, layouts, landed, key):
        layout = batch.file.layout
        dates = batch.rows.select(
            parse_date(pl.col(layout.source_column("date")).str.strip_chars(), layout.date_formats)
        ).to_series()
        periods = periods_of(dates) or ["unknown"]
        personal_id = {layout.source_column("personal_id"): "pupil_key"}
        manifest = land_export(paths.landing, paths.drop, SOURCE, batch, periods, personal_id)
        manifests.append(manifest)
        log(f"landed {manifest.file}: {manifest.rows:,} rows, periods {', '.join(periods)}")
    return manifests


def _split(manifest: Manifest, folder: Path, layouts: dict[str, Layout], schools: set[str], api):
    if manifest.source == ss12000.SOURCE:
        lookups, owners = api
        return ss12000.split_load(
            ss12000.read_load(folder), lookups, schools, manifest.load_id, owners
        )
    layout = layouts.get(manifest.dataset)
    if layout is None:
        raise LayoutError(
            f"landed load {manifest.load_id} uses layout '{manifest.dataset}', which is no longer "
            "in the layout file; restore it (landed data is never rewritten)"
        )
    return split_load(pl.read_parquet(folder / DATA_FILE), layout, schools, manifest.load_id)


def _month(lessons: pl.DataFrame, period: str) -> pl.DataFrame:
    first = datetime.strptime(period, "%Y-%m").date()
    return lessons.filter(pl.col("date").dt.month_start() == first)


def apply_precedence(lessons: pl.DataFrame, precedence: list[str]) -> tuple[pl.DataFrame, dict]:
    """Per school unit x day keep only the strongest source that has it.

    Returns the served lessons and, per load, how many of its rows were superseded.
    Sources missing from `precedence` rank after every listed one.
    """
    sources_per_school_day = lessons.group_by("school_unit_code", "date").agg(
        pl.col("source").n_unique()
    )
    if lessons.is_empty() or sources_per_school_day.get_column("source").max() == 1:
        return lessons, {}  # no school day has two sources: nothing to decide (nor to copy)
    rank = pl.col("source").replace_strict(
        {s: i for i, s in enumerate(precedence)}, default=len(precedence), return_dtype=pl.Int32
    )
    ranked = lessons.with_columns(_rank=rank)
    best = pl.col("_rank").min().over("school_unit_code", "date")
    served = ranked.filter(pl.col("_rank") == best)
    lost = ranked.filter(pl.col("_rank") != best).group_by("load_id").len()
    return served.drop("_rank"), dict(lost.iter_rows())


def _previous_rows_per_day(clean_root: Path, period: str) -> float | None:
    earlier = sorted(p for p in clean_root.glob("period=*") if p.name < f"period={period}")
    if not earlier:
        return None
    dates = pl.read_parquet(earlier[-1] / "*.parquet", columns=["date"]).get_column("date")
    return dates.len() / max(dates.n_unique(), 1)


def clean_pending_loads(
    settings: Settings,
    reference: Reference,
    run_id: str,
    log: Callable[[str], None],
    rebuild_periods: frozenset[str] = frozenset(),
) -> CleanOutcome:
    """Clean new loads; with `rebuild_periods` (a backfill) also rebuild those months and
    account again every load that touches them."""
    paths = settings.paths
    outcome = CleanOutcome()
    audit = read_audit(paths.audit)
    cleaned = set(audit.filter(pl.col("status") == "cleaned").get_column("load_id").to_list())
    api_loads = ss12000.attendance_loads(paths.landing)
    loads = sorted(
        landed_loads(paths.landing, SOURCE) + api_loads, key=lambda item: item[0].load_id
    )
    pending = [
        (m, f) for m, f in loads if m.load_id not in cleaned or rebuild_periods & set(m.periods)
    ]
    if not pending:
        log("attendance: no new loads to clean")
        return outcome
    layouts = load_layouts(settings.attendance_layouts)
    schools = reference.school_codes
    api = (ss12000.Lookups(paths.landing), ss12000.day_owners(api_loads)) if api_loads else None
    superseded: dict[str, int] = {}
    started = datetime.now(UTC)
    clock = time.perf_counter()

    # One month at a time, so memory holds one period's lessons, not a whole backfill.
    # Pending loads are accounted the first time they are read; landed loads that are
    # already clean are read again because they still count for their periods.
    results: dict[str, LoadResult] = {}
    touched: dict[str, list[str]] = {}

    def account(manifest: Manifest, result: LoadResult) -> None:
        if manifest.load_id in pending_ids and manifest.load_id not in results:
            touched[manifest.load_id] = periods_of(result.lessons["date"])
            results[manifest.load_id] = replace(result, lessons=result.lessons.clear())

    pending_ids = {m.load_id for m, _ in pending}
    new_periods = {p for m, _ in pending if m.load_id not in cleaned for p in m.periods}
    landed_periods = {p for m, _ in loads for p in m.periods}
    periods = sorted((new_periods | rebuild_periods) & landed_periods - {"unknown"})
    clean_root = paths.clean / DATASET
    for leftover in clean_root.parent.glob(f".{DATASET}-staging-*"):  # from a crashed run
        shutil.rmtree(leftover, ignore_errors=True)
    staging = clean_root.parent / f".{DATASET}-staging-{run_id}"
    gate_by_period: dict[str, str] = {}
    for period in periods:
        lessons = []
        for manifest, folder in loads:
            if period in manifest.periods:
                result = _split(manifest, folder, layouts, schools, api)
                account(manifest, result)
                lessons.append(_month(result.lessons, period))
        # rechunk=False: the month's lessons are not copied into one block
        combined = pl.concat(lessons, rechunk=False)
        source_days = combined.group_by("source", "date").agg(lessons=pl.len()).sort(pl.all())
        write_parquet_atomic(source_days, staging / SOURCE_DAYS / f"period={period}.parquet")
        served, lost = apply_precedence(combined, settings.attendance_precedence)
        del combined
        del lessons  # only `served` is needed from here: free each load's rows
        for load_id, count in lost.items():
            superseded[load_id] = superseded.get(load_id, 0) + count
        if lost:
            log(f"precedence period={period}: {sum(lost.values()):,} rows superseded")
        days = pupil_days(served)
        parameters = gate.attendance_parameters(
            days,
            schools,
            reference.school_days,
            _previous_rows_per_day(clean_root, period),
            settings.volume_tolerance,
        )
        result = gate.validate_frame(
            gate.attendance_frame(days),
            settings.expectations_dir / SUITE,
            parameters,
            partition=f"period={period}",
            report_dir=paths.validation / run_id,
        )
        outcome.gates.append(result)
        gate_by_period[period] = result.status
        write_parquet_atomic(days, staging / f"period={period}" / "part-0.parquet")
        log(f"gate attendance period={period}: {result.status} ({days.height:,} pupil days)")
    for manifest, folder in pending:  # loads with no usable date still need their accounting
        if manifest.load_id not in results:
            account(manifest, _split(manifest, folder, layouts, schools, api))
        unseen = set(touched[manifest.load_id]) - set(periods)
        if unseen:  # only if date formats changed since landing; never drop those rows
            raise LayoutError(
                f"{manifest.file} has rows dated in {sorted(unseen)}, months not recorded when "
                "it was landed (did the layout's date_formats change?). Nothing was replaced."
            )
    outcome.gates.append(
        gate.validate_loads(
            settings.expectations_dir / "attendance_loads.json",
            pending,
            results,
            settings.max_quarantine_share,
            paths.validation / run_id,
        )
    )

    if not outcome.gate_failed:
        for period in periods:  # each file swap is atomic; a month is never missing
            target = clean_root / f"period={period}" / "part-0.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / f"period={period}" / "part-0.parquet", target)
            days_target = paths.clean / SOURCE_DAYS / f"period={period}.parquet"
            days_target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / SOURCE_DAYS / f"period={period}.parquet", days_target)
        outcome.partitions_replaced = [f"{DATASET}/period={p}" for p in periods]
    shutil.rmtree(staging, ignore_errors=True)

    finished = datetime.now(UTC)
    for manifest, _ in pending:
        result = results[manifest.load_id]
        statuses = [gate_by_period[p] for p in touched[manifest.load_id]] or ["passed"]
        if result.quarantined > settings.max_quarantine_share * max(result.received, 1):
            statuses.append("failed")  # this load is what the loads gate failed on
        worst = next(s for s in ("failed", "passed_with_warnings", "passed") if s in statuses)
        quarantine_file = (
            paths.quarantine
            / DATASET
            / f"period={manifest.period}"
            / f"load_id={manifest.load_id}"
            / "quarantine.parquet"
        )
        if not outcome.gate_failed and result.quarantined:
            write_parquet_atomic(result.quarantine, quarantine_file)
        elif not outcome.gate_failed:  # a rebuild may release rows quarantined before
            quarantine_file.unlink(missing_ok=True)
        for reason, count in result.quarantine.group_by("reason").len().iter_rows():
            outcome.quarantine_reasons[reason] = outcome.quarantine_reasons.get(reason, 0) + count
        outcome.loads.append(
            {
                "run_id": run_id,
                "source": manifest.source,
                "dataset": manifest.dataset,
                "load_id": manifest.load_id,
                "file": manifest.file,
                "periods": ",".join(touched[manifest.load_id]),
                "rows_received": result.received,
                "rows_clean": result.clean,
                "rows_quarantined": result.quarantined,
                "rows_duplicate": result.duplicates,
                "rows_superseded": superseded.get(manifest.load_id, 0),
                "status": "gate_failed" if outcome.gate_failed else "cleaned",
                "gate": worst,
                "started_at": started,
                "finished_at": finished,
                "seconds": round(time.perf_counter() - clock, 3),
            }
        )
    append_audit(paths.audit, outcome.loads)
    return outcome
