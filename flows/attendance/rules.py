"""Cleaning of attendance exports (polars): landed lesson rows → clean pupil days.

Steps, each a pure function so tests can call them directly:

1. `type_lessons`: map a layout's columns onto the lesson contract, parse Swedish formats
   and give every row that cannot be used a `reason` (first failing check wins).
2. `split_load`: per load, separate clean lessons, quarantined rows (original values plus
   reason) and duplicates (the clean layer checks `received = clean + quarantined +
   duplicates`).
3. `day_totals`: per load, its lessons → one row per pupil × school unit × day (what a
   period holds in memory, not its lessons).
4. `pupil_days`: the day totals of all current loads of a period → one row per pupil × school
   unit × day. A later load that has a pupil's day at a school replaces that pupil-day's earlier
   rows (a corrected re-export), so nothing is counted twice; loads covering different pupils
   of the same school day (per class, per system) add up.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import polars as pl

from connectors.attendance_export.layouts import Layout
from connectors.attendance_export.resources import ROW_NUMBER
from connectors.personal_ids import KIND_INVALID, KIND_MISSING
from flows.layers.clean import LoadResult
from flows.layers.manifest import partitions_of
from flows.layers.parsing import parse_date, parse_number

MINUTES = (
    "offered_minutes",
    "attended_minutes",
    "valid_absence_minutes",
    "invalid_absence_minutes",
    "other_absence_minutes",
)
LESSON_KEY = ("pupil_key", "school_unit_code", "date", "lesson_start")
DAY_KEY = ("pupil_key", "school_unit_code", "date")
GRADES = ("F", "1", "2", "3", "4", "5", "6", "7", "8", "9")
MAX_DAY_MINUTES = 24 * 60

# Order matters: a row gets the first reason that applies.
REASONS = (
    "missing_personal_id",
    "invalid_personal_id",
    "missing_value",
    "invalid_date",
    "date_after_run_date",
    "unknown_school_unit",
    "school_not_open_on_date",
    "not_a_school_day_for_school",
    "invalid_grade",
    "invalid_lesson_start",
    "invalid_number",
    "unknown_absence_type",
    "derived_minutes_negative",
    "minutes_out_of_range",
    "minutes_do_not_add_up",
    "conflicting_duplicate",
)
# A derived remainder this close below zero is rounding in the export, taken as 0.
DERIVED_TOLERANCE = 0.01

CLEAN_SCHEMA = {
    "pupil_key": pl.String,
    "school_unit_code": pl.String,
    "date": pl.Date,
    "grade": pl.String,
    "offered_minutes": pl.Float64,
    "attended_minutes": pl.Float64,
    "valid_absence_minutes": pl.Float64,
    "invalid_absence_minutes": pl.Float64,
    "other_absence_minutes": pl.Float64,
    "lessons": pl.Int32,
    "source": pl.String,
    "load_id": pl.String,
}


def _text(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.String).str.strip_chars()


def normalise_grade(expr: pl.Expr) -> pl.Expr:
    """'Åk 7', 'åk7', 'AK 7', '07', 'FK', 'F', '0' → '7' / 'F'."""
    text = expr.str.to_uppercase().str.replace_all(r"^(ÅK|AK|ÅRSKURS)\s*", "")
    text = text.str.strip_chars().str.strip_chars_start("0")
    return pl.when(text.is_in(["", "F", "FK", "FSK"])).then(pl.lit("F")).otherwise(text)


def normalise_time(expr: pl.Expr) -> pl.Expr:
    """'8:10', '08:10', '08.10', '08:10:00', Excel's '1899-12-31 08:10:00' → '08:10'."""
    excel_day = r"(?:\d{4}-\d{2}-\d{2}[ T])?"
    parts = expr.str.extract_groups(rf"^{excel_day}(\d{{1,2}})[:.](\d{{2}})(?::\d{{2}})?$")
    hour = parts.struct.field("1").cast(pl.Int32, strict=False)
    minute = parts.struct.field("2").cast(pl.Int32, strict=False)
    valid = hour.is_between(0, 23) & minute.is_between(0, 59)
    return pl.when(valid).then(
        pl.format("{}:{}", hour.cast(pl.String).str.zfill(2), minute.cast(pl.String).str.zfill(2))
    )


def parsed_once(rows: pl.DataFrame, column: str, parse: Callable[[pl.Expr], pl.Expr]) -> pl.Expr:
    """`parse` of the column's trimmed text, computed once per distinct value and mapped onto
    every row. Dates, lesson times, grades and minutes repeat thousands of times in an
    export, and their regexes were most of what cleaning spent its time on."""
    if rows.is_empty():  # a header-only export: nothing to map (and no dtype to map onto)
        return parse(_text(column))
    distinct = rows.select(pl.col(column).unique())
    parsed = distinct.select(pl.col(column), parse(_text(column)).alias("parsed"))
    return pl.col(column).replace_strict(
        parsed.get_column(column),
        parsed.get_column("parsed"),
        return_dtype=parsed.schema["parsed"],
    )


def _field_columns(rows: pl.DataFrame, layout: Layout) -> tuple[pl.DataFrame, dict[str, str]]:
    """(rows with helper columns, field → column to read it from). A field with a default
    reads a helper column: the default for every row when no column maps the field, else the
    mapped column with its empty cells filled. Helper columns never reach quarantine."""
    src = {field: source for source, field in layout.columns.items()}
    helpers = {}
    for field, value in layout.defaults.items():
        helper = f"_default_{field}"
        if field in src:
            column = pl.col(src[field])
            helpers[helper] = pl.when(_text(src[field]) == "").then(pl.lit(value)).otherwise(column)
        else:
            helpers[helper] = pl.lit(value, dtype=pl.String)
        src[field] = helper
    return (rows.with_columns(**helpers) if helpers else rows), src


def school_day_checks(
    days_off: pl.DataFrame | None, validity: pl.DataFrame | None
) -> list[tuple[str, pl.Expr]]:
    """The reference's per-school rules on `school_unit_code` × `date`, row order kept:
    a date outside the school's `valid_from`..`valid_to` (opened later, closed earlier), and a
    school's own day off (a study day or closure of school_calendar_exceptions.csv)."""
    checks = []
    code, day = pl.col("school_unit_code").fill_null(""), pl.col("date")
    if validity is not None and validity.height:
        codes = validity.get_column("school_unit_code")
        opened = code.replace_strict(codes, validity.get_column("valid_from"), default=None)
        closed = code.replace_strict(codes, validity.get_column("valid_to"), default=None)
        checks.append(("school_not_open_on_date", (day < opened) | (day > closed)))
    if days_off is not None and days_off.height:
        keys = days_off.select(pl.concat_str("school_unit_code", pl.col("date").cast(pl.String)))
        checks.append(
            (
                "not_a_school_day_for_school",
                pl.concat_str(code, day.cast(pl.String)).is_in(keys.to_series().implode()),
            )
        )
    return checks


def type_lessons(
    rows: pl.DataFrame,
    layout: Layout,
    known_schools: set[str],
    run_date: date | None = None,
    days_off: pl.DataFrame | None = None,
    validity: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Add typed lesson fields and `reason` (null when the row is usable) to landed rows.

    With `run_date`, a lesson dated after it is quarantined (`date_after_run_date`): an
    export never holds tomorrow's attendance, whatever the calendar covers."""
    rows = rows.with_columns(pl.col(c).cast(pl.String) for c in rows.columns if c != ROW_NUMBER)
    rows, src = _field_columns(rows, layout)
    raw = {field: _text(src[field]) for field in src if field != "personal_id"}

    def parsed(field: str, parse: Callable[[pl.Expr], pl.Expr]) -> pl.Expr:
        return parsed_once(rows, src[field], parse)

    typed = {
        "school_unit_code": raw["school_unit_code"],
        "grade": parsed("grade", normalise_grade),
        "date": parsed("date", lambda text: parse_date(text, layout.date_formats)),
        "lesson_start": parsed("lesson_start", normalise_time),
        "offered_minutes": parsed("offered_minutes", parse_number),
    }
    number_fields = ["offered_minutes"]
    derived = next(iter(layout.derived), None)
    if layout.has_typed_absence:
        categories = pl.DataFrame(
            {"_type": list(layout.absence_types), "_category": list(layout.absence_types.values())},
            schema={"_type": pl.String, "_category": pl.String},
        )
        absence = parsed("absence_minutes", parse_number)
        number_fields.append("_absence")
        typed["_absence"] = absence
        typed["_type"] = raw["absence_type"]
    else:
        for field in MINUTES[1:]:
            if field != derived:
                typed[field] = parsed(field, parse_number)
                number_fields.append(field)

    frame = rows.with_columns(**typed)
    if derived:
        # The remainder of the offered minutes; rounding noise just below 0 is taken as 0,
        # a real shortfall is quarantined (derived_minutes_negative).
        parts = [pl.col(m) for m in MINUTES[1:] if m != derived]
        remainder = pl.col("offered_minutes") - pl.sum_horizontal(parts)
        frame = frame.with_columns(
            pl.when(remainder.is_between(-DERIVED_TOLERANCE, 0))
            .then(0.0)
            .otherwise(remainder)
            .alias(derived)
        )
    if layout.has_typed_absence:
        # a mapping, not a join: rows keep their order (split_load's "first" relies on it)
        frame = frame.with_columns(
            _category=pl.col("_type").replace_strict(
                categories["_type"], categories["_category"], default=None
            )
        )
        category = pl.col("_category")
        by_type = {
            "valid_absence_minutes": "valid",
            "invalid_absence_minutes": "invalid",
            "other_absence_minutes": "other",
        }
        frame = frame.with_columns(
            attended_minutes=pl.col("offered_minutes") - pl.col("_absence"),
            **{
                name: pl.when(category == kind).then(pl.col("_absence")).otherwise(0.0)
                for name, kind in by_type.items()
            },
        )

    required = [
        src[f] for f in ("school_unit_code", "grade", "date", "lesson_start", "offered_minutes")
    ]
    minutes = [pl.col(m) for m in MINUTES]
    absences = [pl.col(m) for m in MINUTES[2:]]
    after_run = pl.lit(False) if run_date is None else pl.col("date") > pl.lit(run_date)
    checks = [
        ("missing_personal_id", pl.col("pupil_id_kind") == KIND_MISSING),
        ("invalid_personal_id", pl.col("pupil_id_kind") == KIND_INVALID),
        ("missing_value", pl.any_horizontal([_text(c) == "" for c in required])),
        ("invalid_date", pl.col("date").is_null()),
        ("date_after_run_date", after_run),
        ("unknown_school_unit", ~pl.col("school_unit_code").is_in(sorted(known_schools))),
        *school_day_checks(days_off, validity),
        ("invalid_grade", ~pl.col("grade").is_in(GRADES)),
        ("invalid_lesson_start", pl.col("lesson_start").is_null()),
        ("invalid_number", pl.any_horizontal([pl.col(f).is_null() for f in number_fields])),
    ]
    if layout.has_typed_absence:
        checks += [
            ("unknown_absence_type", pl.col("_category").is_null()),
            ("unknown_absence_type", (pl.col("_category") == "none") & (pl.col("_absence") != 0)),
        ]
    if derived:
        checks.append(("derived_minutes_negative", pl.col(derived) < 0))
    checks += [
        (
            "minutes_out_of_range",
            pl.any_horizontal([m < 0 for m in minutes])
            | (pl.col("offered_minutes") > MAX_DAY_MINUTES)
            | pl.any_horizontal([a > pl.col("offered_minutes") for a in absences]),
        ),
        (
            "minutes_do_not_add_up",
            (pl.sum_horizontal(minutes[1:]) - pl.col("offered_minutes")).abs() > 0.01,
        ),
    ]
    reason = pl.lit(None, dtype=pl.String)
    for name, failed in reversed(checks):
        reason = pl.when(failed.fill_null(False)).then(pl.lit(name)).otherwise(reason)
    return frame.with_columns(reason=reason)


# Rows typed at a time: a month's export can be millions of rows, and its text and typed
# columns side by side took ~5 GB at 100,000 pupils; a batch holds a bounded slice of both.
BATCH_ROWS = 1_000_000


def split_load(
    rows: pl.DataFrame | pl.LazyFrame,
    layout: Layout,
    known_schools: set[str],
    load_id: str,
    run_date: date | None = None,
    days_off: pl.DataFrame | None = None,
    validity: pl.DataFrame | None = None,
    batch_rows: int = BATCH_ROWS,
) -> LoadResult:
    """One load's rows → its distinct usable lessons, its quarantine and its counts.

    `rows` may be lazy (a landed file): it is then read and typed `batch_rows` rows at a
    time, and only the typed values of usable rows are kept for the duplicate checks,
    which need the whole load (a repeat may be far from the row it repeats)."""
    lazy = rows.lazy()
    original = lazy.collect_schema().names()
    received = rows.height if isinstance(rows, pl.DataFrame) else _height(lazy)
    values = [*LESSON_KEY, "grade", *MINUTES]
    usable, rejected = [], []
    for offset in range(0, max(received, 1), batch_rows):
        batch = rows.slice(offset, batch_rows) if isinstance(rows, pl.DataFrame) else None
        batch = lazy.slice(offset, batch_rows).collect() if batch is None else batch
        typed = type_lessons(  # in source row order
            batch, layout, known_schools, run_date, days_off, validity
        )
        failed = pl.col("reason").is_not_null()
        usable.append(typed.filter(~failed).select(ROW_NUMBER, *values))
        rejected.append(typed.filter(failed).select(*original, "reason"))
        del batch, typed
    lessons = pl.concat(usable, rechunk=False) if len(usable) > 1 else usable[0]
    del usable
    exact_first = lessons.select(pl.struct(values).is_first_distinct()).to_series()
    repeats = exact_first.len() - exact_first.sum()
    if repeats:
        lessons = lessons.filter(exact_first)
    del exact_first
    key_first = lessons.select(pl.struct(LESSON_KEY).is_first_distinct()).to_series()
    if not key_first.all():  # the same lesson with other values: the first row is kept
        conflicts = lessons.filter(~key_first).get_column(ROW_NUMBER)
        lessons = lessons.filter(key_first)
        rows_of = lazy.filter(pl.col(ROW_NUMBER).is_in(conflicts.implode())).collect()
        rejected.append(
            rows_of.with_columns(pl.col(c).cast(pl.String) for c in original if c != ROW_NUMBER)
            .select(*original)
            .with_columns(reason=pl.lit("conflicting_duplicate"))
        )
    quarantine = (
        pl.concat(rejected, how="vertical_relaxed")
        .sort(ROW_NUMBER)
        .with_columns(load_id=pl.lit(load_id))
    )
    lessons = lessons.select(
        *LESSON_KEY,
        "grade",
        *MINUTES,
        source=pl.lit(layout.name),
        load_id=pl.lit(load_id),
    )
    periods = periods_of(lessons.get_column("date"))
    return LoadResult(lessons, quarantine, received, lessons.height, repeats, periods)


def _height(rows: pl.LazyFrame) -> int:
    return rows.select(pl.len()).collect().item()


def day_totals(lessons: pl.DataFrame) -> pl.DataFrame:
    """One load's lessons → one row per pupil × school unit × day of that load, with the
    number of lessons. What a period holds in memory: ~5× fewer rows than its lessons, and
    the latest-load rule of `pupil_days` gives the same days from either."""
    if "lessons" in lessons.columns:
        return lessons
    return (
        lessons.lazy()
        .group_by(*DAY_KEY, "load_id")
        .agg(
            pl.col("grade").max(),
            *[pl.col(m).sum() for m in MINUTES],
            lessons=pl.len().cast(pl.Int32),
            source=pl.col("source").max(),
        )
        .select(list(CLEAN_SCHEMA))
        .collect()
    )


def pupil_days(rows: pl.DataFrame) -> pl.DataFrame:
    """Lessons, or per-load day totals (`day_totals`), of every current load of a period →
    the clean day grain.

    The latest load that has a pupil's day at a school wins that pupil-day.
    """
    if rows.is_empty():
        return pl.DataFrame(schema=CLEAN_SCHEMA)
    days = day_totals(rows)
    current = days.lazy()
    loads_per_school_day = days.group_by("school_unit_code", "date").agg(
        pl.col("load_id").n_unique()
    )
    if loads_per_school_day.get_column("load_id").max() > 1:  # else no load can replace another
        current = current.filter(pl.col("load_id") == pl.col("load_id").max().over(DAY_KEY))
    days = current.group_by(DAY_KEY).agg(
        pl.col("grade").max(),
        *[pl.col(m).sum() for m in MINUTES],
        lessons=pl.col("lessons").sum(),
        source=pl.col("source").max(),
        load_id=pl.col("load_id").max(),
    )
    return days.select(list(CLEAN_SCHEMA)).cast(CLEAN_SCHEMA).sort(DAY_KEY).collect()


def periods_of(dates: pl.Series) -> list[str]:
    return partitions_of(dates, "month")
