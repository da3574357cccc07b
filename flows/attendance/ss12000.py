"""School attendance over SS 12000: land each resource's delta, map it onto the clean grain.

Landing (`land_delta`), one run:

1. `/organisations` (every level: an activity may belong to a school above its units),
   `/activities` (activity → organisation, for platforms without `expand`) and `/persons`
   (pupils, `civicNo` pseudonymised in the connector, else `person.id`; every platform id
   that leads to a pupil kept only as its keyed hash) modified after their
   watermark less `watermark_overlap` (the filter is exclusive; rows already landed are
   skipped);
2. `/absences` likewise and `/deletedEntities` (Absence) after the last deletions load: a late
   report or a removed absence names a day whose minutes changed;
3. `/aggregatedAttendance` of the `school_types` for one day at a time (a one-day window is the
   day grain): the new school days since the last landed day, the last `refetch_school_days`
   school days again (teachers report late), and the earlier days that step 2 named; only the
   days whose rows differ from what is landed are landed. A backfill asks for every school day
   of its window instead.

Watermarks are derived from landing (the largest `meta.modified` landed per resource; the
request time of the last deletions load), never from local state, so deleting a bad load
makes the next run fetch it again. Each day landed is recorded in the load's manifest
(`request.days`, with the minutes not yet reported per day): the latest load that asked for a
day is the truth for that whole day, so a correction replaces the day's rows and a pupil-day
the server no longer has disappears.

Mapping (`split_load`): one row per pupil x activity x day → the lesson contract of the
exports (`flows.attendance.rules`): student → `pupil_key` (landed persons); the activity's
organisation (a school unit or a school) and the pupil's enrolment on that day at a unit under
it → `school_unit_code`, school form and grade (FKLASS → F, GR/GRS by year); attended =
attendanceSum + otherAttendanceSum (another school activity is presence); optional sums read
by their meaning in the spec (absent = 0; absent offeredSum = reportedSum, else what is
accounted for); other absence = what is offered but neither attended nor valid/invalid absence
(not yet assessed). Rows of school forms not collected are left out; rows that cannot be mapped
are quarantined with a reason (docs/sources/ss12000.md).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from connectors.ss12000 import resources
from connectors.ss12000.client import SOURCE, SS12000Client
from flows.attendance.rules import MINUTES, periods_of, school_day_checks
from flows.layers.clean import LoadResult
from flows.layers.keys import fingerprint
from flows.layers.landing import Load, land_request, landed_loads
from flows.layers.manifest import Manifest
from lagesbild.settings import Settings

ORGANISATIONS, PERSONS, ABSENCES = "organisations", "persons", "absences"
ACTIVITIES = "activities"
DELETED, ATTENDANCE = "deleted_entities", "aggregated_attendance"
CLOCK_SKEW = timedelta(minutes=10)  # deletions are asked for a little before the last ask
GRADES = {0: "F", **{g: str(g) for g in range(1, 11)}}  # GRS has a year 10
IDENTITY = {  # what makes a landed row the same entity version (skipped when re-asked)
    ORGANISATIONS: "organisation_id",
    PERSONS: "person_id",
    ABSENCES: "absence_id",
    ACTIVITIES: "activity_id",
}

log = logging.getLogger(__name__)


def enabled(settings: Settings) -> bool:
    return bool(settings.ss12000.base_url)


# -- landing ---------------------------------------------------------------------------------


def _loads(landing: Path, dataset: str) -> list[Load]:
    return landed_loads(landing, SOURCE, dataset)


def _landed(landing: Path, dataset: str, columns: list[str] | None = None) -> pl.DataFrame:
    loads = _loads(landing, dataset)
    if not loads:
        return pl.DataFrame()
    # loads landed before and after a column was added or dropped read together
    return pl.concat([load.read(columns) for load in loads], how="diagonal_relaxed")


def _instant(column: str) -> pl.Expr:
    """RFC 3339 text → UTC instant; text that is not one → null (sorts as the oldest)."""
    return pl.col(column).str.to_datetime(time_zone="UTC", strict=False)


def watermark(landing: Path, dataset: str) -> str | None:
    """The largest `meta.modified` landed for a resource (compared as instants)."""
    landed = _landed(landing, dataset, ["meta_modified"])
    if landed.is_empty():
        return None
    latest = landed.with_columns(_at=_instant("meta_modified")).drop_nulls("_at")
    return latest.sort("_at")["meta_modified"][-1] if latest.height else None


def asked_after(landing: Path, dataset: str, overlap: timedelta) -> str | None:
    """`meta.modified.after` to ask with: the watermark less an overlap, because the filter
    is exclusive and a platform may commit an entity later under an instant already served."""
    mark = watermark(landing, dataset)
    if mark is None:
        return None
    instant = datetime.fromisoformat(mark.replace("Z", "+00:00"))
    return (instant - overlap).isoformat()


def _not_landed(landing: Path, dataset: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Rows the overlap asked for again that are landed already (same row) are dropped."""
    landed = _landed(landing, dataset)
    if landed.is_empty() or frame.is_empty():
        return frame
    return frame.join(
        landed.select(frame.columns).unique(), on=frame.columns, how="anti", nulls_equal=True
    )


# Source fields kept only as keyed pseudonyms, per resource (organisations and activities
# name no person).
PSEUDONYMISED = {
    PERSONS: {"civicNo": "pupil_key", "id": "person_id"},
    ABSENCES: {"id": "absence_id", "student.id": "student_id"},
    ATTENDANCE: {"student.id": "student_id"},
    DELETED: {"id": "id"},
}


def _only_raw_ids(landing: Path, dataset: str) -> bool:
    """Persons or absences are landed, but none of their loads has its ids keyed-hashed."""
    if dataset not in (PERSONS, ABSENCES):
        return False
    loads = _loads(landing, dataset)
    return bool(loads) and not any("id" in load.manifest.pseudonymised for load in loads)


def _land(
    landing: Path, dataset: str, period: str, frame: pl.DataFrame, request: dict, key: bytes
) -> Manifest:
    """Land one resource's rows; `period` is the month they belong to (the days' month for
    aggregatedAttendance, the run's month for the lookups)."""
    digest = hashlib.sha256(frame.write_ndjson().encode() + repr(request).encode()).hexdigest()
    pseudonymised = PSEUDONYMISED.get(dataset, {})
    return land_request(landing, SOURCE, dataset, frame, digest, request, [period], "month",
                        pseudonymised=pseudonymised,
                        key_fingerprint=fingerprint(key) if pseudonymised else None)  # fmt: skip


def _concat(frames: Iterable[pl.DataFrame], schema: dict) -> pl.DataFrame:
    return pl.concat([pl.DataFrame(schema=schema), *frames], how="vertical")


def landed_days(landing: Path) -> set[date]:
    return {
        date.fromisoformat(d)
        for load in _loads(landing, ATTENDANCE)
        for d in load.manifest.request["days"]
    }


def land_delta(
    settings: Settings,
    key: bytes,
    school_days: set[date],
    run_date: date,
    refetch: tuple[date, date] | None = None,
) -> list[Manifest]:
    """Land what changed since the last run (or every school day of a backfill's `refetch`
    window, first to last day)."""
    landing = settings.paths.landing
    month = f"{run_date:%Y-%m}"
    manifests: list[Manifest] = []
    ss = settings.ss12000
    with SS12000Client(ss, ss.resolve_client_secret()) as client:
        asked_at = datetime.now(UTC)
        fetchers = {
            ORGANISATIONS: (resources.organisations, resources.ORGANISATION_SCHEMA),
            ACTIVITIES: (resources.activities, resources.ACTIVITY_SCHEMA),
            PERSONS: (lambda c, a: resources.persons(c, key, a), resources.PERSON_SCHEMA),
            ABSENCES: (lambda c, a: resources.absences(c, key, a), resources.ABSENCE_SCHEMA),
        }
        overlap = timedelta(seconds=ss.watermark_overlap)
        # Absences and deletions are landed last: if a run fails before the days they name
        # are landed, their watermarks have not moved and the next run sees them again.
        land_last: list[tuple[str, pl.DataFrame, dict]] = []
        changed: set[date] = set()  # earlier days whose minutes a changed absence touched
        for dataset, (fetch, schema) in fetchers.items():
            after = asked_after(landing, dataset, overlap)
            if after is not None and _only_raw_ids(landing, dataset):
                # landed by a version that kept raw platform ids: ask for everything again,
                # so that the hashed ids of new rows find their persons and absences
                log.info("ss12000 %s: landed with raw platform ids, fetched again", dataset)
                after = None
            frame = _not_landed(landing, dataset, _concat(fetch(client, after), schema))
            if after is None:  # nothing of it landed yet: the API gave everything
                log.info("ss12000 %s: %s (first fetch: all of them)", dataset, f"{frame.height:,}")
            else:
                log.info(
                    "ss12000 %s: %s new or changed since %s (asked with an overlap; what had "
                    "landed already is left out)",
                    dataset,
                    f"{frame.height:,}",
                    after,
                )
            request = {"meta.modified.after": after, "described": f"modified after {after}"}
            if frame.height and dataset == ABSENCES:
                land_last.append((dataset, frame, request))
                changed |= _days(frame)
            elif frame.height:
                manifests.append(_land(landing, dataset, month, frame, request, key))

        # Deletions: ask from a little before the last deletions load; keep only new ids.
        previous = _loads(landing, DELETED)
        after = None
        if previous:
            asked_before = datetime.fromisoformat(previous[-1].manifest.request["asked_at"])
            after = (asked_before - CLOCK_SKEW).isoformat(timespec="seconds")
        tombstones = resources.deleted(
            client, key, after or "1970-01-01T00:00:00+00:00", ["Absence"]
        )
        known = _landed(landing, DELETED, ["id"])
        if not known.is_empty():
            tombstones = tombstones.filter(~pl.col("id").is_in(known["id"].implode()))
        if tombstones.height:
            request = {"after": after, "asked_at": asked_at.isoformat(), "described": "Absence"}
            land_last.append((DELETED, tombstones, request))
            columns = ["absence_id", "start_time", "end_time"]
            known_absences = [
                pl.DataFrame(schema=dict.fromkeys(columns, pl.String)),
                _landed(landing, ABSENCES, columns),
                *[f.select(columns) for d, f, _ in land_last if d == ABSENCES],
            ]
            gone = pl.concat([f for f in known_absences if f.width], how="vertical").filter(
                pl.col("absence_id").is_in(tombstones["id"].implode())
            )
            changed |= _days(gone)
        log.info(
            "ss12000 deletedEntities: %d absence deletions not landed before%s",
            tombstones.height,
            f" (asked for those since {after})" if after else " (first fetch: all of them)",
        )

        days = _days_to_fetch(settings, landing, school_days, run_date, changed, refetch)
        by_month: dict[str, list[date]] = {}
        for day in days:
            by_month.setdefault(f"{day:%Y-%m}", []).append(day)
        for period, period_days in sorted(by_month.items()):
            frame = _concat(
                (
                    f
                    for d in period_days
                    for f in resources.aggregated_attendance(client, key, d, ss.school_types)
                ),
                resources.AGGREGATED_SCHEMA,
            )
            # land only the days whose rows differ from what is landed (a day never landed
            # differs even when empty: it is recorded as asked for)
            have = landed_days(landing)
            current = _current(landing, period_days)
            period_days = [
                d
                for d in period_days
                if d not in have or not _same_rows(_on(frame, d), _on(current, d))
            ]
            if not period_days:
                log.info("ss12000 aggregatedAttendance %s: unchanged, nothing landed", period)
                continue
            frame = frame.filter(pl.col("start_date").is_in([d.isoformat() for d in period_days]))
            request = {
                "days": [d.isoformat() for d in period_days],
                "school_types": list(ss.school_types),
                "unreported_minutes": _unreported(frame),
                "described": f"{period_days[0]}..{period_days[-1]} ({len(period_days)} days)",
            }
            manifests.append(_land(landing, ATTENDANCE, period, frame, request, key))
            log.info(
                "ss12000 aggregatedAttendance %s: %s rows, %s",
                period,
                f"{frame.height:,}",
                request["described"],
            )
        for dataset, frame, request in land_last:
            manifests.append(_land(landing, dataset, month, frame, request, key))
        log.info("ss12000: %d API calls", client.requests)
    return manifests


def _current(landing: Path, days: list[date]) -> pl.DataFrame:
    """The landed rows that are the truth for these days now (their latest load's rows)."""
    loads = _loads(landing, ATTENDANCE)
    owners = day_owners(loads)
    frames = []
    for load in loads:
        mine = [d.isoformat() for d in days if owners.get(d) == load.load_id]
        if mine:
            frames.append(load.read().filter(pl.col("start_date").is_in(mine)))
    return _concat(frames, resources.AGGREGATED_SCHEMA)


def _on(frame: pl.DataFrame, day: date) -> pl.DataFrame:
    return frame.filter(pl.col("start_date") == day.isoformat())


def _unreported(frame: pl.DataFrame) -> dict[str, int]:
    """Per day, the offered minutes the teachers have not yet marked as reported
    (offeredSum - reportedSum; a platform that leaves reportedSum out says nothing)."""
    known = frame.drop_nulls(["reported_sum", "offered_sum"])
    per_day = known.group_by("start_date").agg(
        (pl.col("offered_sum") - pl.col("reported_sum")).clip(0).sum().alias("minutes")
    )
    return {d: int(m) for d, m in per_day.sort("start_date").iter_rows()}


def _same_rows(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    """Same rows in any order (a re-fetch that found nothing new is not landed again)."""
    return a.height == b.height and a.sort(pl.all()).equals(b.sort(pl.all()))


def _days(absences: pl.DataFrame) -> set[date]:
    """The school days an absence spans (start and end are local times: take their dates)."""
    days: set[date] = set()
    for start, end in absences.select("start_time", "end_time").iter_rows():
        first, last = date.fromisoformat(start[:10]), date.fromisoformat(end[:10])
        days |= {first + timedelta(days=i) for i in range((last - first).days + 1)}
    return days


def _days_to_fetch(
    settings: Settings,
    landing: Path,
    school_days: set[date],
    run_date: date,
    changed: set[date],
    refetch: tuple[date, date] | None,
) -> list[date]:
    if refetch is not None:
        return sorted(d for d in school_days if refetch[0] <= d <= refetch[1])
    have = landed_days(landing)
    if have:
        start = max(have) + timedelta(days=1)
    else:
        start = settings.ss12000.first_day or min(school_days, default=run_date)
    new = {d for d in school_days if start <= d < run_date}
    # teachers report late: the last school days already landed are asked for again
    window = settings.ss12000.refetch_school_days
    recent = (
        sorted(d for d in school_days if d in have and d < run_date)[-window:] if window else []
    )
    return sorted(new | (changed & have) | set(recent))


# -- mapping onto the clean grain ------------------------------------------------------------


def attendance_loads(landing: Path) -> list[Load]:
    return _loads(landing, ATTENDANCE)


def day_owners(loads: list[Load]) -> dict[date, str]:
    """For each day, the latest load that asked for it: that load's rows are the day."""
    owners: dict[date, str] = {}
    for load in sorted(loads, key=lambda load: load.load_id):
        for day in (load.manifest.request or {}).get("days", []):
            owners[date.fromisoformat(day)] = load.load_id
    return owners


class Lookups:
    """Landed persons, organisations and activities, the latest version of each (read once
    per run), and the school forms collected."""

    def __init__(self, landing: Path, school_types: list[str] | None = None):
        if school_types is None:
            school_types = Settings().ss12000.school_types
        self.school_types = sorted(school_types)
        persons = _latest(landing, PERSONS, resources.PERSON_SCHEMA, "person_id")
        self.pupils = persons.select("person_id", "pupil_key", "pupil_id_kind")
        self.enrolments = (
            persons.select("person_id", "enrolments")
            .explode("enrolments")
            .unnest("enrolments")
            .drop_nulls("organisation_id")
        )
        orgs = _latest(landing, ORGANISATIONS, resources.ORGANISATION_SCHEMA, "organisation_id")
        self.schools = orgs.select("organisation_id", "school_unit_code")
        self.units = self._ancestry(orgs)
        activities = _latest(landing, ACTIVITIES, resources.ACTIVITY_SCHEMA, "activity_id")
        self.activities = activities.select("activity_id", _owner=pl.col("organisation_id"))

    @staticmethod
    def _ancestry(orgs: pl.DataFrame) -> pl.DataFrame:
        """(school unit, an organisation it belongs to): itself, its school, and so on up.
        An activity may belong to a school unit or to the school (Skola) above it."""
        parent = dict(orgs.select("organisation_id", "parent_id").iter_rows())
        pairs = []
        for unit in orgs["organisation_id"].to_list():
            node, seen = unit, set()
            while node is not None and node not in seen and len(seen) < 10:
                pairs.append((unit, node))
                seen.add(node)
                node = parent.get(node)
        return pl.DataFrame(pairs, schema=["unit_id", "owner_id"], orient="row")


def _latest(landing: Path, dataset: str, schema: dict, key: str) -> pl.DataFrame:
    frame = _landed(landing, dataset)
    if frame.is_empty():
        frame = pl.DataFrame(schema=schema)
    for name, dtype in schema.items():  # landed before a column was added: it is null
        if name not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype).alias(name))
    # landed before a column was dropped (persons' security_marking): not read on
    frame = frame.select(list(schema)).with_columns(_at=_instant("meta_modified"))
    return frame.sort("_at", maintain_order=True).unique(key, keep="last").drop("_at")


def split_load(
    rows: pl.DataFrame,
    lookups: Lookups,
    known_schools: set[str],
    load_id: str,
    owners: dict[date, str],
    days_off: pl.DataFrame | None = None,
    validity: pl.DataFrame | None = None,
) -> LoadResult:
    """Landed aggregatedAttendance rows of one load → clean lesson rows, quarantine, counts.

    Days a later load asked for again are left out of `lessons` (that load is the truth for
    them) but still count as clean here: they were valid when this load was cleaned.
    """
    original = rows.columns
    sums = [
        "attendance_sum",
        "valid_absence_sum",
        "invalid_absence_sum",
        "other_attendance_sum",
        "offered_sum",
    ]
    frame = (
        rows.with_row_index("_row")
        .join(lookups.pupils, left_on="student_id", right_on="person_id", how="left")
        .join(lookups.activities, on="activity_id", how="left")
        .with_columns(
            # the activity's organisation: embedded, else from /activities
            _owner=pl.coalesce("organisation_id", "_owner"),
            date=pl.col("start_date").str.to_date(strict=False),
            _end=pl.col("end_date").str.to_date(strict=False),
        )
    )
    # School unit, school form and year: the pupil's enrolment that spans the day at a unit
    # that is, or belongs to, the activity's organisation (a school unit or its school).
    enrolment = (
        frame.select("_row", "student_id", "_owner", "start_date")
        .join(lookups.units, left_on="_owner", right_on="owner_id")
        .join(
            lookups.enrolments,
            left_on=["student_id", "unit_id"],
            right_on=["person_id", "organisation_id"],
        )
        .filter(
            (pl.col("start_date_right").fill_null("0000") <= pl.col("start_date"))
            & (pl.col("start_date") <= pl.col("end_date").fill_null("9999"))
        )
        .sort("_row", "unit_id")
        .group_by("_row", maintain_order=True)
        .agg(pl.col("unit_id", "school_year", "school_type").first())
    )
    frame = frame.join(enrolment, on="_row", how="left").join(
        lookups.schools,
        left_on=pl.coalesce("unit_id", "_owner"),
        right_on="organisation_id",
        how="left",
    )
    # Rows of a school form not collected (a platform that ignores the schoolType filter)
    # are not ours: left out before counting, like rows of another municipality.
    outside = pl.col("school_type").is_not_null() & ~pl.col("school_type").is_in(
        lookups.school_types
    )
    skipped = frame.filter(outside).height
    if skipped:
        log.info("ss12000 load %s: %d rows of other school forms left out", load_id, skipped)
    frame = frame.filter(~outside.fill_null(False))
    year = pl.col("school_year").replace_strict(GRADES, default=None, return_dtype=pl.String)
    # The spec requires only attendanceSum; an absent sum is a sum over no minutes (0). An
    # absent offeredSum is taken as what the teacher reported, else as what is accounted for.
    accounted = pl.sum_horizontal(
        "attendance_sum", "valid_absence_sum", "invalid_absence_sum", "other_attendance_sum"
    )
    optional = ["valid_absence_sum", "invalid_absence_sum", "other_attendance_sum"]
    frame = frame.with_columns(
        **{f"_{c}": pl.col(c).fill_null(0) for c in optional},
        _attendance_sum=pl.col("attendance_sum"),
        _offered_sum=pl.coalesce("offered_sum", "reported_sum", accounted),
    )
    sums = [f"_{c}" for c in sums]
    frame = frame.with_columns(
        grade=pl.when(pl.col("school_type") == "FKLASS").then(pl.lit("F")).otherwise(year),
        attended_minutes=pl.col("_attendance_sum") + pl.col("_other_attendance_sum"),
        offered_minutes=pl.col("_offered_sum"),
        valid_absence_minutes=pl.col("_valid_absence_sum"),
        invalid_absence_minutes=pl.col("_invalid_absence_sum"),
    )
    frame = frame.with_columns(
        other_absence_minutes=pl.col("offered_minutes")
        - pl.col("attended_minutes")
        - pl.col("valid_absence_minutes")
        - pl.col("invalid_absence_minutes")
    )
    checks = [
        ("missing_personal_id", pl.col("pupil_id_kind") == "missing"),
        ("invalid_personal_id", pl.col("pupil_id_kind") == "invalid"),
        ("unknown_student", pl.col("pupil_key").is_null()),
        ("invalid_date", pl.col("date").is_null()),
        ("not_one_day", pl.col("_end") != pl.col("date")),
        (
            "unknown_school_unit",
            ~pl.col("school_unit_code").fill_null("").is_in(sorted(known_schools)),
        ),
        *school_day_checks(days_off, validity),
        ("no_enrolment", pl.col("grade").is_null()),
        ("invalid_number", pl.any_horizontal([pl.col(c).is_null() for c in sums])),
        (
            "minutes_out_of_range",
            pl.any_horizontal([pl.col(c) < 0 for c in sums]) | (pl.col("_offered_sum") > 24 * 60),
        ),
        ("minutes_do_not_add_up", pl.col("other_absence_minutes") < 0),
    ]
    reason = pl.lit(None, dtype=pl.String)
    for name, failed in reversed(checks):
        reason = pl.when(failed.fill_null(False)).then(pl.lit(name)).otherwise(reason)
    typed = frame.with_columns(reason=reason).sort("_row")
    usable = typed.filter(pl.col("reason").is_null())
    key = ["student_id", "activity_id", "date"]
    first = usable.select(pl.struct(key).is_first_distinct()).to_series()
    exact = usable.select(pl.struct(original).is_first_distinct()).to_series()
    repeats = usable.filter(~first & ~exact)  # the same row twice: a duplicate
    conflicts = usable.filter(~first & exact).with_columns(reason=pl.lit("conflicting_duplicate"))
    owned = pl.col("date").is_in(sorted(d for d, owner in owners.items() if owner == load_id))
    distinct = usable.filter(first)
    lessons = distinct.filter(owned).select(
        "pupil_key",
        "school_unit_code",
        "date",
        lesson_start="activity_id",  # the lesson key of the exports; here the activity
        grade="grade",
        **{m: pl.col(m).cast(pl.Float64) for m in MINUTES},
        source=pl.lit(SOURCE),
        load_id=pl.lit(load_id),
    )
    quarantine = (
        pl.concat([typed.filter(pl.col("reason").is_not_null()), conflicts])
        .sort("_row")
        .select(*original, "reason", load_id=pl.lit(load_id))
    )
    periods = periods_of(lessons.get_column("date"))
    received = rows.height - skipped
    return LoadResult(lessons, quarantine, received, distinct.height, repeats.height, periods)
