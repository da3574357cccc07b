"""Marts equality: the limit's and the peer's marts against the pipeline's published ones."""

from __future__ import annotations

from pathlib import Path

import polars as pl

# The attendance marts every implementation builds.
MARTS = (
    "mart_attendance_school_grade_month",
    "mart_attendance_area_term",
    "mart_problematic_absence_area_term",
)


def difference(expected: pl.DataFrame, actual: pl.DataFrame, cast: bool = False) -> str | None:
    """None when both tables hold the same rows (any order, NULLs equal, exact values).

    Columns must have the same names in the same order and the same types; with `cast`, the
    actual columns are first cast (strictly) to the expected types, for producers whose types
    differ only in width (pandas writes int64 where DuckDB has a decimal, say).
    """
    if expected.columns != actual.columns:
        return f"columns {actual.columns}, expected {expected.columns}"
    if cast:
        try:
            actual = actual.cast(dict(expected.schema), strict=True)
        except pl.exceptions.PolarsError as exc:
            return f"cannot cast to the published types ({type(exc).__name__})"
    elif actual.schema != expected.schema:
        changed = [c for c in expected.columns if expected.schema[c] != actual.schema[c]]
        return "types differ: " + ", ".join(
            f"{c} {actual.schema[c]} (expected {expected.schema[c]})" for c in changed
        )
    if actual.height != expected.height:
        return f"{actual.height:,} rows, expected {expected.height:,}"
    ordered_expected = expected.sort(pl.all(), nulls_last=True)
    ordered_actual = actual.sort(pl.all(), nulls_last=True)
    if ordered_expected.equals(ordered_actual):
        return None
    missing = ordered_expected.join(
        ordered_actual, on=expected.columns, how="anti", nulls_equal=True
    )
    extra = ordered_actual.join(ordered_expected, on=expected.columns, how="anti", nulls_equal=True)
    return (
        f"{missing.height:,} published rows not produced, {extra.height:,} rows not published; "
        f"first missing: {missing.head(1).to_dicts()}, first extra: {extra.head(1).to_dicts()}"
    )


def compare_folders(published: Path, produced: Path, cast: bool = False) -> dict[str, str | None]:
    """Each mart of `produced/<mart>.parquet` against `published/<mart>.parquet`."""
    result = {}
    for mart in MARTS:
        path = produced / f"{mart}.parquet"
        if not path.exists():
            result[mart] = "not produced"
            continue
        result[mart] = difference(
            pl.read_parquet(published / f"{mart}.parquet"), pl.read_parquet(path), cast
        )
    return result


def row_counts(folder: Path) -> dict[str, int]:
    return {
        m: pl.scan_parquet(folder / f"{m}.parquet").select(pl.len()).collect().item()
        for m in MARTS
        if (folder / f"{m}.parquet").exists()
    }
