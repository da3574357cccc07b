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


def _read(path: Path, patterns: dict[str, str]) -> pl.DataFrame:
    if not path.exists():
        raise ReferenceError(
            f"reference file {path} is missing; see docs/sources/reference-data.md for its columns"
        )
    frame = pl.read_csv(path, infer_schema=False).with_columns(pl.all().fill_null(""))
    missing = [c for c in patterns if c not in frame.columns]
    if missing:
        raise ReferenceError(f"{path.name}: missing columns {missing}")
    frame = frame.select([pl.col(c).str.strip_chars() for c in patterns])
    for column, pattern in patterns.items():
        bad = frame.with_row_index("line", offset=2).filter(~pl.col(column).str.contains(pattern))
        if bad.height:
            lines = bad.get_column("line").head(5).to_list()
            raise ReferenceError(f"{path.name}: bad {column} on lines {lines}")
    return frame


def load_reference(drop_dir: Path, clean_dir: Path) -> Reference:
    folder = drop_dir / "reference"
    areas = _read(folder / "areas.csv", REFERENCE_FILES["areas"])
    schools = _read(folder / "schools.csv", REFERENCE_FILES["schools"])
    calendar = _read(folder / "school_calendar.csv", REFERENCE_FILES["school_calendar"])
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
