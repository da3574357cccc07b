"""Cleaning of housing companies' work-order exports (polars): landed rows → one row per order.

Steps, each a pure function so tests can call them directly:

1. `type_rows`: map a layout's columns onto the work-order contract, parse Swedish amounts
   and dates, map the company's categories and statuses, look the property up in the
   register, convert costs to öre excluding VAT, and give every unusable row a `reason`
   (first failing check wins).
2. `split_load`: per load, clean rows (order versions and credit notes), quarantined rows
   (original values + reason) and exact duplicates.
3. `work_orders`: the rows of every load → one row per company × order. The latest version
   of an order wins (by `modified_at` when the layout has it, then by load, then by row), so
   a re-export never counts twice and a corrected cost replaces the old one. Credit notes
   (latest version of each credit-note number) are added to the order's cost: a correction,
   not an error. A credit note without any version of its order, or credit notes that would
   take an order below zero, are rejected with a reason (the order keeps its cost).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from connectors.housing_export.layouts import HousingLayout, normalise_label
from connectors.housing_export.resources import ROW_NUMBER
from flows.layers.clean import LoadResult, separate
from flows.layers.manifest import partitions_of
from flows.layers.parsing import parse_amount_ore, parse_date, parse_datetime

DATASET = "housing_work_orders"
ORDER_KEY = ("company", "order_id")
VANDALISM = ("graffiti", "broken_glass", "fire", "doors_and_locks", "other_vandalism")

# Order matters: a row gets the first reason that applies.
REASONS = (
    "missing_order_id",
    "invalid_date",
    "invalid_amount",
    "unmapped_category",
    "unmapped_status",
    "unknown_property",
    "negative_total",
    "positive_credit_note",
    "implausible_amount",
    "completed_before_reported",
    "conflicting_duplicate",
    "credit_note_without_order",  # decided over all loads (work_orders)
)

_ORDER_FIELDS = {  # what an order and each of its versions have alike
    "reported_date": pl.Date,
    "completed_date": pl.Date,
    "modified_at": pl.Datetime("us"),
    "property_id": pl.String,
    "building": pl.String,
    "entrance": pl.String,
    "area_code": pl.String,
    "category": pl.String,
}

VERSION_SCHEMA = {
    "company": pl.String,
    "order_id": pl.String,
    "credit_note_id": pl.String,
    **_ORDER_FIELDS,
    "status": pl.String,
    "cost_excl_vat_ore": pl.Int64,
    "source": pl.String,
    "load_id": pl.String,
    ROW_NUMBER: pl.Int64,
}

CLEAN_SCHEMA = {
    "company": pl.String,
    "order_id": pl.String,
    **_ORDER_FIELDS,
    "is_vandalism": pl.Boolean,
    "status": pl.String,
    "cost_excl_vat_ore": pl.Int64,
    "credit_notes": pl.Int32,
    "versions": pl.Int32,
    "source": pl.String,
    "load_id": pl.String,
}


def _text(column: str | None) -> pl.Expr:
    if column is None:
        return pl.lit("", dtype=pl.String)
    return pl.col(column).cast(pl.String).str.strip_chars()


def _label(expr: pl.Expr) -> pl.Expr:
    """The vectorised twin of `normalise_label`: one blank between words, lower case."""
    return expr.str.replace_all(r"\s+", " ").str.strip_chars().str.to_lowercase()


def _mapping(labels: dict[str, str], target: str) -> pl.DataFrame:
    return pl.DataFrame(
        {f"_{target}_label": [normalise_label(k) for k in labels], target: list(labels.values())},
        schema={f"_{target}_label": pl.String, target: pl.String},
    )


def type_rows(rows: pl.DataFrame, layout: HousingLayout, properties: pl.DataFrame) -> pl.DataFrame:
    """Add typed work-order fields and `reason` (null when usable) to landed rows."""
    raw = {
        field: _text(layout.source_column(field))
        for field in (
            "order_id",
            "reported_date",
            "completed_date",
            "modified_at",
            "property_id",
            "building",
            "entrance",
            "category",
            "status",
            "credit_note_id",
            "cost",
        )
    }
    amount = parse_amount_ore(raw["cost"])
    if layout.costs_include_vat:  # exact to the öre: round once, after the division
        amount = (amount / (1 + layout.vat_rate)).round(0).cast(pl.Int64)
    label = _label(pl.col("_category_text"))
    status_label = _label(pl.col("_status_text"))
    frame = rows.with_columns(
        company=pl.lit(layout.company),
        # Excel may hold a numeric order number as a number cell: '100034.0'
        order_id=raw["order_id"].str.replace(r"^(\d+)\.0$", "${1}"),
        credit_note_id=pl.when(raw["credit_note_id"] != "").then(raw["credit_note_id"]),
        reported_date=parse_date(raw["reported_date"], layout.date_formats),
        completed_date=parse_date(raw["completed_date"], layout.date_formats),
        modified_at=parse_datetime(raw["modified_at"], layout.datetime_formats),
        property_id=raw["property_id"],
        building=pl.when(raw["building"] != "").then(raw["building"]),
        entrance=pl.when(raw["entrance"] != "").then(raw["entrance"]),
        cost_excl_vat_ore=amount,
        _reported_text=raw["reported_date"],
        _completed_text=raw["completed_date"],
        _modified_text=raw["modified_at"],
        _category_text=raw["category"],
        _status_text=raw["status"],
    ).with_columns(_category_label=label, _status_label=status_label)
    frame = frame.join(
        _mapping(layout.categories, "category"), on="_category_label", how="left"
    ).join(_mapping(layout.statuses, "status"), on="_status_label", how="left")
    register = properties.filter(pl.col("company") == layout.company).select(
        "property_id", "area_code"
    )
    frame = frame.join(register, on="property_id", how="left")

    is_credit = pl.col("credit_note_id").is_not_null()
    has_status = layout.source_column("status") is not None
    max_ore = round(layout.max_order_cost_sek * 100)
    checks = [
        ("missing_order_id", pl.col("order_id") == ""),
        (
            "invalid_date",
            pl.col("reported_date").is_null()
            | ((pl.col("_completed_text") != "") & pl.col("completed_date").is_null())
            | ((pl.col("_modified_text") != "") & pl.col("modified_at").is_null()),
        ),
        ("invalid_amount", pl.col("cost_excl_vat_ore").is_null()),
        ("unmapped_category", pl.col("category").is_null()),
        ("unmapped_status", pl.lit(has_status) & pl.col("status").is_null()),
        ("unknown_property", pl.col("area_code").is_null()),
        ("negative_total", ~is_credit & (pl.col("cost_excl_vat_ore") < 0)),
        ("positive_credit_note", is_credit & (pl.col("cost_excl_vat_ore") > 0)),
        ("implausible_amount", pl.col("cost_excl_vat_ore").abs() > max_ore),
        ("completed_before_reported", pl.col("completed_date") < pl.col("reported_date")),
    ]
    reason = pl.lit(None, dtype=pl.String)
    for name, failed in reversed(checks):
        reason = pl.when(failed.fill_null(False)).then(pl.lit(name)).otherwise(reason)
    return frame.with_columns(reason=reason)


VERSION_KEY = ["company", "order_id", "credit_note_id", "modified_at"]


def split_load(
    rows: pl.DataFrame, layout: HousingLayout, properties: pl.DataFrame, load_id: str
) -> LoadResult:
    typed = type_rows(rows, layout, properties).sort(ROW_NUMBER)
    values = [c for c in VERSION_SCHEMA if c not in ("source", "load_id", ROW_NUMBER)]
    distinct, quarantine, repeats = separate(typed, rows.columns, values, VERSION_KEY, load_id)
    versions = distinct.with_columns(source=pl.lit(layout.name), load_id=pl.lit(load_id))
    versions = versions.select(list(VERSION_SCHEMA)).cast(VERSION_SCHEMA)
    years = years_of(versions.get_column("reported_date"))
    return LoadResult(versions, quarantine, rows.height, versions.height, repeats, years)


@dataclass
class Orders:
    orders: pl.DataFrame  # the clean grain, CLEAN_SCHEMA
    rejected: pl.DataFrame  # credit-note rows rejected over all loads: load_id, row, reason


def _latest(frame: pl.DataFrame, key: list[str]) -> pl.DataFrame:
    order = ["modified_at", "load_id", ROW_NUMBER]
    return frame.sort(order, nulls_last=False).group_by(key, maintain_order=True).last()


def work_orders(versions: pl.DataFrame) -> Orders:
    """Every load's clean rows → one row per company × order (see the module docstring)."""
    versions = versions.cast(VERSION_SCHEMA)
    is_credit = pl.col("credit_note_id").is_not_null()
    orders = _latest(versions.filter(~is_credit), list(ORDER_KEY))
    counts = (
        versions.filter(~is_credit)
        .group_by(ORDER_KEY)
        .agg(versions=pl.struct("modified_at", "cost_excl_vat_ore", "status").n_unique())
    )
    credits = _latest(versions.filter(is_credit), [*ORDER_KEY, "credit_note_id"])
    orphan = credits.join(orders, on=ORDER_KEY, how="anti").select(*ORDER_KEY, "credit_note_id")
    credited = (
        credits.join(orders.select(ORDER_KEY), on=ORDER_KEY, how="semi")
        .group_by(ORDER_KEY)
        .agg(credit_ore=pl.col("cost_excl_vat_ore").sum(), credit_notes=pl.len())
    )
    orders = orders.join(credited, on=ORDER_KEY, how="left").with_columns(
        pl.col("credit_ore").fill_null(0), pl.col("credit_notes").fill_null(0)
    )
    # Credit notes that would take an order below zero are rejected; the order keeps its cost.
    below_zero = pl.col("cost_excl_vat_ore") + pl.col("credit_ore") < 0
    over = credits.join(
        orders.filter(below_zero).select(ORDER_KEY), on=ORDER_KEY, how="semi"
    ).select(*ORDER_KEY, "credit_note_id")
    # Every row (in any load) of a rejected credit note goes to quarantine with the reason.
    rejected = pl.concat(
        [
            versions.join(orphan, on=[*ORDER_KEY, "credit_note_id"], how="semi").with_columns(
                reason=pl.lit("credit_note_without_order")
            ),
            versions.join(over, on=[*ORDER_KEY, "credit_note_id"], how="semi").with_columns(
                reason=pl.lit("negative_total")
            ),
        ]
    ).select("load_id", ROW_NUMBER, "reason")
    orders = orders.with_columns(
        cost_excl_vat_ore=pl.when(below_zero)
        .then(pl.col("cost_excl_vat_ore"))
        .otherwise(pl.col("cost_excl_vat_ore") + pl.col("credit_ore")),
        credit_notes=pl.when(below_zero).then(0).otherwise(pl.col("credit_notes")),
    )
    orders = orders.join(counts, on=ORDER_KEY, how="left").with_columns(
        is_vandalism=pl.col("category").is_in(VANDALISM)
    )
    return Orders(
        orders.select(list(CLEAN_SCHEMA)).cast(CLEAN_SCHEMA).sort(ORDER_KEY),
        rejected,
    )


def years_of(dates: pl.Series) -> list[str]:
    return partitions_of(dates, "year")
