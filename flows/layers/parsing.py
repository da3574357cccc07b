"""Parsing the text of Swedish exports: numbers with decimal comma, dates, amounts in kronor.

Vectorised polars expressions over text columns; a value that does not parse becomes null,
and the dataset's rules quarantine the row with a reason.
"""

from __future__ import annotations

from datetime import date

import polars as pl


def parse_number(expr: pl.Expr) -> pl.Expr:
    """'1 234,5', '1\u00a0234', '12,5', '45', '45.0', '1.234,5', '1,234.5' → float; anything
    else (text, '1e5', 'inf', '12,50,0') → null. With both ',' and '.' the last one is the
    decimal mark; blanks, non-breaking and thin spaces and apostrophes group thousands."""
    text = expr.str.replace_all(r"[\s\u00a0\u202f']", "")
    comma_last = text.str.find(",", literal=True) > text.str.find(".", literal=True)
    both = text.str.contains(",", literal=True) & text.str.contains(".", literal=True)
    text = (
        pl.when(both & comma_last)
        .then(text.str.replace_all(".", "", literal=True))
        .when(both)
        .then(text.str.replace_all(",", "", literal=True))
        .otherwise(text)
        .str.replace(",", ".", literal=True)
    )
    valid = text.str.contains(r"^[-+]?\d+(\.\d+)?$")
    return pl.when(valid).then(text.cast(pl.Float64, strict=False))


EXCEL_FORMAT = "excel"  # a date_formats entry: an Excel day number (1900 date system)


def parse_date(expr: pl.Expr, formats: list[str]) -> pl.Expr:
    """Text → date by the first of `formats` that fits exactly. 'excel' in `formats` reads a
    day number such as '45901' (a date column saved without date formatting, e.g. in a CSV
    written by Excel) in the 1900 date system; workbooks' own number cells are converted by
    the reader with the workbook's date system."""
    # Excel date cells arrive as '2025-09-01 00:00:00': drop a midnight time part.
    day = expr.str.replace(r"[ T]00:00(:00(\.0+)?)?$", "")
    parsed = [
        day.str.strptime(pl.Date, f, strict=False, exact=True) for f in formats if f != EXCEL_FORMAT
    ]
    if EXCEL_FORMAT in formats:
        serial = day.str.extract(r"^(\d{5})(?:\.0+)?$").cast(pl.Int32, strict=False)
        parsed.append(
            pl.when(serial.is_between(61, 2_958_465)).then(
                pl.lit(date(1899, 12, 30)) + pl.duration(days=serial)
            )
        )
    return pl.coalesce(parsed)


def parse_amount_ore(expr: pl.Expr) -> pl.Expr:
    """'1 234,50 kr', '-590,60', '1.234,50', '1,234.50', '1234.5', '12 345:-' → öre (Int64);
    else null (also beyond ±10^11 SEK, which no work order costs and Int64 öre cannot hold)."""
    number = parse_number(expr.str.replace_all(r"(?i)\s*(kr|sek|:-)\.?\s*$", ""))
    return pl.when(number.abs() < 1e11).then((number * 100).round(0).cast(pl.Int64))


def parse_datetime(expr: pl.Expr, formats: list[str]) -> pl.Expr:
    # Excel datetime cells arrive as '2025-03-04 13:22:00' (maybe with fractions of seconds).
    text = expr.str.replace(r"\.\d+$", "")
    formats = [*formats, "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]
    return pl.coalesce(
        [text.str.strptime(pl.Datetime("us"), f, strict=False, exact=True) for f in formats]
    )
