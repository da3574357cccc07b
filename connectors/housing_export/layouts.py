"""Housing companies' work-order export layouts declared as data (layouts.yml)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from connectors.drop_files import FileLayout, read_layouts

FIELDS_REQUIRED = ("order_id", "reported_date", "property_id", "category", "cost")
FIELDS_OPTIONAL = (
    "completed_date",
    "modified_at",
    "building",
    "entrance",
    "status",
    "credit_note_id",
)
CATEGORIES = (
    "graffiti",
    "broken_glass",
    "fire",
    "doors_and_locks",
    "other_vandalism",
    "not_vandalism",
)
# A constant order number or report date would make every row the same order or day.
FIELDS_FROM_FILE = ("order_id", "reported_date")
STATUSES = ("registered", "ordered", "in_progress", "completed", "invoiced", "cancelled")
Category = Literal[
    "graffiti", "broken_glass", "fire", "doors_and_locks", "other_vandalism", "not_vandalism"
]
Status = Literal["registered", "ordered", "in_progress", "completed", "invoiced", "cancelled"]


def normalise_label(text: str) -> str:
    """Category and status labels are matched without case and surrounding blanks."""
    return " ".join(str(text).split()).lower()


class HousingLayout(FileLayout):
    DATE_FIELDS: ClassVar[tuple[str, ...]] = ("reported_date", "completed_date", "modified_at")
    KEY_FIELDS: ClassVar[tuple[str, ...]] = ("order_id",)

    company: str = Field(pattern=r"^\S+$", description="as in reference/properties.csv")
    date_formats: list[str] = Field(default_factory=lambda: ["%Y-%m-%d"])
    datetime_formats: list[str] = Field(
        default_factory=lambda: ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
    )
    categories: dict[str, Category]
    statuses: dict[str, Status] = Field(default_factory=dict)
    costs_include_vat: bool
    vat_rate: float = Field(0.25, ge=0, lt=1)
    max_order_cost_sek: float = Field(
        1_000_000, gt=0, description="excl. VAT; a larger order is quarantined as implausible"
    )

    @model_validator(mode="after")
    def _complete(self) -> HousingLayout:
        fields = list(self.columns.values())
        known = sorted(FIELDS_REQUIRED + FIELDS_OPTIONAL)
        unknown = sorted(set(fields) - set(known))
        if unknown:
            raise ValueError(f"`columns` map to unknown fields {unknown}; known: {known}")
        unknown = sorted(set(self.defaults) - set(known))
        if unknown:
            raise ValueError(f"`defaults` names unknown fields {unknown}; known: {known}")
        fixed = sorted(set(self.defaults) & set(FIELDS_FROM_FILE))
        if fixed:
            raise ValueError(f"{fixed} must be mapped from a column (`columns`), not defaulted")
        missing = [f for f in FIELDS_REQUIRED if f not in fields and f not in self.defaults]
        if missing:
            raise ValueError(
                f"no column maps {', '.join(missing)}: map the export's column to it under "
                "`columns`, or give a value under `defaults`"
            )
        repeated = sorted({f for f in fields if fields.count(f) > 1})
        if repeated:
            raise ValueError(f"fields {repeated} are mapped from more than one column")
        if "status" in {*fields, *self.defaults} and not self.statuses:
            raise ValueError("status is mapped but statuses is empty")
        clashes = sorted(set(self.columns) & {*FIELDS_REQUIRED, *FIELDS_OPTIONAL, "reason"})
        if clashes:
            raise ValueError(f"source columns {clashes} clash with contract field names")
        for mapping in (self.categories, self.statuses):
            labels = [normalise_label(k) for k in mapping]
            if len(set(labels)) != len(labels):
                raise ValueError("two labels differ only in case or blanks")
        return self


def load_layouts(path: Path) -> dict[str, HousingLayout]:
    return read_layouts(path, HousingLayout, "housing")
