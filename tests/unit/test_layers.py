"""The write-audit-publish layer (flows/layers/) on a small dataset of its own: what every
dataset relies on, tested once (GX runs for real; no Prefect)."""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import pytest

from flows.layers.audit import read_audit
from flows.layers.clean import (
    Combined,
    Dataset,
    LoadResult,
    Partition,
    clean_dataset,
    separate,
    touches,
)
from flows.layers.landing import Load, land, landed_loads
from flows.layers.manifest import Manifest, partitions_of
from lagesbild.settings import Paths

ROW = "_source_row"


def test_a_manifest_landed_before_partitions_were_typed_is_read_as_it_was_meant():
    """Landing is never rewritten: the manifests of earlier versions stay readable."""
    export = Manifest.model_validate(
        {
            "source": "attendance_export", "dataset": "skola24_csv", "load_id": "L1",
            "period": "2025-09", "periods": ["2025-09", "unknown"],
            "file": "attendance/skola24/a.csv", "sha256": "0", "rows": 3,
            "extracted_at": "2025-10-01T00:00:00+00:00", "columns": [],
            "dropped_columns": [], "pseudonymised": {}, "request": {}, "release": {},
            "size": 10, "mtime_ns": 5,
        }
    )  # fmt: skip
    assert (export.partition_kind, export.partitions, export.origin) == (
        "month",
        ["2025-09"],
        "attendance/skola24/a.csv",
    )
    api = Manifest.model_validate(
        {
            "source": "ss12000", "dataset": "aggregated_attendance", "load_id": "L2",
            "period": "2025-09", "periods": ["2025-09"],
            "file": "ss12000:aggregated_attendance:2025-09-01..2025-09-02 (2 days)",
            "sha256": "0", "rows": 3, "extracted_at": "", "columns": [],
            "request": {"days": ["2025-09-01", "2025-09-02"]},
        }
    )  # fmt: skip
    assert api.file is None and api.request["days"] == ["2025-09-01", "2025-09-02"]
    assert api.origin == "ss12000:aggregated_attendance:2025-09-01..2025-09-02 (2 days)"
    housing = Manifest.model_validate(
        {
            "source": "housing_export",
            "dataset": "fast2",
            "load_id": "L3",
            "period": "2024",
            "periods": ["2024", "2025"],
            "file": "h.csv",
            "sha256": "0",
            "rows": 1,
            "extracted_at": "",
            "columns": [],
        }
    )
    assert (housing.partition_kind, housing.partitions, housing.folder_period) == (
        "year",
        ["2024", "2025"],
        "2024",
    )


def test_partitions_and_which_loads_a_backfill_window_touches():
    dates = pl.Series([date(2025, 9, 30), None, date(2025, 10, 1), date(2024, 1, 5)])
    assert partitions_of(dates, "month") == ["2024-01", "2025-09", "2025-10"]
    assert partitions_of(dates, "year") == ["2024", "2025"]

    def load(kind, partitions):
        manifest = Manifest(
            source="s", dataset="d", load_id="L", partition_kind=kind, partitions=partitions,
            sha256="0", rows=0, extracted_at="", columns=[],
        )  # fmt: skip
        return Load(manifest, None)

    september = frozenset({"2025-09"})
    assert touches(load("month", ["2025-08", "2025-09"]), september)
    assert not touches(load("month", ["2025-10"]), september)
    assert touches(load("year", ["2025"]), september)
    assert not touches(load("year", ["2024"]), september)


def test_separate_keeps_the_first_of_a_key_and_quarantines_conflicts_with_their_values():
    typed = pl.DataFrame(
        {
            ROW: [1, 2, 3, 4, 5],
            "raw": ["a", "a", "b", "a!", "c"],
            "key": ["k1", "k1", "k2", "k1", "k3"],
            "value": [1, 1, 2, 9, None],
            "reason": [None, None, None, None, "invalid_number"],
        }
    )
    distinct, quarantine, repeats = separate(typed, [ROW, "raw"], ["key", "value"], ["key"], "L1")
    assert distinct.rows() == [(1, "k1", 1), (3, "k2", 2)]
    assert repeats == 1  # row 2 repeats row 1 exactly
    assert quarantine.rows() == [
        (4, "a!", "conflicting_duplicate", "L1"),
        (5, "c", "invalid_number", "L1"),
    ]


def test_a_load_result_keeps_its_quarantined_rows_but_not_the_export_they_came_from():
    export = pl.DataFrame(
        {ROW: range(1, 200_001), "pupil": [f"pupil-{i:020d}" for i in range(200_000)]}
    )

    def text_bytes(frame: pl.DataFrame) -> int:  # what the column's string views point into
        column = frame.get_column("pupil").to_arrow(compat_level=pl.CompatLevel.newest())
        return column.get_total_buffer_size()

    rejected = export.filter(pl.col(ROW) % 1000 == 0).with_columns(reason=pl.lit("bad"))
    assert text_bytes(rejected) > 5_000_000  # the filter shares the whole export's text
    result = LoadResult(export.clear(), rejected, 200_000, 199_800, 0, ["2025-09"])
    assert result.quarantine.equals(rejected)
    assert text_bytes(result.quarantine) < 20_000  # 200 rows of 26 characters, and views
    # rows moved to the quarantine later (flows/layers/clean.py, _reject) are copied too
    late = pl.DataFrame({ROW: range(7, 200_001, 500)})  # 400 rows
    moved = export.join(late, on=ROW).with_columns(reason=pl.lit("late"))
    grown = pl.concat([result.quarantine, moved]).sort(ROW)
    assert text_bytes(grown) > 5_000_000
    result.quarantine = grown
    assert result.quarantined == 600 and text_bytes(result.quarantine) < 40_000


SUITE = {
    "name": "toy_values",
    "expectations": [
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "value", "min_value": 0},
            "severity": "critical",
        }
    ],
}
LOADS_SUITE = {
    "name": "toy_loads",
    "expectations": [
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {
                "column": "quarantine_share",
                "min_value": 0,
                "max_value": {"$PARAMETER": "max_quarantine_share"},
            },
            "severity": "critical",
        }
    ],
}


class Toy(Dataset):
    """Rows `key, value, source` per month; the strongest source wins a key; a value the
    combine step sees twice across loads is a duplicate of the first load."""

    name = folder = "toy"
    suite = "toy.json"
    loads_suite = "toy_loads.json"
    precedence_key = ("key",)

    def __init__(self, landing):
        self.landing = landing
        self.precedence = ["api", "export"]

    def loads(self):
        return landed_loads(self.landing, "toy")

    def split(self, load):
        raw = load.read()
        bad = pl.col("value").is_null()
        rows = raw.filter(~bad).select(
            "key", "value", "month", "source", ROW, load_id=pl.lit(load.load_id)
        )
        quarantine = raw.filter(bad).select(
            pl.all(), reason=pl.lit("missing_value"), load_id=pl.lit(load.load_id)
        )
        months = sorted(set(rows["month"]))
        return LoadResult(rows, quarantine, raw.height, rows.height, 0, months)

    def in_period(self, rows, period):
        return rows.filter(pl.col("month") == period)

    def combine(self, period, rows):
        rejected = rows.filter(pl.col("value") == 13).select("load_id", ROW, reason=pl.lit("13"))
        kept = rows.filter(pl.col("value") != 13).sort("key", "load_id")
        first = kept.select(pl.col("key").is_first_distinct()).to_series()
        repeats = kept.filter(~first).group_by("load_id").len()
        frame = kept.filter(first).select("key", "value", "source")
        return Combined(
            [Partition(f"period={period}/part-0.parquet", frame, {})],
            rejected=rejected,
            duplicates=dict(repeats.iter_rows()),
        )


def _land(root, load_id, source, rows):
    frame = pl.DataFrame(rows, schema=["key", "value", "month"], orient="row").with_columns(
        source=pl.lit(source), **{ROW: pl.int_range(1, len(rows) + 1, dtype=pl.Int64)}
    )
    months = sorted({r[2] for r in rows})
    manifest = Manifest(
        source="toy", dataset=source, load_id=load_id, file=f"{load_id}.csv",
        partition_kind="month", partitions=months, sha256=load_id, rows=frame.height,
        extracted_at="", columns=frame.columns,
    )  # fmt: skip
    land(root, manifest, frame)


@pytest.fixture
def layer(tmp_path):
    suites = tmp_path / "expectations"
    suites.mkdir()
    (suites / "toy.json").write_text(json.dumps(SUITE))
    (suites / "toy_loads.json").write_text(json.dumps(LOADS_SUITE))
    paths = Paths(tmp_path / "data", tmp_path / "drop")

    def run(run_id, rebuild=frozenset()):
        return clean_dataset(Toy(paths.landing), paths, suites, run_id, 0.5, rebuild)

    return paths, run


def test_accounting_precedence_rejections_and_duplicates_in_one_audit_row_per_load(layer):
    paths, run = layer
    export = [
        ("a", 1, "2025-09"),
        ("b", 2, "2025-09"),
        ("c", None, "2025-09"),
        ("d", 13, "2025-10"),
    ]
    _land(paths.landing, "L1", "export", export)
    _land(
        paths.landing, "L2", "api", [("a", 5, "2025-09"), ("e", 3, "2025-09"), ("e", 3, "2025-09")]
    )
    outcome = run("r1")
    audit = read_audit(paths.audit).sort("load_id")
    # L1: c quarantined (missing), d rejected by combine (13), a superseded by the api
    # L2: the second e is a duplicate of the first
    assert audit.select(
        "load_id", "rows_received", "rows_clean", "rows_quarantined", "rows_duplicate",
        "rows_superseded", "periods", "status", "gate",
    ).rows() == [
        ("L1", 4, 2, 2, 0, 1, "2025-09,2025-10", "cleaned", "passed"),
        ("L2", 3, 2, 0, 1, 0, "2025-09", "cleaned", "passed"),
    ]  # fmt: skip
    september = pl.read_parquet(paths.clean / "toy/period=2025-09/part-0.parquet")
    assert september.sort("key").rows() == [("a", 5, "api"), ("b", 2, "export"), ("e", 3, "api")]
    quarantine = pl.read_parquet(paths.quarantine / "toy/period=2025-09/load_id=L1/*.parquet")
    assert quarantine.select("key", "reason").rows() == [("c", "missing_value"), ("d", "13")]
    assert outcome.partitions_replaced == ["toy/period=2025-09", "toy/period=2025-10"]
    assert run("r2").loads == []  # nothing pending: nothing cleaned, nothing accounted again


def test_a_critical_failure_replaces_nothing_and_the_next_run_picks_the_load_up(layer):
    paths, run = layer
    _land(paths.landing, "L1", "export", [("a", 1, "2025-09")])
    run("r1")
    served = (paths.clean / "toy/period=2025-09/part-0.parquet").read_bytes()
    _land(paths.landing, "L2", "export", [("z", -1, "2025-09")])  # fails the suite
    outcome = run("r2")
    assert outcome.gate_failed and outcome.partitions_replaced == []
    assert (paths.clean / "toy/period=2025-09/part-0.parquet").read_bytes() == served
    assert not list(paths.clean.glob(".toy-staging-*"))
    assert [r["status"] for r in outcome.loads] == ["gate_failed"]
    assert [r["load_id"] for r in run("r3").loads] == ["L2"]  # still pending


def test_a_mostly_rejected_load_fails_the_loads_gate_and_only_it_is_marked_failed(layer):
    paths, run = layer
    _land(paths.landing, "L1", "export", [("a", 1, "2025-09")])
    _land(paths.landing, "L2", "export", [("b", None, "2025-09"), ("c", 2, "2025-09"),
                                          ("d", None, "2025-09")])  # fmt: skip
    outcome = run("r1")
    assert outcome.gate_failed
    assert {r["load_id"]: r["gate"] for r in outcome.loads} == {"L1": "passed", "L2": "failed"}


def test_a_backfill_window_cleans_and_accounts_the_loads_it_touches_again(layer):
    paths, run = layer
    _land(paths.landing, "L1", "export", [("a", 1, "2025-09")])
    _land(paths.landing, "L2", "export", [("b", 1, "2025-10")])
    run("r1")
    outcome = run("r2", frozenset({"2025-10"}))
    assert [r["load_id"] for r in outcome.loads] == ["L2"]
    assert outcome.partitions_replaced == ["toy/period=2025-10"]
