"""Export layouts declared as data (layouts.yml): parsing and checking them."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from connectors.drop_files import FileLayout, read_layouts
from connectors.drop_files import LayoutError as LayoutError  # re-exported for callers

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
# Fields that must come from a column of the file: a constant would make every row the same
# pupil or day.
FIELDS_FROM_FILE = ("personal_id", "date")


class Layout(FileLayout):
    DATE_FIELDS: ClassVar[tuple[str, ...]] = ("date",)
    TIME_FIELDS: ClassVar[tuple[str, ...]] = ("lesson_start",)
    KEY_FIELDS: ClassVar[tuple[str, ...]] = ("personal_id",)

    date_formats: list[str] = Field(default_factory=lambda: ["%Y-%m-%d", "%Y%m%d"])
    absence_types: dict[str, Literal["none", "valid", "invalid", "other"]] = Field(
        default_factory=dict
    )
    # One split-minutes field may be derived: the remainder of offered minutes after the
    # other three (e.g. other absence when the export has no column for it).
    derived: dict[str, Literal["remainder"]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _complete(self) -> Layout:
        known = set(FIELDS_ALWAYS + FIELDS_TYPED_ABSENCE + FIELDS_SPLIT_MINUTES)
        mapped = list(self.columns.values())
        unknown = sorted(set(mapped) - known)
        if unknown:
            raise ValueError(f"`columns` map to unknown fields {unknown}; known: {sorted(known)}")
        repeated = sorted({f for f in mapped if mapped.count(f) > 1})
        if repeated:
            raise ValueError(f"`columns` map more than one column to {repeated}")
        for name, where in ((self.defaults, "defaults"), (self.derived, "derived")):
            unknown = sorted(set(name) - known)
            if unknown:
                raise ValueError(f"`{where}` names unknown fields {unknown}")
        fixed = sorted(set(self.defaults) & set(FIELDS_FROM_FILE))
        if fixed:
            raise ValueError(f"{fixed} must be mapped from a column (`columns`), not defaulted")
        derived = set(self.derived)
        if derived - set(FIELDS_SPLIT_MINUTES) or len(derived) > 1:
            raise ValueError(
                "`derived` may name one of " + ", ".join(FIELDS_SPLIT_MINUTES) + " (remainder)"
            )
        both = sorted(derived & (set(mapped) | set(self.defaults)))
        if both:
            raise ValueError(f"{both} is derived and also mapped or defaulted: choose one")
        fields = set(mapped) | set(self.defaults) | derived
        missing = [f for f in FIELDS_ALWAYS if f not in fields]
        if missing:
            raise ValueError(
                f"no column maps {', '.join(missing)}: map the export's column to it under "
                "`columns`, or give a value under `defaults`"
            )
        typed = set(FIELDS_TYPED_ABSENCE) & fields
        split = set(FIELDS_SPLIT_MINUTES) & fields
        if (typed and split) or not (typed or split):
            raise ValueError(
                "map either absence_minutes + absence_type, or all of "
                + ", ".join(FIELDS_SPLIT_MINUTES)
                + " (one of them may be `derived: {other_absence_minutes: remainder}` or "
                "have a value under `defaults`, e.g. `other_absence_minutes: 0`)"
            )
        if typed and len(typed) < 2:
            raise ValueError("map both absence_minutes and absence_type")
        if split and len(split) < 4:
            absent = [f for f in FIELDS_SPLIT_MINUTES if f not in split]
            raise ValueError(
                f"no column maps {', '.join(absent)}: map it, give it a value under "
                "`defaults` (e.g. 0), or derive it (`derived: {" + absent[0] + ": remainder}`)"
            )
        if typed and not self.absence_types:
            raise ValueError("absence_type is mapped but `absence_types` is empty")
        clashes = sorted(set(self.columns) & (known | {"pupil_key", "pupil_id_kind", "reason"}))
        if clashes:
            raise ValueError(f"source columns {clashes} clash with contract field names")
        return self

    @property
    def has_typed_absence(self) -> bool:
        fields = set(self.columns.values()) | set(self.defaults)
        return "absence_type" in fields or "absence_minutes" in fields


def load_layouts(path: Path) -> dict[str, Layout]:
    return read_layouts(path, Layout, "attendance")
