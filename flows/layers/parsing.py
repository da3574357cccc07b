"""Parsing the text of Swedish exports: numbers with decimal comma, dates, amounts in kronor.

Vectorised polars expressions over text columns; a value that does not parse becomes null,
and the dataset's rules quarantine the row with a reason.
"""

from __future__ import annotations

import polars as pl


def parse_number(expr: pl.Expr) -> pl.Expr:
    """'1 234,5', '12,5', '45', '45.0' → float; anything else → null."""
    cleaned = expr.str.replace_all(r"[\s\u00a0]", "").str.replace(",", ".", literal=True)
    return pl.when(cleaned == "").then(None).otherwise(cleaned).cast(pl.Float64, strict=False)


def parse_date(expr: pl.Expr, formats: list[str]) -> pl.Expr:
    # Excel date cells arrive as '2025-09-01 00:00:00': drop a midnight time part.
    day = expr.str.replace(r"[ T]00:00(:00(\.0+)?)?$", "")
    return pl.coalesce([day.str.strptime(pl.Date, f, strict=False, exact=True) for f in formats])


def parse_amount_ore(expr: pl.Expr) -> pl.Expr:
    """'1 234,50 kr', '-590,60', '1.234,50', '1234.5', '12 345:-' → öre (Int64); else null."""
    text = expr.str.replace_all(r"(?i)\s*(kr|sek|:-)\.?\s*$", "").str.replace_all(r"[\s\u00a0]", "")
    both = text.str.contains(",", literal=True) & text.str.contains(".", literal=True)
    text = pl.when(both).then(text.str.replace_all(".", "", literal=True)).otherwise(text)
    text = text.str.replace(",", ".", literal=True)
    valid = text.str.contains(r"^-?\d+(\.\d+)?$")
    return pl.when(valid).then((text.cast(pl.Float64, strict=False) * 100).round(0).cast(pl.Int64))


def parse_datetime(expr: pl.Expr, formats: list[str]) -> pl.Expr:
    # Excel datetime cells arrive as '2025-03-04 13:22:00' (maybe with fractions of seconds).
    text = expr.str.replace(r"\.\d+$", "")
    formats = [*formats, "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]
    return pl.coalesce(
        [text.str.strptime(pl.Datetime("us"), f, strict=False, exact=True) for f in formats]
    )
