"""Reference data (schools, areas, school calendar): CSV in the drop folder → clean parquet.

Reference files are replaced as a whole on every run. They are small and checked strictly:
an error here stops the run with a message naming the file and the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    "municipality_code": "4 digits (e.g. 1299)",
    "school_unit_code": "8 digits (skolenhetskod)",
    "date": "YYYY-MM-DD",
    "school_year": "e.g. 2025/26",
    "term": "HT2025, VT2026 or empty",
    "is_school_day": "true or false",
    "day_type": "school_day, weekend, break or holiday",
}


class ReferenceError(ValueError):
    """A reference file is missing or malformed."""


@dataclass
class Reference:
    schools: pl.DataFrame
    areas: pl.DataFrame
    calendar: pl.DataFrame

    @cached_property
    def school_codes(self) -> set[str]:
        return set(self.schools.get_column("school_unit_code").to_list())

    @cached_property
    def school_days(self) -> set:
        return set(self.calendar.filter("is_school_day").get_column("date").to_list())


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


def _read(path: Path, patterns: dict[str, str]) -> pl.DataFrame:
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
    frame = frame.select([pl.col(c).str.strip_chars() for c in patterns])
    for column, pattern in patterns.items():
        bad = frame.with_row_index("line", offset=2).filter(~pl.col(column).str.contains(pattern))
        if bad.height:
            lines = bad.get_column("line").head(5).to_list()
            expected = EXPECTED.get(column, "a value")
            raise ReferenceError(f"{path.name}: bad {column} on lines {lines}; expected {expected}")
    return frame


def load_reference(drop_dir: Path, clean_dir: Path) -> Reference:
    if not drop_dir.is_dir():  # a wrong setting or an unmounted share: say so in one line
        raise ReferenceError(
            f"drop folder {drop_dir} does not exist: set `drop_dir` in lagesbild.toml (or "
            "LAGESBILD_DROP_DIR) to the folder the exports arrive in"
        )
    folder = drop_dir / "reference"
    areas = _read(folder / "areas.csv", REFERENCE_FILES["areas"])
    schools = _read(folder / "schools.csv", REFERENCE_FILES["schools"])
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
    reference = Reference(
        schools.sort("school_unit_code"), areas.sort("area_code"), calendar.sort("date")
    )
    out = clean_dir / "reference"
    for name in ("schools", "areas"):
        write_parquet_atomic(getattr(reference, name), out / f"{name}.parquet")
    write_parquet_atomic(reference.calendar, out / "school_calendar.parquet")
    return reference
