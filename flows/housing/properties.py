"""The property register (`<drop>/reference/properties.csv`): which area each housing
company's property lies in and how many apartments it has. A property's area decides its
work orders' area; the register is checked strictly, an error stops the run naming the line.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from flows.layers.reference import ReferenceError

PROPERTIES_FILE = "properties.csv"


def load_properties(drop_dir: Path, areas: pl.DataFrame, companies: dict[str, str]) -> pl.DataFrame:
    """The property register (company, property_id → area_code, apartments), checked.

    `companies` maps each company with landed exports to one of its layouts (for messages).
    """
    path = drop_dir / "reference" / PROPERTIES_FILE
    if not path.exists():
        raise ReferenceError(
            f"{path} is missing: housing exports of {sorted(companies)} need the property "
            "register (company,property_id,property_name,area_code,apartments); see "
            "docs/sources/housing-exports.md"
        )
    frame = pl.read_csv(path, infer_schema=False).with_columns(pl.all().fill_null(""))
    columns = ["company", "property_id", "area_code", "apartments"]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ReferenceError(f"{PROPERTIES_FILE}: missing columns {missing}")
    frame = frame.select(pl.col(columns).str.strip_chars()).with_row_index("line", offset=2)
    bad = frame.filter(
        (pl.col("company") == "")
        | (pl.col("property_id") == "")
        | ~pl.col("apartments").str.contains(r"^\d+$")
    )
    if bad.height:
        raise ReferenceError(
            f"{PROPERTIES_FILE}: empty company/property_id or apartments not a whole number "
            f"on lines {bad['line'].head(5).to_list()}"
        )
    repeated = frame.filter(pl.struct("company", "property_id").is_duplicated())
    if repeated.height:
        raise ReferenceError(
            f"{PROPERTIES_FILE}: company + property_id repeated on lines "
            f"{repeated['line'].head(5).to_list()}"
        )
    unknown = frame.join(areas.select("area_code"), on="area_code", how="anti")
    if unknown.height:
        raise ReferenceError(
            f"{PROPERTIES_FILE}: area codes missing in areas.csv on lines "
            f"{unknown['line'].head(5).to_list()}"
        )
    registered = set(frame["company"].to_list())
    for company, layout in sorted(companies.items()):
        if company not in registered:
            raise ReferenceError(
                f"{PROPERTIES_FILE} has no properties of company '{company}' (layout "
                f"'{layout}'): add the company's property register, one row per property "
                "with its area code and number of apartments"
            )
    properties = frame.drop("line").with_columns(pl.col("apartments").cast(pl.Int64))
    return properties.sort("company", "property_id")
