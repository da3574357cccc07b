"""Reference data (schools, areas, school calendar): CSV in the drop folder → clean parquet.

Reference files are replaced as a whole on every run. They are small and checked strictly:
an error here stops the run with a message naming the file and the rows.

Optional, beside them: `school_calendar_exceptions.csv` (a school's own study days, closures
and make-up days), and `valid_from`/`valid_to` columns in `schools.csv` and `areas.csv` (a
school closed or opened, an area retired in a revision). A closed school stays in the file
with its `valid_to`: its rows up to that day stay clean (docs/sources/reference-data.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import polars as pl

from flows.layers.files import write_parquet_atomic

REFERENCE_FILES = {
    "areas": {
        "area_code": r"^\d{4}[A-Z0-9]{1,6}$",
        "area_name": r".",
        "area_type": r".",
        "municipality_code": r"^\d{4}$",
        "municipality_name": r".",
    },
    "schools": {
        "school_unit_code": r"^\d{8}$",
        "school_name": r".",
        "school_type": r".",
        "grades": r".",
        "area_code": r".",
        "municipality_code": r"^\d{4}$",
        "attendance_system": r"",
    },
    "area_revisions": {
        "old_area_code": r"^\d{4}[A-Z0-9]{1,6}$",
        "new_area_code": r"^\d{4}[A-Z0-9]{1,6}$",
        "revision": r".",
    },
    "school_calendar_exceptions": {
        "school_unit_code": r"^\d{8}$",
        "date": r"^\d{4}-\d{2}-\d{2}$",
        "day_type": r"^(study_day|closed|make_up_day)$",
        "note": r"",
    },
    "school_calendar": {
        "date": r"^\d{4}-\d{2}-\d{2}$",
        "school_year": r"^\d{4}/\d{2}$",
        "term": r"^$|^(HT|VT)\d{4}$",
        "is_school_day": r"^(true|false)$",
        "day_type": r"^(school_day|weekend|break|holiday)$",
        "note": r"",
    },
}


# What a value must look like, in words, for the error message.
EXPECTED = {
    "area_code": "the 4-digit municipality code and 1-6 letters or digits (e.g. 1299C0010)",
    "old_area_code": "an area code (e.g. 1299C0010)",
    "new_area_code": "an area code (e.g. 1299C0011)",
    "revision": "a name for the revision (e.g. DeSO 2025)",
    "municipality_code": "4 digits (e.g. 1299)",
    "school_unit_code": "8 digits (skolenhetskod)",
    "date": "YYYY-MM-DD",
    "school_year": "e.g. 2025/26",
    "term": "HT2025, VT2026 or empty",
    "is_school_day": "true or false",
    "day_type": "school_day, weekend, break or holiday",
    "exception_day_type": "study_day, closed or make_up_day",
    "valid_from": "YYYY-MM-DD or empty",
    "valid_to": "YYYY-MM-DD or empty",
}

# Optional columns: absent or empty means "always" (no start, no end).
VALIDITY = {"valid_from": r"^$|^\d{4}-\d{2}-\d{2}$", "valid_to": r"^$|^\d{4}-\d{2}-\d{2}$"}
# A school's own day: a study day or a closure is no school day for it, a make-up day is one.
EXCEPTION_SCHOOL_DAY = {"study_day": False, "closed": False, "make_up_day": True}


class ReferenceError(ValueError):
    """A reference file is missing or malformed."""


REVISIONS_SCHEMA = {"old_area_code": pl.String, "new_area_code": pl.String, "revision": pl.String}

EXCEPTIONS_SCHEMA = {
    "school_unit_code": pl.String,
    "date": pl.Date,
    "day_type": pl.String,
    "is_school_day": pl.Boolean,
    "note": pl.String,
}


@dataclass
class Reference:
    schools: pl.DataFrame
    areas: pl.DataFrame
    calendar: pl.DataFrame
    exceptions: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=EXCEPTIONS_SCHEMA))
    revisions: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=REVISIONS_SCHEMA))

    @cached_property
    def school_codes(self) -> set[str]:
        return set(self.schools.get_column("school_unit_code").to_list())

    @cached_property
    def school_days(self) -> set:
        """The municipality's school days, and every school's make-up day (the gate's set)."""
        made_up = self.exceptions.filter("is_school_day").get_column("date").to_list()
        return set(self.calendar.filter("is_school_day").get_column("date").to_list()) | set(
            made_up
        )

    @cached_property
    def days_off(self) -> pl.DataFrame:
        """(school_unit_code, date) of a school's own non-school days: study days, closures."""
        return self.exceptions.filter(~pl.col("is_school_day")).select("school_unit_code", "date")

    @cached_property
    def school_validity(self) -> pl.DataFrame:
        """(school_unit_code, valid_from, valid_to) of the schools opened or closed."""
        return self.schools.filter(
            pl.col("valid_from").is_not_null() | pl.col("valid_to").is_not_null()
        ).select("school_unit_code", "valid_from", "valid_to")


def read_reference_csv(path: Path) -> pl.DataFrame:
    """A reference CSV (UTF-8, a BOM allowed, comma-separated) with every value as text, or
    one clear error naming the file and the fix."""
    data = path.read_bytes()
    if not data.strip():
        raise ReferenceError(f"{path} is empty: it needs a header line and one line per row")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ReferenceError(
            f"{path} is not UTF-8 (line {line}; the encoding looks like cp1252/Windows): "
            "save it as UTF-8 (in Excel: 'CSV UTF-8')"
        ) from None
    try:
        frame = pl.read_csv(text.encode("utf-8"), infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise ReferenceError(
            f"{path}: cannot be read as CSV ({type(exc).__name__}): a line has more fields "
            "than the header; quote values that contain a comma"
        ) from None  # the parser's message quotes the file
    frame = frame.rename({c: c.strip() for c in frame.columns})
    return frame.with_columns(pl.all().fill_null(""))


def _read(
    path: Path, patterns: dict[str, str], optional: dict[str, str] | None = None
) -> pl.DataFrame:
    """A reference file's columns, checked against their patterns; `optional` columns may be
    absent (then empty)."""
    if not path.exists():
        raise ReferenceError(
            f"reference file {path} is missing; see docs/sources/reference-data.md for its columns"
        )
    frame = read_reference_csv(path)
    missing = [c for c in patterns if c not in frame.columns]
    if missing:
        header = ",".join(frame.columns)
        hint = next(
            (
                f" The separator looks like {label}: save the file comma-separated."
                for sep, label in ((";", "';'"), ("\t", "a tab"))
                if sum(c in header.split(sep) for c in patterns) >= 2
            ),
            " The first line must be the header: " + ",".join(patterns) + ".",
        )
        raise ReferenceError(f"{path}: missing columns {missing}.{hint}")
    optional = optional or {}
    frame = frame.with_columns(pl.lit("").alias(c) for c in optional if c not in frame.columns)
    patterns = {**patterns, **optional}
    frame = frame.select([pl.col(c).str.strip_chars() for c in patterns])
    for column, pattern in patterns.items():
        bad = frame.with_row_index("line", offset=2).filter(~pl.col(column).str.contains(pattern))
        if bad.height:
            lines = bad.get_column("line").head(5).to_list()
            key = "exception_day_type" if "exceptions" in path.name else column
            expected = EXPECTED.get(key, EXPECTED.get(column, "a value"))
            raise ReferenceError(f"{path.name}: bad {column} on lines {lines}; expected {expected}")
    return frame


def _dates(frame: pl.DataFrame, name: str, columns: list[str]) -> pl.DataFrame:
    """Text dates → dates (empty → null); an impossible day (2025-02-30) names its lines."""
    for column in columns:
        parsed = pl.col(column).replace("", None).str.to_date("%Y-%m-%d", strict=False)
        impossible = frame.with_row_index("line", offset=2).filter(
            parsed.is_null() & (pl.col(column) != "")
        )
        if impossible.height:
            lines = impossible.get_column("line").head(5).to_list()
            raise ReferenceError(f"{name}: bad {column} on lines {lines}; no such day")
        frame = frame.with_columns(parsed.alias(column))
    return frame


def _validity(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    frame = _dates(frame, name, list(VALIDITY))
    backwards = frame.with_row_index("line", offset=2).filter(
        pl.col("valid_to") < pl.col("valid_from")
    )
    if backwards.height:
        lines = backwards.get_column("line").head(5).to_list()
        raise ReferenceError(f"{name}: valid_to before valid_from on lines {lines}")
    return frame


def read_exceptions(path: Path, schools: pl.DataFrame) -> pl.DataFrame:
    """The optional per-school calendar exceptions; absent: none."""
    if not path.exists():
        return pl.DataFrame(schema=EXCEPTIONS_SCHEMA)
    patterns = REFERENCE_FILES["school_calendar_exceptions"]
    frame = _dates(_read(path, patterns), path.name, ["date"])
    unknown = frame.with_row_index("line", offset=2).join(
        schools.select("school_unit_code"), on="school_unit_code", how="anti"
    )
    if unknown.height:
        lines = unknown.get_column("line").head(5).to_list()
        raise ReferenceError(
            f"{path.name}: school_unit_code on lines {lines} is not in schools.csv"
        )
    twice = frame.filter(pl.struct("school_unit_code", "date").is_duplicated())
    if twice.height:
        raise ReferenceError(
            f"{path.name}: a school and date repeated ({twice.height} lines); one line per "
            "school and day"
        )
    return frame.select(
        "school_unit_code",
        "date",
        "day_type",
        is_school_day=pl.col("day_type").replace_strict(EXCEPTION_SCHOOL_DAY),
        note=pl.col("note").replace("", None),
    ).sort("school_unit_code", "date")


def read_revisions(path: Path, areas: pl.DataFrame) -> pl.DataFrame:
    """The optional area revisions: which retired area became which (a mapping table)."""
    if not path.exists():
        return pl.DataFrame(schema=REVISIONS_SCHEMA)
    frame = _read(path, REFERENCE_FILES["area_revisions"])
    known = areas.get_column("area_code").implode()
    for column in ("old_area_code", "new_area_code"):
        unknown = frame.with_row_index("line", offset=2).filter(~pl.col(column).is_in(known))
        if unknown.height:
            lines = unknown.get_column("line").head(5).to_list()
            raise ReferenceError(
                f"{path.name}: {column} on lines {lines} is not in areas.csv (keep a retired "
                "area there, with its valid_to)"
            )
    same = frame.with_row_index("line", offset=2).filter(
        (pl.col("old_area_code") == pl.col("new_area_code"))
        | pl.struct("old_area_code", "new_area_code").is_duplicated()
    )
    if same.height:
        lines = same.get_column("line").head(5).to_list()
        raise ReferenceError(f"{path.name}: an area mapped to itself or twice on lines {lines}")
    return frame


def remapped(schools: pl.DataFrame, revisions: pl.DataFrame, path: Path) -> pl.DataFrame:
    """Schools placed in the newest area their area became (`remap_areas`): every figure,
    past ones too, then follows today's geography. A split area (one old code, several new)
    cannot be remapped for a school: its new area must be given in schools.csv."""
    split = revisions.filter(pl.col("old_area_code").is_duplicated())
    if split.height:
        codes = sorted(set(split.get_column("old_area_code").to_list()))
        raise ReferenceError(
            f"{path.name}: areas {codes} were split in several new areas; remap_areas cannot "
            "choose for a school: give each of their schools its new area_code in schools.csv"
        )
    mapping = dict(revisions.select("old_area_code", "new_area_code").iter_rows())
    moved = {}
    for code in schools.get_column("area_code").unique().to_list():
        seen, target = {code}, code
        while target in mapping:  # a chain of revisions: 2018 → 2025 → …
            target = mapping[target]
            if target in seen:
                raise ReferenceError(f"{path.name}: the revisions of {code} go round in a circle")
            seen.add(target)
        if target != code:
            moved[code] = target
    return schools.with_columns(pl.col("area_code").replace(moved))


def load_reference(drop_dir: Path, clean_dir: Path, remap_areas: bool = False) -> Reference:
    if not drop_dir.is_dir():  # a wrong setting or an unmounted share: say so in one line
        raise ReferenceError(
            f"drop folder {drop_dir} does not exist: set `drop_dir` in lagesbild.toml (or "
            "LAGESBILD_DROP_DIR) to the folder the exports arrive in"
        )
    folder = drop_dir / "reference"
    areas = _validity(_read(folder / "areas.csv", REFERENCE_FILES["areas"], VALIDITY), "areas.csv")
    schools = _validity(
        _read(folder / "schools.csv", REFERENCE_FILES["schools"], VALIDITY), "schools.csv"
    )
    calendar = _read(folder / "school_calendar.csv", REFERENCE_FILES["school_calendar"])
    impossible = calendar.with_row_index("line", offset=2).filter(
        pl.col("date").str.to_date("%Y-%m-%d", strict=False).is_null()
    )
    if impossible.height:  # e.g. 2025-02-30: the pattern fits, the calendar has no such day
        lines = impossible.get_column("line").head(5).to_list()
        raise ReferenceError(f"school_calendar.csv: bad date on lines {lines}")
    calendar = calendar.with_columns(
        pl.col("date").str.to_date("%Y-%m-%d"),
        pl.col("is_school_day") == "true",
        pl.col("term").replace("", None),
        pl.col("note").replace("", None),
    )
    for name, frame, key in (
        ("areas", areas, "area_code"),
        ("schools", schools, "school_unit_code"),
        ("school_calendar", calendar, "date"),
    ):
        duplicated = frame.filter(pl.col(key).is_duplicated()).get_column(key).unique()
        if duplicated.len():
            raise ReferenceError(f"{name}.csv: {key} repeated: {duplicated.head(5).to_list()}")
    orphans = schools.join(areas, on="area_code", how="anti").get_column("school_unit_code")
    if orphans.len():
        raise ReferenceError(
            f"schools.csv: schools {orphans.to_list()} point to area codes missing in areas.csv"
        )
    exceptions = read_exceptions(folder / "school_calendar_exceptions.csv", schools)
    revisions = read_revisions(folder / "area_revisions.csv", areas)
    if remap_areas and revisions.height:
        schools = remapped(schools, revisions, folder / "area_revisions.csv")
    reference = Reference(
        schools.sort("school_unit_code"),
        areas.sort("area_code"),
        calendar.sort("date"),
        exceptions,
        revisions,
    )
    out = clean_dir / "reference"
    for name in ("schools", "areas"):
        write_parquet_atomic(getattr(reference, name), out / f"{name}.parquet")
    write_parquet_atomic(reference.calendar, out / "school_calendar.parquet")
    write_parquet_atomic(exceptions, out / "school_calendar_exceptions.parquet")
    write_parquet_atomic(revisions, out / "area_revisions.parquet")
    return reference
