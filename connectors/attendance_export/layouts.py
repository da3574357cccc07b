"""Export layouts declared as data (layouts.yml): parsing and checking them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, model_validator

from connectors.drop_files import LayoutError as LayoutError  # re-exported for callers
from connectors.drop_files import read_layouts

FIELDS_ALWAYS = (
    "personal_id",
    "school_unit_code",
    "grade",
    "date",
    "lesson_start",
    "offered_minutes",
)
FIELDS_TYPED_ABSENCE = ("absence_minutes", "absence_type")
FIELDS_SPLIT_MINUTES = (
    "attended_minutes",
    "valid_absence_minutes",
    "invalid_absence_minutes",
    "other_absence_minutes",
)
ABSENCE_CATEGORIES = ("none", "valid", "invalid", "other")


class Layout(BaseModel, extra="forbid"):
    name: str = ""
    description: str = ""
    files: str
    format: Literal["csv", "xlsx"]
    encoding: Literal["cp1252", "utf-8", "latin-1"] = "utf-8"
    separator: str = ";"
    sheet: str | None = None
    date_formats: list[str] = ["%Y-%m-%d", "%Y%m%d"]
    columns: dict[str, str]
    ignore: list[str] = []
    absence_types: dict[str, Literal["none", "valid", "invalid", "other"]] = {}

    @model_validator(mode="after")
    def _complete(self) -> Layout:
        fields = set(self.columns.values())
        missing = [f for f in FIELDS_ALWAYS if f not in fields]
        typed = set(FIELDS_TYPED_ABSENCE) <= fields
        split = set(FIELDS_SPLIT_MINUTES) <= fields
        if missing:
            raise ValueError(f"columns map no source column to {', '.join(missing)}")
        if typed == split:
            raise ValueError(
                "map either absence_minutes + absence_type, or all of "
                + ", ".join(FIELDS_SPLIT_MINUTES)
            )
        if typed and not self.absence_types:
            raise ValueError("absence_type is mapped but absence_types is empty")
        known = set(FIELDS_ALWAYS + FIELDS_TYPED_ABSENCE + FIELDS_SPLIT_MINUTES)
        unknown = sorted(fields - known)
        if unknown:
            raise ValueError(f"unknown target fields {unknown}; known: {sorted(known)}")
        clashes = sorted(set(self.columns) & (known | {"pupil_key", "pupil_id_kind", "reason"}))
        if clashes:
            raise ValueError(f"source columns {clashes} clash with contract field names")
        return self

    @property
    def has_typed_absence(self) -> bool:
        return "absence_type" in self.columns.values()

    def source_column(self, field: str) -> str:
        return next(src for src, target in self.columns.items() if target == field)


def load_layouts(path: Path) -> dict[str, Layout]:
    return read_layouts(path, Layout, "attendance")
