"""Retention: exactly the pupil-level landing and clean data before the kept school years go,
each with an audit row; nothing before the marts are published; a full refresh is refused."""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

from flows.attendance import retention
from flows.layers.audit import read_audit
from flows.layers.landing import land
from flows.layers.manifest import Manifest
from flows.warehouse import dbt
from lagesbild.cli import app
from lagesbild.settings import Settings

TODAY = date(2026, 3, 10)  # school year 2025/26: with 2 years kept, from 2024-07-01


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("LAGESBILD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LAGESBILD_DROP_DIR", str(tmp_path / "drop"))
    monkeypatch.setenv("LAGESBILD_RETENTION_SCHOOL_YEARS", "2")
    paths = Settings().paths
    frame = pl.DataFrame({"pupil_key": ["k1"], "minutes": [40]})
    landed = [
        ("attendance_export", "skola24_csv", "E1", ["2023-09", "2023-10"]),  # deleted
        ("attendance_export", "ist_xlsx", "E2", ["2024-06"]),  # deleted
        ("attendance_export", "skola24_csv", "E3", ["2024-06", "2024-08"]),  # kept: 2024-08
        ("attendance_export", "skola24_csv", "E4", ["2025-09"]),  # kept
        ("ss12000", "aggregated_attendance", "A1", ["2024-05"]),  # deleted
        ("ss12000", "aggregated_attendance", "A2", ["2024-07"]),  # kept
        ("ss12000", "persons", "P1", ["2023-09"]),  # kept: a lookup for later days
    ]
    for source, dataset, load_id, months in landed:
        manifest = Manifest(
            source=source, dataset=dataset, load_id=load_id, file=f"{load_id}.csv",
            partition_kind="month", partitions=months, sha256=load_id, rows=1,
            extracted_at="", columns=frame.columns,
        )  # fmt: skip
        land(paths.landing, manifest, frame)
    for month in ("2023-09", "2023-10", "2024-05", "2024-06", "2024-07", "2025-09"):
        folder = paths.clean / "attendance" / f"period={month}"
        folder.mkdir(parents=True)
        frame.write_parquet(folder / "part-0.parquet")
    (paths.clean / "attendance" / "source_days").mkdir()  # school x day, no pupil: kept
    frame.write_parquet(paths.clean / "attendance" / "source_days" / "period=2023-09.parquet")
    return paths


def _publish(paths) -> None:
    """What a completed publish leaves: served marts built from the current clean files."""
    paths.warehouse.mkdir(parents=True, exist_ok=True)
    duckdb.connect(str(paths.marts_db)).close()
    duckdb.connect(str(paths.work_db)).close()
    settings = Settings()
    dbt.record_served(settings, dbt.input_state(settings, TODAY))


def _files(paths) -> list[str]:
    return sorted(
        str(p.relative_to(paths.data))
        for root in (paths.landing, paths.clean)
        for p in root.rglob("*.parquet")
    )


def test_cutoff_keeps_the_latest_school_years():
    assert retention.cutoff(date(2026, 3, 10), 2) == date(2024, 7, 1)
    assert retention.cutoff(date(2026, 7, 1), 1) == date(2026, 7, 1)
    assert retention.cutoff(date(2026, 6, 30), 1) == date(2025, 7, 1)


def test_nothing_is_deleted_before_the_marts_are_published(data):
    before = _files(data)
    assert retention.apply_retention(Settings(), TODAY, "r1") == []
    assert _files(data) == before
    _publish(data)
    (data.clean / "attendance" / "period=2025-09" / "part-1.parquet").write_bytes(b"x")
    # a clean file the served marts were not built from: not published yet
    assert retention.apply_retention(Settings(), TODAY, "r1") == []


def test_off_by_default(data, monkeypatch):
    monkeypatch.delenv("LAGESBILD_RETENTION_SCHOOL_YEARS")
    _publish(data)
    assert Settings().retention_school_years is None
    assert retention.apply_retention(Settings(), TODAY, "r1") == []


def test_old_pupil_level_data_is_deleted_and_audited(data):
    _publish(data)
    deleted = retention.apply_retention(Settings(), TODAY, "r1")
    assert sorted(deleted) == [
        "clean/attendance/period=2023-09",
        "clean/attendance/period=2023-10",
        "clean/attendance/period=2024-05",
        "clean/attendance/period=2024-06",
        "landing/attendance_export/ist_xlsx/period=2024-06/load_id=E2",
        "landing/attendance_export/skola24_csv/period=2023-09/load_id=E1",
        "landing/ss12000/aggregated_attendance/period=2024-05/load_id=A1",
    ]
    assert _files(data) == [
        "clean/attendance/period=2024-07/part-0.parquet",
        "clean/attendance/period=2025-09/part-0.parquet",
        "clean/attendance/source_days/period=2023-09.parquet",
        "landing/attendance_export/skola24_csv/period=2024-06/load_id=E3/data.parquet",
        "landing/attendance_export/skola24_csv/period=2025-09/load_id=E4/data.parquet",
        "landing/ss12000/aggregated_attendance/period=2024-07/load_id=A2/data.parquet",
        "landing/ss12000/persons/period=2023-09/load_id=P1/data.parquet",
    ]
    audit = read_audit(data.audit).sort("load_id")
    assert audit.select("load_id", "status", "periods").rows() == [
        ("A1", "deleted_by_retention", "2024-05"),
        ("E1", "deleted_by_retention", "2023-09,2023-10"),
        ("E2", "deleted_by_retention", "2024-06"),
        ("clean/attendance/period=2023-09", "deleted_by_retention", "2023-09"),
        ("clean/attendance/period=2023-10", "deleted_by_retention", "2023-10"),
        ("clean/attendance/period=2024-05", "deleted_by_retention", "2024-05"),
        ("clean/attendance/period=2024-06", "deleted_by_retention", "2024-06"),
    ]
    assert set(audit["reason"]) == {"retention_school_years=2: before 2024-07"}
    # the deleted loads' files are not landed again from the drop folder
    assert audit["sha256"].to_list()[:3] == ["A1", "E1", "E2"]
    assert retention.retired_months(data) == ["2023-09", "2023-10", "2024-05", "2024-06"]

    # the deleted periods are not missing for `lagesbild verify`
    result = CliRunner().invoke(app, ["verify"])
    assert result.exit_code == 0, result.output
    assert "Checked 4 landed loads" in result.output

    # a full refresh would rebuild the marts without the retired months: refused
    with pytest.raises(dbt.DbtFailed, match=r"4 months \(2023-09..2024-06\)"):
        dbt.dbt_build(Settings(), TODAY, full_refresh=True)


def test_the_latest_clean_month_and_its_loads_stay_however_old(data):
    _publish(data)
    deleted = retention.apply_retention(Settings(), date(2030, 1, 1), "r1")
    assert len(deleted) == 10  # 5 clean months, 5 loads
    assert _files(data) == [
        "clean/attendance/period=2025-09/part-0.parquet",
        "clean/attendance/source_days/period=2023-09.parquet",
        "landing/attendance_export/skola24_csv/period=2025-09/load_id=E4/data.parquet",
        "landing/ss12000/persons/period=2023-09/load_id=P1/data.parquet",
    ]
