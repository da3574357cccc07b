"""Cleaning rules of statistics releases: status from Kolada's publication dates, and the
release history (revisions kept, unchanged repeats counted as duplicates)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

from flows.statistics.catalogue import load_catalogue
from flows.statistics.rules import KEY, history, kolada_release

CATALOGUE = load_catalogue(Path(__file__).resolve().parents[2] / "catalogue/indicators.yml", "1299")
META = {"U07452": {"prel_publication_date": "2026-03-15", "publication_date": "2026-09-01",
                   "publ_period": "2025"}}  # fmt: skip


def kolada_rows(*rows) -> pl.DataFrame:
    return pl.DataFrame(
        [dict(zip(["kpi", "area", "period", "gender", "value", "is_deleted"], r, strict=True))
         | {"source_status": "", "count": 1} for r in rows],
        schema_overrides={"value": pl.Float64},
    )  # fmt: skip


def release(rows, release_id, as_of=date(2026, 4, 1)):
    fetched = datetime(2026, 4, 1, tzinfo=UTC)
    return kolada_release(rows, META, as_of, release_id, fetched, CATALOGUE)


def test_status_follows_the_publication_dates():
    rows = kolada_rows(("U07452", "1299", 2025, "T", 900.0, False),
                       ("U07452", "1299", 2024, "T", 950.0, False),
                       ("N99999", "1299", 2024, "T", 1.0, False))  # fmt: skip
    early = release(rows, "r1")
    assert early.rows.select("period", "status", "published_on").sort("period").rows() == [
        (2024, "final", date(2026, 9, 1)),
        (2025, "preliminary", date(2026, 3, 15)),
    ]
    assert early.quarantine["reason"].to_list() == ["kpi_not_in_catalogue"]
    assert early.received == 3
    late = release(rows, "r1", as_of=date(2026, 9, 1))
    assert set(late.rows["status"]) == {"final"}


def test_history_keeps_changes_and_counts_repeats():
    first = release(
        kolada_rows(
            ("U07452", "1299", 2024, "T", 950.0, False), ("U07452", "0012", 2024, "T", 800.0, False)
        ),
        "r1",
    ).rows
    second = release(kolada_rows(("U07452", "1299", 2024, "T", 940.0, False),  # revised
                                 ("U07452", "0012", 2024, "T", 800.0, False),  # repeated
                                 ("U07452", "0012", 2023, "T", None, True)), "r2").rows  # fmt: skip
    kept, duplicates = history([first, second], KEY)
    assert kept.select("area_code", "period", "value", "is_deleted", "release_id").sort(
        "release_id", "area_code", "period"
    ).rows() == [
        ("0012", 2024, 800.0, False, "r1"),
        ("1299", 2024, 950.0, False, "r1"),
        ("0012", 2023, None, True, "r2"),
        ("1299", 2024, 940.0, False, "r2"),
    ]
    assert duplicates.select("area_code", "release_id").rows() == [("0012", "r2")]


def test_the_indicator_gate_blocks_impossible_values():
    from flows.layers import gate
    from lagesbild.settings import PROJECT_ROOT

    good = release(kolada_rows(("U07452", "1299", 2024, "T", 950.0, False)), "r1").rows
    frame = pl.concat([good, good.with_columns(sex=pl.lit("X"), period=pl.lit(2023, pl.Int64))])
    frame = frame.with_columns(percent_value=pl.Series([None, 120.0]))
    result = gate.validate_frame(
        frame,
        PROJECT_ROOT / "expectations" / "indicator_values.json",
        {"indicator_ids": [i.id for i in CATALOGUE.indicators]},
        partition="statistics",
    )
    failed = sorted((o.expectation, o.column) for o in result.critical_failures)
    assert failed == [
        ("expect_column_values_to_be_between", "percent_value"),
        ("expect_column_values_to_be_in_set", "sex"),
    ]
    assert result.status == "failed"
