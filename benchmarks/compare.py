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


def linked(frames: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """The frames after the publish's linked suppression (flows/disclosure.py).

    The producers implement the marts' own rules (primary, band, secondary) independently;
    the publish then withholds more cells over all marts together. The attendance marts are
    linked only to each other, so the step on these three alone gives what it gives on all
    the marts.
    """
    import duckdb

    from flows import disclosure

    con = duckdb.connect()
    try:
        for name, frame in frames.items():
            con.register("frame", frame)
            con.execute(f'create table "{name}" as select * from frame')
            con.unregister("frame")
        disclosure.protect(con)
        return {name: con.table(f'"{name}"').pl() for name in frames}
    finally:
        con.close()


def compare_folders(published: Path, produced: Path, cast: bool = False) -> dict[str, str | None]:
    """Each mart of `produced/<mart>.parquet`, after linked suppression, against
    `published/<mart>.parquet`."""
    result = {}
    frames = {}
    for mart in MARTS:
        path = produced / f"{mart}.parquet"
        if path.exists():
            frames[mart] = pl.read_parquet(path)
        else:
            result[mart] = "not produced"
    frames = linked(frames)
    for mart, frame in frames.items():
        result[mart] = difference(pl.read_parquet(published / f"{mart}.parquet"), frame, cast)
    return {mart: result[mart] for mart in MARTS}


def row_counts(folder: Path) -> dict[str, int]:
    return {
        m: pl.scan_parquet(folder / f"{m}.parquet").select(pl.len()).collect().item()
        for m in MARTS
        if (folder / f"{m}.parquet").exists()
    }
