"""The attendance dataset's rules for the clean layer (`flows.layers.clean`).

Loads: every landed attendance export (`attendance_export`, one layout each) and every landed
SS 12000 `aggregatedAttendance` load. Partitions: one month each,
`clean/attendance/period=YYYY-MM/part-0.parquet`, one row per pupil × school unit × day.
Where more than one source has a school unit on a day, `attendance_precedence` decides.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from connectors.attendance_export.layouts import LayoutError, load_layouts
from connectors.attendance_export.resources import SOURCE
from flows.attendance import ss12000
from flows.attendance.rules import day_totals, pupil_days, split_load
from flows.layers.clean import Combined, Dataset, LoadResult, Partition
from flows.layers.landing import Load, landed_loads
from flows.layers.reference import Reference
from flows.layers.storage import read_parquet
from lagesbild.settings import Settings


class Attendance(Dataset):
    name = folder = "attendance"
    suite = "attendance_pupil_days.json"
    loads_suite = "attendance_loads.json"
    precedence_key = ("school_unit_code", "date")
    row_weight = "lessons"  # a clean row is a pupil-day of one load: it counts its lessons

    def __init__(self, settings: Settings, reference: Reference, run_date: date):
        self.landing = landing = settings.paths.landing
        self.reference = reference
        self.run_date = run_date  # lessons dated after it are quarantined
        self.clean_root = settings.paths.clean / self.folder
        self.volume_tolerance = settings.volume_tolerance
        self.precedence = settings.attendance_precedence
        self.layouts = load_layouts(settings.attendance_layouts)
        self.api_loads = ss12000.attendance_loads(landing)
        self.exports = landed_loads(landing, SOURCE)
        self._api: tuple[ss12000.Lookups, dict] | None = None

    def loads(self) -> list[Load]:
        return sorted(self.exports + self.api_loads, key=lambda load: load.load_id)

    def split(self, load: Load) -> LoadResult:
        """One load split by its rules, its lessons summed to pupil-days at once: a period
        holds its loads' pupil-days, not their lessons (~5× fewer rows)."""
        result = self._split(load)
        result.rows = day_totals(result.rows)
        return result

    def _split(self, load: Load) -> LoadResult:
        manifest = load.manifest
        if manifest.source == ss12000.SOURCE:
            if self._api is None:  # persons and organisations are read once per run
                self._api = ss12000.Lookups(self.landing), ss12000.day_owners(self.api_loads)
            lookups, owners = self._api
            return ss12000.split_load(
                load.read(),
                lookups,
                self.reference.school_codes,
                load.load_id,
                owners,
                self.reference.days_off,
                self.reference.school_validity,
            )
        layout = self.layouts.get(manifest.dataset)
        if layout is None:
            raise LayoutError(
                f"landed load {load.load_id} uses layout '{manifest.dataset}', which is no "
                "longer in the layout file; restore it (landed data is never rewritten)"
            )
        schools = self.reference.school_codes
        # lazily: a large export is read and typed in row batches (rules.BATCH_ROWS)
        return split_load(
            load.scan(),
            layout,
            schools,
            load.load_id,
            self.run_date,
            self.reference.days_off,
            self.reference.school_validity,
        )

    def in_period(self, rows: pl.DataFrame, period: str) -> pl.DataFrame:
        first = datetime.strptime(period, "%Y-%m").date()
        return rows.filter(pl.col("date").dt.month_start() == first)

    def before_precedence(self, period: str, rows: pl.DataFrame) -> list[Partition]:
        """Lessons per source and day before precedence: freshness per attendance system even
        when another source wins every school day (mart_source_freshness). No persons."""
        days = (
            rows.group_by("source", "date")
            .agg(pl.col("lessons").sum().cast(pl.UInt32))
            .sort(pl.all())
        )
        return [Partition(f"source_days/period={period}.parquet", days, {}, gated=False)]

    def combine(self, period: str, rows: pl.DataFrame) -> Combined:
        days = pupil_days(rows)
        partition = Partition(
            f"period={period}/part-0.parquet",
            days,
            self.parameters(days, period),
            checked=checked_frame(days),
        )
        return Combined([partition])

    def parameters(self, days: pl.DataFrame, period: str) -> dict[str, Any]:
        """The suite's parameters: known schools and school days, and the expected volume
        from the month before (rows per school day, within `volume_tolerance`)."""
        previous = _previous_rows_per_day(self.clean_root, period)
        expected = None if previous is None else previous * days.get_column("date").n_unique()
        tolerance = self.volume_tolerance
        return {
            "known_school_unit_codes": sorted(self.reference.school_codes),
            "school_days": sorted(d.isoformat() for d in self.reference.school_days),
            "expected_rows_min": 0 if expected is None else int(expected * (1 - tolerance)),
            "expected_rows_max": None if expected is None else int(expected * (1 + tolerance)) + 1,
        }


def _previous_rows_per_day(clean_root: Path, period: str) -> float | None:
    earlier = sorted(p for p in clean_root.glob("period=*") if p.name < f"period={period}")
    if not earlier:
        return None
    files = sorted(earlier[-1].glob("*.parquet"))
    dates = pl.concat([read_parquet(f, columns=["date"]) for f in files]).get_column("date")
    return dates.len() / max(dates.n_unique(), 1)


def checked_frame(days: pl.DataFrame) -> pl.DataFrame:
    """The clean frame plus the derived columns the suite checks."""
    return days.with_columns(
        minutes_unaccounted=pl.col("offered_minutes")
        - pl.col("attended_minutes")
        - pl.col("valid_absence_minutes")
        - pl.col("invalid_absence_minutes")
        - pl.col("other_absence_minutes"),
        date_iso=pl.col("date").dt.strftime("%Y-%m-%d"),
    )
