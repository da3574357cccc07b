"""Housing companies' work-order export layouts declared as data (layouts.yml)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from connectors.drop_files import read_layouts

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
STATUSES = ("registered", "ordered", "in_progress", "completed", "invoiced", "cancelled")
Category = Literal[
    "graffiti", "broken_glass", "fire", "doors_and_locks", "other_vandalism", "not_vandalism"
]
Status = Literal["registered", "ordered", "in_progress", "completed", "invoiced", "cancelled"]


def normalise_label(text: str) -> str:
    """Category and status labels are matched without case and surrounding blanks."""
    return " ".join(str(text).split()).lower()


class HousingLayout(BaseModel, extra="forbid"):
    name: str = ""
    company: str = Field(pattern=r"^\S+$", description="as in reference/properties.csv")
    description: str = ""
    files: str
    format: Literal["csv", "xlsx"]
    encoding: Literal["cp1252", "utf-8", "latin-1"] = "utf-8"
    separator: str = ";"
    sheet: str | None = None
    date_formats: list[str] = ["%Y-%m-%d"]
    datetime_formats: list[str] = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
    columns: dict[str, str]
    ignore: list[str] = []
    categories: dict[str, Category]
    statuses: dict[str, Status] = {}
    costs_include_vat: bool
    vat_rate: float = Field(0.25, ge=0, lt=1)
    max_order_cost_sek: float = Field(
        1_000_000, gt=0, description="excl. VAT; a larger order is quarantined as implausible"
    )

    @model_validator(mode="after")
    def _complete(self) -> HousingLayout:
        fields = list(self.columns.values())
        missing = [f for f in FIELDS_REQUIRED if f not in fields]
        if missing:
            raise ValueError(f"columns map no source column to {', '.join(missing)}")
        unknown = sorted(set(fields) - set(FIELDS_REQUIRED + FIELDS_OPTIONAL))
        if unknown:
            known = sorted(FIELDS_REQUIRED + FIELDS_OPTIONAL)
            raise ValueError(f"unknown target fields {unknown}; known: {known}")
        repeated = sorted({f for f in fields if fields.count(f) > 1})
        if repeated:
            raise ValueError(f"fields {repeated} are mapped from more than one column")
        if "status" in fields and not self.statuses:
            raise ValueError("status is mapped but statuses is empty")
        clashes = sorted(set(self.columns) & {*FIELDS_REQUIRED, *FIELDS_OPTIONAL, "reason"})
        if clashes:
            raise ValueError(f"source columns {clashes} clash with contract field names")
        for mapping in (self.categories, self.statuses):
            labels = [normalise_label(k) for k in mapping]
            if len(set(labels)) != len(labels):
                raise ValueError("two labels differ only in case or blanks")
        return self

    def source_column(self, field: str) -> str | None:
        return next((src for src, target in self.columns.items() if target == field), None)


def load_layouts(path: Path) -> dict[str, HousingLayout]:
    return read_layouts(path, HousingLayout, "housing")
