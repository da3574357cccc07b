"""Deterministic generator of "Ekdala kommun" (code 1299), a fictional Swedish municipality.

It writes the source files the pipeline reads from the drop folder: reference tables (areas,
schools, school calendar) and one attendance export per attendance system per calendar month
(an IST month bigger than one Excel sheet comes in parts of whole days: `_del2`, `_del3`, …).
The same arguments always give byte-identical files. Work is done one school day at a time
(vectorised over pupils and lessons) and written one month at a time, so memory stays flat
however many pupils and years are asked for. The IST workbooks (xlsxwriter is pure Python and
takes most of the run time) are written by worker processes while the next month is simulated.
The school calendar always covers the whole generated school years; ``through`` only cuts the
attendance exports.

Municipality
    8 DeSO-style areas and 10 compulsory schools (F-9); schools 1-5 export from Skola24
    (CSV), schools 6-10 from IST (XLSX). ``pupils`` is the number enrolled each school year,
    in ten birth cohorts of ``pupils / 10``; a pupil keeps school and class letter from
    förskoleklass to grade 9. Ids: see `demo.people` (2 % samordningsnummer, 1 % temporary
    ids).

Timetable
    F-3 have 4 lessons a day, 4-6 have 5 and 7-9 have 6. Lesson lengths (40, 45 or 60 min)
    and start times are fixed per school x grade x weekday x slot.

Absence model (every number below is a constant in this module)
    * Each pupil has skewed (gamma-distributed) propensities for sickness, truancy, skipped
      lessons and late arrival. About 5 % of pupils belong to a "problematic absence" group
      with several times higher propensities and longer spells; most of them end a term
      above 10 % absence, many above 15 % and 20 %.
    * Whole days: a day-to-day Markov chain per pupil. A sick day (valid absence from every
      lesson) starts with the pupil's sickness propensity x weekday factor (Monday and Friday
      higher) x season factor (winter peak January-March, strongest in February) and
      continues the next school day with a fixed probability. A whole day of truancy
      (invalid absence, mostly grades 7-9 and the problematic group) works the same way.
      About 5 % of sick days are not yet reported by the guardian: "other" (Ej bedömd).
    * Going home sick: on about 0.5 % of present days (more in winter) the pupil leaves
      after a random lesson; the rest of the day is valid absence.
    * Single lessons on present days: skipping a lesson (invalid, whole lesson; far more
      common in grades 7-9), late arrival (invalid 2-15 whole minutes, mostly the
      first lesson), a valid appointment (whole lesson) and unclassified absence ("other",
      whole lesson or 2-15 minutes).
    * A lesson has at most one absence type, all minutes are whole numbers (exact binary
      floats) and never exceed the lesson, and attended + valid + invalid + other = offered.

    Outcome with the defaults (measured on the ground truth): about 7 % of offered time is
    absence (F-6 about 6.5 %, 7-9 about 8 %; invalid about 1 %), February is the peak month
    and Monday/Friday the peak weekdays; per term about 20 % of pupils are at or above 10 %
    absence, 10 % at or above 15 % and 5 % at or above 20 %.

Dirty rows (DIRTY_SHARE = 0.3 % of the valid rows of each file, at least one of each kind)
    Each is an extra row inserted at a random position: a modified copy of a random valid row
    of the same file (never of a temporary-id pupil). The valid original stays. Kinds:

    * ``missing_personal_id``: the personal-id cell is empty;
    * ``invalid_personal_id``: a 10/12-digit personnummer with a wrong check digit;
    * ``invalid_date``: an impossible date (the day after the month's last day, or month 13);
    * ``unknown_school_unit``: an 8-digit school-unit code not in schools.csv;
    * ``minutes_out_of_range``: negative absence minutes, or (Skola24 only) absence longer
      than the lesson;
    * ``minutes_do_not_add_up`` (IST only): Närvarande + Giltig + Ogiltig + Övrig differs from
      Schemalagd tid, with every value between 0 and Schemalagd tid;
    * ``duplicate``: an exact copy of a valid row.

    Apart from ``duplicate`` no dirty row shares its (personal id, school unit, date, start
    time) with a valid row: the minutes_* kinds get a start time from 18:00 on, when no
    lesson is scheduled. After the first of each kind, kinds are drawn with equal probability.

Ground truth (only when ``truth_dir`` is given; for tests and benchmarks, no names or ids)
    ``lessons.parquet`` (every valid lesson row), ``pupils.parquet`` (pupil_id, id_kind) and
    ``dirty_rows.csv`` (file relative to out_dir, 1-based data row number, kind).
"""

from __future__ import annotations

import csv
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import xlsxwriter

from demo import people
from demo.housing import generate_housing
from demo.housing import period as housing_period
from demo.school_calendar import CalendarDay, school_year_calendar
from demo.ss12000_store import StoreWriter

MUNICIPALITY_CODE = "1299"
MUNICIPALITY_NAME = "Ekdala kommun"

# (DeSO-style code, name): 1299 + A/B/C + 3-digit serial + reserve digit.
AREAS = (
    ("1299A0010", "Söderslätt"),
    ("1299B0010", "Åsen"),
    ("1299B0020", "Lillö"),
    ("1299C0010", "Centrum"),
    ("1299C0020", "Västra hamnen"),
    ("1299C0030", "Ekbacken"),
    ("1299C0040", "Björkhagen"),
    ("1299C0050", "Norrby"),
)

SKOLA24 = "skola24"
IST = "ist"


@dataclass(frozen=True)
class School:
    code: str
    name: str
    area_code: str
    system: str
    weight: float  # relative number of pupils


SCHOOLS = (
    School("34817265", "Ekdalaskolan", "1299C0010", SKOLA24, 1.4),
    School("58203194", "Norrbyskolan", "1299C0050", SKOLA24, 1.0),
    School("71946302", "Hamnskolan", "1299C0020", SKOLA24, 0.8),
    School("26058417", "Åsenskolan", "1299B0010", SKOLA24, 1.2),
    School("49371528", "Centralskolan", "1299C0010", SKOLA24, 0.6),
    School("83625041", "Ekbackeskolan", "1299C0030", IST, 1.1),
    School("15790386", "Söderslättsskolan", "1299A0010", IST, 0.7),
    School("62483917", "Lillöskolan", "1299B0020", IST, 0.5),
    School("90124658", "Björkhagsskolan", "1299C0040", IST, 1.3),
    School("37562849", "Kvarnbyskolan", "1299C0050", IST, 0.9),
)
UNKNOWN_SCHOOL_CODES = ("40817263", "66120945", "21904738")

GRADE_LABELS = ("F", "1", "2", "3", "4", "5", "6", "7", "8", "9")
LESSONS_PER_DAY = np.array([4, 4, 4, 4, 5, 5, 5, 6, 6, 6])
MAX_LESSONS = 6
LESSON_LENGTHS = np.array([40, 45, 60])
LESSON_LENGTH_WEIGHTS = np.array([0.3, 0.5, 0.2])
FIRST_LESSON_STARTS = np.array([8 * 60, 8 * 60 + 10, 8 * 60 + 15, 8 * 60 + 20])
PASSING_TIME = 10  # minutes between lessons
LUNCH_BREAK = 40
OFF_HOURS_START = 18 * 60  # no lesson starts this late; used for minutes_* dirty rows
CLASS_SIZE = 25

# --- absence model -------------------------------------------------------------------------
PROBLEM_SHARE = 0.05
SICK_START = 0.025  # mean daily probability that a sickness spell starts
SICK_SHAPE = 1.5  # gamma shape of the pupils' sickness propensity (lower = more skewed)
GRADE_SICKNESS = np.array([1.0, 1.0, 0.95, 0.9, 0.9, 0.9, 0.95, 1.1, 1.2, 1.3])
PROBLEM_FACTOR = (2.5, 6.0)  # the problematic group's propensities are this many times higher
SICK_STAY = 0.45  # probability that a sick day is followed by another
PROBLEM_SICK_STAY = 0.75
TRUANT_START = 0.0015  # whole day of invalid absence
TRUANT_STAY = 0.2
PROBLEM_TRUANT_START = 0.02
PROBLEM_TRUANT_STAY = 0.6
GRADE_TRUANCY = np.array([0.2, 0.2, 0.2, 0.2, 0.5, 0.5, 0.5, 1.0, 1.0, 1.0])
UNREPORTED_SICK_SHARE = 0.05  # sick days registered as "other" (Ej bedömd)
WENT_HOME = 0.005  # present days on which the pupil goes home sick after some lesson
SKOLK = 0.006  # mean probability of skipping a lesson in grade 7
GRADE_SKOLK = np.array([0.1, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 1.0, 1.3, 1.6])
LATE = 0.03  # mean probability of arriving late to the first lesson of the day
LATE_LATER_LESSONS = 0.25  # relative probability for the other lessons
APPOINTMENT = 0.002  # valid absence from a single lesson (dentist, meeting)
OTHER = 0.002  # single-lesson absence not yet classified
WHOLE_LESSON_OTHER = 0.7  # share of "other" single-lesson absence that is the whole lesson
# Whole minutes, as SS 12000 reports them (integer sums), so exports and API agree exactly.
PARTIAL_MINUTES = np.array([2.0, 5.0, 7.0, 10.0, 12.0, 15.0])
WEEKDAY_FACTOR = np.array([1.25, 0.95, 0.9, 0.95, 1.2])  # Monday .. Friday
SEASON_FACTOR = {1: 1.35, 2: 1.7, 3: 1.3, 4: 0.95, 5: 0.85, 6: 0.75}
SEASON_FACTOR |= {8: 0.6, 9: 0.8, 10: 1.0, 11: 1.1, 12: 1.2}

PRESENT, SICK, TRUANT = 0, 1, 2
NO_EVENT, SKIP, LATE_ARRIVAL, APPOINTMENT_EVENT, OTHER_EVENT = range(5)

# --- dirty rows ----------------------------------------------------------------------------
DIRTY_SHARE = 0.003
MISSING_ID = "missing_personal_id"
INVALID_ID = "invalid_personal_id"
INVALID_DATE = "invalid_date"
UNKNOWN_SCHOOL = "unknown_school_unit"
OUT_OF_RANGE = "minutes_out_of_range"
NOT_ADDING_UP = "minutes_do_not_add_up"
DUPLICATE = "duplicate"
DIRTY_KINDS = {
    SKOLA24: (MISSING_ID, INVALID_ID, INVALID_DATE, UNKNOWN_SCHOOL, OUT_OF_RANGE, DUPLICATE),
    IST: (
        MISSING_ID,
        INVALID_ID,
        INVALID_DATE,
        UNKNOWN_SCHOOL,
        OUT_OF_RANGE,
        NOT_ADDING_UP,
        DUPLICATE,
    ),
}

# --- file layouts --------------------------------------------------------------------------
SKOLA24_HEADER = (
    "Personnummer",
    "Elev",
    "Skolenhetskod",
    "Skola",
    "Årskurs",
    "Klass",
    "Datum",
    "Starttid",
    "Lektionslängd (min)",
    "Frånvaro (min)",
    "Frånvarotyp",
)
IST_HEADER = (
    "Elev-ID",
    "Skolenhet",
    "Åk",
    "Datum",
    "Lektion",
    "Schemalagd tid",
    "Närvarande",
    "Giltig frånvaro",
    "Ogiltig frånvaro",
    "Övrig frånvaro",
)
IST_TEXT_COLUMNS = 5  # the first five are text cells, the rest numbers
XLSX_CREATED = datetime(2026, 1, 1)  # fixed so the workbook bytes never change
MAX_WORKBOOK_PROCESSES = 4
# Lessons per IST workbook part: under a sheet's 1,048,576 rows with room for the dirty rows.
IST_MAX_ROWS = 1_000_000
TIME_LABELS = np.array([f"{minute // 60:02d}:{minute % 60:02d}" for minute in range(24 * 60)])
TRUTH_SCHEMA = pa.schema(
    [
        ("pupil_id", pa.int64()),
        ("system", pa.string()),
        ("school_unit_code", pa.string()),
        ("grade", pa.string()),
        ("date", pa.date32()),
        ("lesson_start", pa.string()),
        ("offered_minutes", pa.float64()),
        ("attended_minutes", pa.float64()),
        ("valid_absence_minutes", pa.float64()),
        ("invalid_absence_minutes", pa.float64()),
        ("other_absence_minutes", pa.float64()),
    ]
)

# Independent random streams, so that changing one part does not reshuffle the others.
STREAM_PEOPLE, STREAM_PROPENSITY, STREAM_TIMETABLE, STREAM_DAY, STREAM_DIRTY = range(5)


@dataclass
class GenerationSummary:
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    lesson_rows: int = 0  # valid rows in the attendance exports
    dirty_rows: dict[str, int] = field(default_factory=dict)
    pupils_enrolled: int = 0  # distinct pupils with at least one lesson row
    school_days: int = 0  # school days with attendance rows


@dataclass
class Population:
    """Every pupil enrolled in any generated school year; index i is pupil_id i + 1."""

    birth_year: np.ndarray
    school: np.ndarray  # index into SCHOOLS
    class_letter: np.ndarray
    id_kind: np.ndarray
    id10: np.ndarray
    id12: np.ndarray
    first_name: np.ndarray
    last_name: np.ndarray
    sick_start: np.ndarray
    sick_stay: np.ndarray
    truant_start: np.ndarray
    truant_stay: np.ndarray
    skolk: np.ndarray
    late: np.ndarray

    @property
    def size(self) -> int:
        return len(self.birth_year)

    @cached_property
    def frame(self) -> pl.DataFrame:
        """The columns the exports look up per pupil; row i is population index i."""
        return pl.DataFrame(
            {
                "id10": self.id10,
                "id12": self.id12,
                "name": np.char.add(np.char.add(self.first_name, " "), self.last_name),
                "class_letter": self.class_letter,
                "temporary": self.id_kind == people.TEMPORARY,
            }
        )


@dataclass
class Roster:
    """The pupils of one school year, in export order (school, grade, class, name)."""

    pupils: np.ndarray  # population indices
    school: np.ndarray
    grade: np.ndarray


@dataclass
class DayLessons:
    """One row per pupil x lesson of one school day."""

    day: date
    pupil: np.ndarray  # population index
    school: np.ndarray
    grade: np.ndarray
    start: np.ndarray  # minutes after midnight
    length: np.ndarray
    valid: np.ndarray
    invalid: np.ndarray
    other: np.ndarray


def generate(
    out_dir: Path,
    *,
    pupils: int = 1500,
    years: int = 1,
    seed: int = 2026,
    last_school_year: int = 2025,
    through: date | None = None,
    truth_dir: Path | None = None,
    ss12000_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> GenerationSummary:
    """Write the fictional municipality's source files to out_dir (the drop folder).

    The ``years`` school years end with ``last_school_year``/``last_school_year + 1``;
    ``through`` stops the attendance exports after that date (inclusive). The IST workbooks
    are written by worker processes (started with "spawn"), so a script that calls this
    needs the usual ``if __name__ == "__main__":`` guard.
    """
    if pupils < 10 or years < 1:
        raise ValueError("need at least 10 pupils and 1 school year")
    out_dir = Path(out_dir)
    report = progress or (lambda message: None)
    first_year = last_school_year - years + 1
    summary = GenerationSummary(out_dir=out_dir)
    summary.dirty_rows = dict.fromkeys(DIRTY_KINDS[IST], 0)

    calendars = {year: school_year_calendar(year) for year in range(first_year, first_year + years)}
    population = _build_population(seed, pupils, first_year, last_school_year)
    start_times, lengths = _timetable(seed)
    rosters = {year: _roster(population, year) for year in calendars}
    first_days = {_first_school_day(days) for days in calendars.values()}
    summary.files += _write_reference(out_dir, calendars, report)

    truth = _TruthWriter(truth_dir) if truth_dir is not None else None
    # The local SS 12000 server's data: the same valid lessons as the exports (no dirty rows).
    api = None
    if ss12000_dir is not None:
        api = StoreWriter(ss12000_dir, SCHOOLS, MUNICIPALITY_CODE, MUNICIPALITY_NAME)
    dirty_log: list[tuple[str, int, str]] = []
    seen_pupils = np.zeros(population.size, dtype=bool)
    day_state = np.zeros(population.size, dtype=np.int8)
    with _WorkbookWriter(report) as workbooks:
        for (year, month), days in _months(_school_days(calendars, through)):
            lessons = []
            for school_year, day in days:
                if day in first_days:
                    day_state[:] = PRESENT  # the summer break ends every spell
                rng = np.random.default_rng([seed, STREAM_DAY, day.toordinal()])
                roster = rosters[school_year]
                lessons.append(
                    _simulate_day(rng, day, roster, population, day_state, start_times, lengths)
                )
            month_frame = _month_frame(lessons)
            summary.school_days += len(days)
            summary.lesson_rows += month_frame.height
            seen_pupils[month_frame["pupil"].unique().to_numpy()] = True
            if truth is not None:
                truth.write(month_frame)
            if api is not None:
                api.write(month_frame)

            for system, part, frame in _export_parts(month_frame):
                if system == SKOLA24:
                    export = _skola24_frame(frame, population)
                    name = f"skola24_franvaro_{year}-{month:02d}.csv"
                else:
                    export = _ist_frame(frame, population)
                    suffix = f"_del{part + 1}" if part else ""
                    name = f"ist_narvaro_{year}-{month:02d}{suffix}.xlsx"
                path = out_dir / "attendance" / system / name
                stream = [seed, STREAM_DIRTY, year, month, int(system == IST)]
                rng = np.random.default_rng(stream + [part] if part else stream)
                export, row_kinds = _add_dirty_rows(rng, export, system, year, month)
                message = f"wrote {name} ({_thousands(export.height)} rows)"
                if system == SKOLA24:
                    _write_skola24_csv(path, export)
                    report(message)
                else:
                    workbooks.submit(path, export, message)
                relative = path.relative_to(out_dir).as_posix()
                for row_number, kind in enumerate(row_kinds, start=1):
                    if kind:
                        dirty_log.append((relative, row_number, kind))
                        summary.dirty_rows[kind] += 1
                summary.files.append(path)

    # Housing companies' work orders (demo/housing.py): properties.csv and both exports.
    start, end = housing_period(last_school_year, through)
    housing = generate_housing(out_dir, seed=seed, start=start, end=end, truth_dir=truth_dir)
    summary.files += housing.files
    report(f"wrote {len(housing.files)} housing files ({housing.orders:,} work orders)")
    summary.pupils_enrolled = int(seen_pupils.sum())
    if api is not None:
        summary.files += api.close(population.id12)
    if truth is not None:
        summary.files += truth.close(population, dirty_log)
        report(f"wrote the ground truth to {truth_dir}")
    return summary


# --- population and timetable --------------------------------------------------------------


def _build_population(seed: int, pupils: int, first_year: int, last_year: int) -> Population:
    rng = np.random.default_rng([seed, STREAM_PEOPLE])
    # Cohort sizes repeat every ten birth years, so any ten consecutive cohorts (one school
    # year) add up to exactly `pupils`.
    birth_years: list[int] = []
    birth_dates: list[date] = []
    for birth_year in range(first_year - 15, last_year - 6 + 1):
        size = pupils // 10 + (1 if birth_year % 10 < pupils % 10 else 0)
        birth_years += [birth_year] * size
        birth_dates += people.random_birth_dates(rng, birth_year, size)
    identities = people.make_identities(rng, birth_dates)
    n = len(birth_years)
    weights = np.array([school.weight for school in SCHOOLS])
    school = rng.choice(len(SCHOOLS), size=n, p=weights / weights.sum())
    birth_year = np.array(birth_years)

    # Class letters: round robin within school x cohort, about CLASS_SIZE pupils a class.
    class_letter = np.empty(n, dtype="<U1")
    letters = np.array(list("ABCDEFGHIJ"))
    for school_index in range(len(SCHOOLS)):
        for cohort in np.unique(birth_year):
            members = np.flatnonzero((school == school_index) & (birth_year == cohort))
            classes = max(1, -(-len(members) // CLASS_SIZE))
            class_letter[members] = letters[np.arange(len(members)) % min(classes, len(letters))]

    # Skewed propensities; the problematic group has higher ones and longer spells.
    rng = np.random.default_rng([seed, STREAM_PROPENSITY])
    problem = rng.random(n) < PROBLEM_SHARE
    problem_factor = np.where(problem, rng.uniform(*PROBLEM_FACTOR, n), 1.0)
    sick_start = SICK_START * rng.gamma(SICK_SHAPE, 1 / SICK_SHAPE, n) * problem_factor
    truant_start = np.where(
        problem,
        PROBLEM_TRUANT_START * rng.gamma(2.0, 0.5, n),
        TRUANT_START * rng.gamma(0.5, 2.0, n),
    )
    skolk = SKOLK * rng.gamma(0.6, 1 / 0.6, n) * np.where(problem, 5.0, 1.0)
    late = LATE * rng.gamma(1.0, 1.0, n) * np.where(problem, 2.0, 1.0)
    return Population(
        birth_year=birth_year,
        school=school,
        class_letter=class_letter,
        id_kind=np.array([identity.id_kind for identity in identities]),
        id10=np.array([identity.id10 for identity in identities]),
        id12=np.array([identity.id12 for identity in identities]),
        first_name=np.array([identity.first_name for identity in identities]),
        last_name=np.array([identity.last_name for identity in identities]),
        sick_start=np.minimum(sick_start, 0.5),
        sick_stay=np.where(problem, PROBLEM_SICK_STAY, SICK_STAY),
        truant_start=np.minimum(truant_start, 0.5),
        truant_stay=np.where(problem, PROBLEM_TRUANT_STAY, TRUANT_STAY),
        skolk=np.minimum(skolk, 0.2),
        late=np.minimum(late, 0.3),
    )


def _timetable(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Start minute and length per (school, grade, weekday, slot), with a lunch break."""
    rng = np.random.default_rng([seed, STREAM_TIMETABLE])
    shape = (len(SCHOOLS), len(GRADE_LABELS), 5, MAX_LESSONS)
    lengths = rng.choice(LESSON_LENGTHS, size=shape, p=LESSON_LENGTH_WEIGHTS)
    first_starts = rng.choice(FIRST_LESSON_STARTS, size=len(SCHOOLS))
    starts = np.zeros(shape, dtype=np.int64)
    for school in range(len(SCHOOLS)):
        for grade in range(len(GRADE_LABELS)):
            lunch_after = LESSONS_PER_DAY[grade] // 2 - 1
            for weekday in range(5):
                minute = first_starts[school]
                for slot in range(MAX_LESSONS):
                    starts[school, grade, weekday, slot] = minute
                    gap = LUNCH_BREAK if slot == lunch_after else PASSING_TIME
                    minute += lengths[school, grade, weekday, slot] + gap
    return starts, lengths


def _roster(population: Population, school_year: int) -> Roster:
    grade = school_year - population.birth_year - 6
    members = np.flatnonzero((grade >= 0) & (grade <= 9))
    order = np.lexsort(
        (
            members,
            population.first_name[members],
            population.last_name[members],
            population.class_letter[members],
            grade[members],
            population.school[members],
        )
    )
    members = members[order]
    return Roster(pupils=members, school=population.school[members], grade=grade[members])


# --- calendar iteration --------------------------------------------------------------------


def _school_days(
    calendars: dict[int, list[CalendarDay]], through: date | None
) -> Iterator[tuple[int, date]]:
    for school_year, days in sorted(calendars.items()):
        for day in days:
            if day.is_school_day and (through is None or day.date <= through):
                yield school_year, day.date


def _months(
    school_days: Iterator[tuple[int, date]],
) -> Iterator[tuple[tuple[int, int], list[tuple[int, date]]]]:
    """Group (school year, day) pairs by calendar month."""
    batch: list[tuple[int, date]] = []
    for school_year, day in school_days:
        if batch and (batch[0][1].year, batch[0][1].month) != (day.year, day.month):
            yield (batch[0][1].year, batch[0][1].month), batch
            batch = []
        batch.append((school_year, day))
    if batch:
        yield (batch[0][1].year, batch[0][1].month), batch


def _first_school_day(days: list[CalendarDay]) -> date:
    return next(day.date for day in days if day.is_school_day)


# --- absence simulation --------------------------------------------------------------------


def _simulate_day(
    rng: np.random.Generator,
    day: date,
    roster: Roster,
    population: Population,
    day_state: np.ndarray,
    start_times: np.ndarray,
    lengths: np.ndarray,
) -> DayLessons:
    pupils, grade, school = roster.pupils, roster.grade, roster.school
    n = len(pupils)
    weekday = day.weekday()
    week_factor = WEEKDAY_FACTOR[weekday]
    season = SEASON_FACTOR[day.month]

    # Whole days: continue yesterday's spell or start a new one.
    previous = day_state[pupils]
    draws = rng.random((4, n))
    sick = draws[0] < np.where(
        previous == SICK,
        population.sick_stay[pupils],
        population.sick_start[pupils] * GRADE_SICKNESS[grade] * season * week_factor,
    )
    truant_chance = np.where(
        previous == TRUANT,
        population.truant_stay[pupils],
        population.truant_start[pupils] * GRADE_TRUANCY[grade] * week_factor,
    )
    truant = ~sick & (draws[1] < truant_chance)
    day_state[pupils] = np.where(sick, SICK, np.where(truant, TRUANT, PRESENT))
    unreported = sick & (draws[2] < UNREPORTED_SICK_SHARE)
    went_home = ~sick & ~truant & (draws[3] < WENT_HOME * season)
    lessons_today = LESSONS_PER_DAY[grade]
    home_from = rng.integers(1, lessons_today)  # first lesson missed after going home

    # Single lessons: at most one event per lesson, drawn against cumulative limits.
    slot = np.arange(MAX_LESSONS)[None, :]
    lesson_draw = rng.random((n, MAX_LESSONS))
    partial = PARTIAL_MINUTES[rng.integers(0, len(PARTIAL_MINUTES), (n, MAX_LESSONS))]
    whole_lesson = rng.random((n, MAX_LESSONS)) < WHOLE_LESSON_OTHER
    skip_limit = (population.skolk[pupils] * GRADE_SKOLK[grade] * week_factor)[:, None]
    late_chance = np.where(slot == 0, 1.0, LATE_LATER_LESSONS) * population.late[pupils][:, None]
    late_limit = skip_limit + late_chance
    appointment_limit = late_limit + APPOINTMENT
    other_limit = appointment_limit + OTHER
    event = np.select(
        [
            lesson_draw < skip_limit,
            lesson_draw < late_limit,
            lesson_draw < appointment_limit,
            lesson_draw < other_limit,
        ],
        [SKIP, LATE_ARRIVAL, APPOINTMENT_EVENT, OTHER_EVENT],
        NO_EVENT,
    )
    length = lengths[school, grade, weekday].astype(np.float64)
    valid = np.where(event == APPOINTMENT_EVENT, length, 0.0)
    invalid = np.select([event == SKIP, event == LATE_ARRIVAL], [length, partial], 0.0)
    other = np.where(event == OTHER_EVENT, np.where(whole_lesson, length, partial), 0.0)

    # Whole days and going home override the single-lesson events.
    all_valid = (sick & ~unreported)[:, None] | (went_home[:, None] & (slot >= home_from[:, None]))
    all_invalid = np.broadcast_to(truant[:, None], length.shape)
    all_other = np.broadcast_to(unreported[:, None], length.shape)
    overridden = all_valid | all_invalid | all_other
    valid = np.where(all_valid, length, np.where(overridden, 0.0, valid))
    invalid = np.where(all_invalid, length, np.where(overridden, 0.0, invalid))
    other = np.where(all_other, length, np.where(overridden, 0.0, other))

    row, col = np.nonzero(slot < lessons_today[:, None])
    return DayLessons(
        day=day,
        pupil=pupils[row],
        school=school[row],
        grade=grade[row],
        start=start_times[school, grade, weekday][row, col],
        length=length[row, col],
        valid=valid[row, col],
        invalid=invalid[row, col],
        other=other[row, col],
    )


def _month_frame(lessons: list[DayLessons]) -> pl.DataFrame:
    """The valid lesson rows of a month in export order, named as in the truth file."""

    def stack(name: str) -> np.ndarray:
        return np.concatenate([getattr(day, name) for day in lessons])

    pupil, school, length = stack("pupil"), stack("school"), stack("length")
    valid, invalid, other = stack("valid"), stack("invalid"), stack("other")
    dates = [np.full(len(day.pupil), np.datetime64(day.day, "D")) for day in lessons]
    return pl.DataFrame(
        {
            "pupil": pupil,
            "pupil_id": pupil.astype(np.int64) + 1,
            "system": np.array([s.system for s in SCHOOLS])[school],
            "school_unit_code": np.array([s.code for s in SCHOOLS])[school],
            "school_name": np.array([s.name for s in SCHOOLS])[school],
            "grade": np.array(GRADE_LABELS)[stack("grade")],
            "date": np.concatenate(dates),
            "lesson_start": TIME_LABELS[stack("start")],
            "offered_minutes": length,
            "attended_minutes": length - valid - invalid - other,
            "valid_absence_minutes": valid,
            "invalid_absence_minutes": invalid,
            "other_absence_minutes": other,
        }
    ).with_columns(pl.col("date").cast(pl.Date))


# --- export layouts ------------------------------------------------------------------------


def _with_pupil_columns(frame: pl.DataFrame, population: Population) -> pl.DataFrame:
    return pl.concat([frame, population.frame[frame["pupil"].to_numpy()]], how="horizontal")


def _skola24_frame(frame: pl.DataFrame, population: Population) -> pl.DataFrame:
    absence = (
        pl.col("valid_absence_minutes")
        + pl.col("invalid_absence_minutes")
        + pl.col("other_absence_minutes")
    )
    absence_type = (
        pl.when(pl.col("valid_absence_minutes") > 0)
        .then(pl.lit("Giltig frånvaro"))
        .when(pl.col("invalid_absence_minutes") > 0)
        .then(pl.lit("Ogiltig frånvaro"))
        .when(pl.col("other_absence_minutes") > 0)
        .then(pl.lit("Ej bedömd"))
    )  # null (an empty cell) when there is no absence
    return _with_pupil_columns(frame, population).select(
        pl.col("id10").alias("Personnummer"),
        pl.col("name").alias("Elev"),
        pl.col("school_unit_code").alias("Skolenhetskod"),
        pl.col("school_name").alias("Skola"),
        pl.col("grade").alias("Årskurs"),
        pl.concat_str("grade", "class_letter").alias("Klass"),
        pl.col("date").dt.strftime("%Y-%m-%d").alias("Datum"),
        pl.col("lesson_start").alias("Starttid"),
        pl.col("offered_minutes").cast(pl.Int64).cast(pl.String).alias("Lektionslängd (min)"),
        _decimal_comma(absence).alias("Frånvaro (min)"),
        absence_type.alias("Frånvarotyp"),
        # helpers for the dirty rows, dropped before writing
        pl.col("offered_minutes").alias("_length"),
        pl.col("temporary").alias("_temporary"),
    )


def _ist_frame(frame: pl.DataFrame, population: Population) -> pl.DataFrame:
    return _with_pupil_columns(frame, population).select(
        pl.col("id12").alias("Elev-ID"),
        pl.col("school_unit_code").alias("Skolenhet"),
        pl.col("grade").alias("Åk"),
        pl.col("date").dt.strftime("%Y%m%d").alias("Datum"),
        pl.col("lesson_start").alias("Lektion"),
        pl.col("offered_minutes").alias("Schemalagd tid"),
        pl.col("attended_minutes").alias("Närvarande"),
        pl.col("valid_absence_minutes").alias("Giltig frånvaro"),
        pl.col("invalid_absence_minutes").alias("Ogiltig frånvaro"),
        pl.col("other_absence_minutes").alias("Övrig frånvaro"),
        pl.col("offered_minutes").alias("_length"),
        pl.col("temporary").alias("_temporary"),
    )


def _decimal_comma(minutes: pl.Expr) -> pl.Expr:
    """2.5 -> "2,5", 45.0 -> "45" (the generator writes whole minutes; halves would do)."""
    halves = (minutes * 2).round().cast(pl.Int64)
    whole = (halves // 2).cast(pl.String)
    return pl.when(halves % 2 == 0).then(whole).otherwise(pl.concat_str(whole, pl.lit(",5")))


# --- dirty rows ----------------------------------------------------------------------------


def _add_dirty_rows(
    rng: np.random.Generator, export: pl.DataFrame, system: str, year: int, month: int
) -> tuple[pl.DataFrame, list[str]]:
    """Insert dirty copies at random positions; returns the rows and each row's kind or ""."""
    kinds = DIRTY_KINDS[system]
    count = max(len(kinds), round(export.height * DIRTY_SHARE))
    drawn = list(kinds) + list(rng.choice(kinds, count - len(kinds)))
    drawn = [str(kind) for kind in rng.permutation(drawn)]
    candidates = np.flatnonzero(~export["_temporary"].to_numpy())
    if len(candidates) == 0:  # only temporary ids in a tiny run; an invalid id needs digits
        raise ValueError("too few pupils to make dirty rows")
    sources = rng.choice(candidates, count)
    corrupt = _corrupt_skola24 if system == SKOLA24 else _corrupt_ist
    dirty = pl.DataFrame(
        [
            corrupt(row, kind, index, year, month)
            for index, (row, kind) in enumerate(
                zip(export[sources].iter_rows(named=True), drawn, strict=True)
            )
        ],
        schema=export.schema,
    )

    total = export.height + count
    positions = np.sort(rng.choice(total, count, replace=False))
    is_dirty = np.zeros(total, dtype=bool)
    is_dirty[positions] = True
    merged = (
        pl.concat(
            [
                export.with_columns(_position=pl.Series(np.flatnonzero(~is_dirty))),
                dirty.with_columns(_position=pl.Series(positions)),
            ]
        )
        .sort("_position")
        .drop("_position", "_length", "_temporary")
    )
    row_kinds = [""] * total
    for position, kind in zip(positions.tolist(), drawn, strict=True):
        row_kinds[position] = kind
    return merged, row_kinds


def _wrong_check_digit(personal_id: str, index: int) -> str:
    return personal_id[:-1] + str((int(personal_id[-1]) + 1 + index % 9) % 10)


def _impossible_date(year: int, month: int, day: str, index: int, separator: str) -> str:
    """The day after the month's last day, or month 13."""
    if index % 2 == 0:
        next_month = date(year + month // 12, month % 12 + 1, 1)
        last_day = (next_month - date(year, month, 1)).days
        return f"{year}{separator}{month:02d}{separator}{last_day + 1:02d}"
    return f"{year}{separator}13{separator}{day}"


def _off_hours(index: int) -> str:
    return str(TIME_LABELS[OFF_HOURS_START + 5 * (index % 72)])


def _corrupt_skola24(row: dict, kind: str, index: int, year: int, month: int) -> dict:
    if kind == MISSING_ID:
        row["Personnummer"] = None
    elif kind == INVALID_ID:
        row["Personnummer"] = _wrong_check_digit(row["Personnummer"], index)
    elif kind == INVALID_DATE:
        row["Datum"] = _impossible_date(year, month, row["Datum"][-2:], index, "-")
    elif kind == UNKNOWN_SCHOOL:
        row["Skolenhetskod"] = UNKNOWN_SCHOOL_CODES[index % len(UNKNOWN_SCHOOL_CODES)]
    elif kind == OUT_OF_RANGE:
        row["Starttid"] = _off_hours(index)
        if index % 2 == 0:
            row["Frånvaro (min)"], row["Frånvarotyp"] = "-5", "Ogiltig frånvaro"
        else:
            row["Frånvaro (min)"] = str(int(row["_length"]) + 15)
            row["Frånvarotyp"] = "Giltig frånvaro"
    return row


def _corrupt_ist(row: dict, kind: str, index: int, year: int, month: int) -> dict:
    length = row["_length"]
    if kind == MISSING_ID:
        row["Elev-ID"] = None
    elif kind == INVALID_ID:
        row["Elev-ID"] = _wrong_check_digit(row["Elev-ID"], index)
    elif kind == INVALID_DATE:
        row["Datum"] = _impossible_date(year, month, row["Datum"][-2:], index, "")
    elif kind == UNKNOWN_SCHOOL:
        row["Skolenhet"] = UNKNOWN_SCHOOL_CODES[index % len(UNKNOWN_SCHOOL_CODES)]
    elif kind == OUT_OF_RANGE:
        # Adds up to the scheduled time, but one column is negative.
        row["Lektion"] = _off_hours(index)
        row["Närvarande"], row["Giltig frånvaro"] = length - 10.0, 15.0
        row["Ogiltig frånvaro"], row["Övrig frånvaro"] = -5.0, 0.0
    elif kind == NOT_ADDING_UP:
        # Every value within 0..scheduled, but the sum is 10 too high or 15 too low.
        row["Lektion"] = _off_hours(index)
        row["Närvarande"] = length if index % 2 == 0 else length - 15.0
        row["Giltig frånvaro"], row["Övrig frånvaro"] = 0.0, 0.0
        row["Ogiltig frånvaro"] = 10.0 if index % 2 == 0 else 0.0
    return row


# --- writers -------------------------------------------------------------------------------


def _write_skola24_csv(path: Path, export: pl.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Nulls are written as empty cells (polars would quote an empty string).
    text = export.write_csv(separator=";", line_terminator="\r\n")
    path.write_bytes(text.encode("cp1252"))


def _export_parts(month_frame: pl.DataFrame) -> Iterator[tuple[str, int, pl.DataFrame]]:
    """(system, part, rows) of a month's exports. An IST workbook holds at most
    IST_MAX_ROWS lessons (a sheet ends at 1,048,576 rows; xlsxwriter silently drops the
    rest), so a bigger month is exported in parts of whole school days, as IST users do."""
    for system in (SKOLA24, IST):
        frame = month_frame.filter(pl.col("system") == system)
        if frame.height == 0:
            continue
        if system == SKOLA24 or frame.height <= IST_MAX_ROWS:
            yield system, 0, frame
            continue
        per_day = frame.group_by("date", maintain_order=True).len()
        if per_day["len"].max() > IST_MAX_ROWS:
            raise ValueError("one school day has more IST lessons than a workbook can hold")
        part, rows, part_of_day = 0, 0, {}
        for day, count in per_day.iter_rows():
            if rows + count > IST_MAX_ROWS:
                part, rows = part + 1, 0
            part_of_day[day], rows = part, rows + count
        parts = frame.with_columns(
            _part=pl.col("date").replace_strict(part_of_day, return_dtype=pl.Int32)
        )
        for number in range(part + 1):
            yield system, number, parts.filter(pl.col("_part") == number).drop("_part")


def _write_ist_workbook(path: Path, export: pl.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # constant_memory streams each row to disk instead of keeping the sheet in memory.
    workbook = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    workbook.set_properties({"created": XLSX_CREATED})
    sheet = workbook.add_worksheet("Närvaro")
    sheet.write_row(0, 0, IST_HEADER)
    write_string, write_number = sheet.write_string, sheet.write_number
    texts = zip(*(export[name].to_list() for name in IST_HEADER[:IST_TEXT_COLUMNS]), strict=True)
    numbers = zip(*(export[name].to_list() for name in IST_HEADER[IST_TEXT_COLUMNS:]), strict=True)
    for row_number, (text_cells, number_cells) in enumerate(
        zip(texts, numbers, strict=True), start=1
    ):
        for column, value in enumerate(text_cells):
            if value is not None:  # a missing id stays an empty cell
                write_string(row_number, column, value)
        for column, value in enumerate(number_cells, start=IST_TEXT_COLUMNS):
            write_number(row_number, column, value)
    workbook.close()


class _WorkbookWriter:
    """Writes the IST workbooks in worker processes, in parallel with the simulation.

    xlsxwriter is pure Python and takes most of the run time; each workbook is written whole
    by one process, so the bytes do not depend on the scheduling.
    """

    def __init__(self, report: Callable[[str], None]) -> None:
        self.report = report
        processes = max(1, min(MAX_WORKBOOK_PROCESSES, os.cpu_count() or 1))
        self.executor = ProcessPoolExecutor(
            processes, mp_context=multiprocessing.get_context("spawn")
        )
        self.in_flight = processes + 1  # bounds the memory held by waiting workbooks
        self.pending: deque[tuple[Future[None], str]] = deque()

    def submit(self, path: Path, export: pl.DataFrame, message: str) -> None:
        self.pending.append((self.executor.submit(_write_ist_workbook, path, export), message))
        while len(self.pending) > self.in_flight:
            self._finish_oldest()

    def _finish_oldest(self) -> None:
        future, message = self.pending.popleft()
        future.result()  # re-raises a worker's exception here
        self.report(message)

    def __enter__(self) -> _WorkbookWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            while self.pending and exc_type is None:
                self._finish_oldest()
        finally:
            self.executor.shutdown(wait=True, cancel_futures=True)


def _write_csv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _write_reference(
    out_dir: Path, calendars: dict[int, list[CalendarDay]], report: Callable[[str], None]
) -> list[Path]:
    reference = out_dir / "reference"
    areas = _write_csv(
        reference / "areas.csv",
        ("area_code", "area_name", "area_type", "municipality_code", "municipality_name"),
        [(code, name, "DeSO", MUNICIPALITY_CODE, MUNICIPALITY_NAME) for code, name in AREAS],
    )
    schools = _write_csv(
        reference / "schools.csv",
        (
            "school_unit_code",
            "school_name",
            "school_type",
            "grades",
            "area_code",
            "municipality_code",
            "attendance_system",
        ),
        [
            (
                school.code,
                school.name,
                "GR",
                "F-9",
                school.area_code,
                MUNICIPALITY_CODE,
                school.system,
            )
            for school in SCHOOLS
        ],
    )
    calendar = _write_csv(
        reference / "school_calendar.csv",
        ("date", "school_year", "term", "is_school_day", "day_type", "note"),
        [
            (
                day.date.isoformat(),
                day.school_year,
                day.term,
                "true" if day.is_school_day else "false",
                day.day_type,
                day.note,
            )
            for _, days in sorted(calendars.items())
            for day in days
        ],
    )
    report(f"wrote {len(AREAS)} areas, {len(SCHOOLS)} schools and the school calendar")
    return [areas, schools, calendar, _write_exceptions_example(reference, calendars)]


def _write_exceptions_example(reference: Path, calendars: dict[int, list[CalendarDay]]) -> Path:
    """An example `school_calendar_exceptions.csv` (a study day and a make-up Saturday of the
    first school), under `examples/`, where the pipeline does not read it: the demo's lessons
    know no such days. Copied up to `reference/`, it quarantines that study day's lessons."""
    days = [day for _, year in sorted(calendars.items()) for day in year]
    october = [d for d in days if d.date.month == 10]
    study = next(d for d in october if d.is_school_day and d.date.weekday() == 4)
    saturday = next(d for d in october if d.date > study.date and d.date.weekday() == 5)
    return _write_csv(
        reference / "examples" / "school_calendar_exceptions.csv",
        ("school_unit_code", "date", "day_type", "note"),
        [
            (SCHOOLS[0].code, study.date.isoformat(), "study_day", "Studiedag"),
            (SCHOOLS[0].code, saturday.date.isoformat(), "make_up_day", "Lördagsskola"),
        ],
    )


class _TruthWriter:
    """Streams the valid lesson rows to truth_dir/lessons.parquet, one row group a month."""

    def __init__(self, truth_dir: Path) -> None:
        truth_dir.mkdir(parents=True, exist_ok=True)
        self.truth_dir = truth_dir
        self.lessons_path = truth_dir / "lessons.parquet"
        self.writer = pq.ParquetWriter(self.lessons_path, TRUTH_SCHEMA)

    def write(self, month_frame: pl.DataFrame) -> None:
        table = month_frame.select(TRUTH_SCHEMA.names).to_arrow()
        self.writer.write_table(table.cast(TRUTH_SCHEMA))

    def close(self, population: Population, dirty_log: list[tuple[str, int, str]]) -> list[Path]:
        self.writer.close()
        pupils_path = self.truth_dir / "pupils.parquet"
        pupils = pa.table(
            {
                "pupil_id": pa.array(np.arange(1, population.size + 1), pa.int64()),
                "id_kind": pa.array(population.id_kind.tolist(), pa.string()),
            }
        )
        pq.write_table(pupils, pupils_path)
        dirty_path = _write_csv(
            self.truth_dir / "dirty_rows.csv", ("file", "row_number", "kind"), sorted(dirty_log)
        )
        return [self.lessons_path, pupils_path, dirty_path]


def _thousands(number: int) -> str:
    return f"{number:,}".replace(",", " ")
