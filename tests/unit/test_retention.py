"""Retention: exactly the pupil-level landing, clean and quarantine data before the kept school
years go, each with an audit row; nothing before the marts are published; a full refresh is
refused."""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

from flows.attendance import retention, ss12000
from flows.layers.audit import append_audit, read_audit
from flows.layers.landing import land
from flows.layers.manifest import Manifest
from flows.warehouse import dbt
from lagesbild.cli import app
from lagesbild.settings import Settings

TODAY = date(2026, 3, 10)  # school year 2025/26: with 2 years kept, from 2024-07-01


def _persons(*rows: tuple[str, str | None, str]) -> pl.DataFrame:
    """(person, the end of their one enrolment (None: open), meta.modified)."""
    enrolment = pl.Struct(
        {"organisation_id": pl.String, "school_year": pl.Int32, "school_type": pl.String,
         "start_date": pl.String, "end_date": pl.String}
    )  # fmt: skip
    return pl.DataFrame(
        [
            {
                "person_id": person,
                "pupil_key": f"key-{person}",
                "pupil_id_kind": "personnummer",
                "enrolments": [
                    {
                        "organisation_id": "o1",
                        "school_year": 7,
                        "school_type": "GR",
                        "start_date": "2021-08-17",
                        "end_date": end,
                    }
                ],
                "meta_modified": f"{modified}T08:00:00Z",
            }
            for person, end, modified in rows
        ],
        schema={
            "person_id": pl.String,
            "pupil_key": pl.String,
            "pupil_id_kind": pl.String,
            "enrolments": pl.List(enrolment),
            "meta_modified": pl.String,
        },
    )


def _absences(*rows: tuple[str, str | None, str]) -> pl.DataFrame:
    """(absence, its last day (None: open, no end), meta.modified)."""
    return pl.DataFrame(
        [
            {
                "absence_id": absence,
                "student_id": "s1",
                "organisation_id": "o1",
                "type": "Sjukdom",
                "start_time": f"{end or modified}T08:00:00",
                "end_time": end and f"{end}T12:00:00",
                "meta_modified": f"{modified}T08:00:00Z",
            }
            for absence, end, modified in rows
        ]
    )


# Persons, landed under the month of the run that fetched them. a, d: still enrolled after
# the cutoff (d until 2025-06-15); c, e, f, g, h: left before it.
PERSONS = [
    ("P0", "2023-08", _persons(("g", "2023-06-10", "2023-08-20"))),  # deleted: g left
    # deleted: a's later version is in P3, c left
    ("P1", "2023-09", _persons(("a", None, "2023-09-01"), ("c", "2023-12-20", "2023-09-01"))),
    ("P2", "2024-02", _persons(("d", "2025-06-15", "2024-02-01"), ("e", None, "2024-02-01"))),
    ("P3", "2024-05", _persons(("a", None, "2024-05-01"))),  # kept: a's latest version
    # kept: without it, e's older version in P2 (still enrolled) would be e's latest
    ("P4", "2024-06", _persons(("e", "2024-01-31", "2024-06-01"))),
    ("P5", "2024-06", _persons(("f", "2022-06-01", "2024-06-20"))),  # kept: the watermark
    ("P6", "2025-09", _persons(("h", "2022-06-01", "2024-06-10"))),  # kept: landed later
]
ABSENCES = [
    ("B0", "2024-03", _absences(("x0", None, "2024-03-04"))),  # kept: an open absence
    ("B1", "2024-03", _absences(("x1", "2024-03-05", "2024-03-06"))),  # deleted
    # kept: an absence announced ahead, on a kept day
    (
        "B2",
        "2024-06",
        _absences(("x2", "2024-03-05", "2024-06-02"), ("x3", "2024-08-26", "2024-06-02")),
    ),
    ("B3", "2024-06", _absences(("x4", "2024-06-12", "2024-06-30"))),  # kept: the watermark
]


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("LAGESBILD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LAGESBILD_DROP_DIR", str(tmp_path / "drop"))
    monkeypatch.setenv("LAGESBILD_RETENTION_SCHOOL_YEARS", "2")
    paths = Settings().paths
    frame = pl.DataFrame({"pupil_key": ["k1"], "minutes": [40]})
    landed = [
        ("attendance_export", "skola24_csv", "E1", ["2023-09", "2023-10"], frame),  # deleted
        ("attendance_export", "ist_xlsx", "E2", ["2024-06"], frame),  # deleted
        ("attendance_export", "skola24_csv", "E3", ["2024-06", "2024-08"], frame),  # kept: 2024-08
        ("attendance_export", "skola24_csv", "E4", ["2025-09"], frame),  # kept
        ("ss12000", "aggregated_attendance", "A1", ["2024-05"], frame),  # deleted
        ("ss12000", "aggregated_attendance", "A2", ["2024-07"], frame),  # kept
        ("ss12000", "organisations", "O1", ["2023-09"], frame),  # kept: no pupil
        *[("ss12000", "persons", load_id, [month], rows) for load_id, month, rows in PERSONS],
        *[("ss12000", "absences", load_id, [month], rows) for load_id, month, rows in ABSENCES],
    ]
    for source, dataset, load_id, months, rows in landed:
        manifest = Manifest(
            source=source, dataset=dataset, load_id=load_id, file=f"{load_id}.csv",
            partition_kind="month", partitions=months, sha256=load_id, rows=rows.height,
            extracted_at="", columns=rows.columns,
        )  # fmt: skip
        land(paths.landing, manifest, rows)
    # quarantine: of loads deleted now (E1, A1), of one deleted by an earlier run (E0), of a
    # kept load (E4) and of another dataset's load
    for dataset, month, load_id in [
        ("attendance", "2023-09", "E1"),
        ("attendance", "2024-05", "A1"),
        ("attendance", "2022-09", "E0"),
        ("attendance", "2025-09", "E4"),
        ("housing", "2023-09", "H1"),
    ]:
        folder = paths.quarantine / dataset / f"period={month}" / f"load_id={load_id}"
        folder.mkdir(parents=True)
        frame.write_parquet(folder / "quarantine.parquet")
    append_audit(paths.audit, [{"source": "attendance_export", "dataset": "skola24_csv",
                                "load_id": "E0", "status": "deleted_by_retention"}])  # fmt: skip
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
        for root in (paths.landing, paths.clean, paths.quarantine)
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


def _lookups(paths) -> list[dict]:
    """The persons the SS 12000 mapping reads: each person's latest version."""
    lookups = ss12000.Lookups(paths.landing, ["GR"])
    return lookups.pupils.join(lookups.enrolments, on="person_id").sort("person_id").to_dicts()


def test_old_pupil_level_data_is_deleted_and_audited(data):
    _publish(data)
    persons_before = _lookups(data)
    deleted = retention.apply_retention(Settings(), TODAY, "r1")
    assert sorted(deleted) == [
        "clean/attendance/period=2023-09",
        "clean/attendance/period=2023-10",
        "clean/attendance/period=2024-05",
        "clean/attendance/period=2024-06",
        "landing/attendance_export/ist_xlsx/period=2024-06/load_id=E2",
        "landing/attendance_export/skola24_csv/period=2023-09/load_id=E1",
        "landing/ss12000/absences/period=2024-03/load_id=B1",
        "landing/ss12000/aggregated_attendance/period=2024-05/load_id=A1",
        "landing/ss12000/persons/period=2023-08/load_id=P0",
        "landing/ss12000/persons/period=2023-09/load_id=P1",
        "quarantine/attendance/period=2022-09/load_id=E0",
        "quarantine/attendance/period=2023-09/load_id=E1",
        "quarantine/attendance/period=2024-05/load_id=A1",
    ]
    assert _files(data) == [
        "clean/attendance/period=2024-07/part-0.parquet",
        "clean/attendance/period=2025-09/part-0.parquet",
        "clean/attendance/source_days/period=2023-09.parquet",
        "landing/attendance_export/skola24_csv/period=2024-06/load_id=E3/data.parquet",
        "landing/attendance_export/skola24_csv/period=2025-09/load_id=E4/data.parquet",
        "landing/ss12000/absences/period=2024-03/load_id=B0/data.parquet",
        "landing/ss12000/absences/period=2024-06/load_id=B2/data.parquet",
        "landing/ss12000/absences/period=2024-06/load_id=B3/data.parquet",
        "landing/ss12000/aggregated_attendance/period=2024-07/load_id=A2/data.parquet",
        "landing/ss12000/organisations/period=2023-09/load_id=O1/data.parquet",
        "landing/ss12000/persons/period=2024-02/load_id=P2/data.parquet",
        "landing/ss12000/persons/period=2024-05/load_id=P3/data.parquet",
        "landing/ss12000/persons/period=2024-06/load_id=P4/data.parquet",
        "landing/ss12000/persons/period=2024-06/load_id=P5/data.parquet",
        "landing/ss12000/persons/period=2025-09/load_id=P6/data.parquet",
        "quarantine/attendance/period=2025-09/load_id=E4/quarantine.parquet",
        "quarantine/housing/period=2023-09/load_id=H1/quarantine.parquet",
    ]
    # every person still landed maps as before: only c and g (left, one version each) are gone
    assert _lookups(data) == [p for p in persons_before if p["person_id"] not in ("c", "g")]
    audit = read_audit(data.audit).filter(pl.col("run_id") == "r1").sort("load_id")
    assert audit.select("source", "load_id", "periods").rows() == [
        ("ss12000", "A1", "2024-05"),
        ("ss12000", "B1", "2024-03"),
        ("attendance_export", "E1", "2023-09,2023-10"),
        ("attendance_export", "E2", "2024-06"),
        ("ss12000", "P0", "2023-08"),
        ("ss12000", "P1", "2023-09"),
        ("clean", "clean/attendance/period=2023-09", "2023-09"),
        ("clean", "clean/attendance/period=2023-10", "2023-10"),
        ("clean", "clean/attendance/period=2024-05", "2024-05"),
        ("clean", "clean/attendance/period=2024-06", "2024-06"),
        ("quarantine", "quarantine/attendance/period=2022-09/load_id=E0", "2022-09"),
        ("quarantine", "quarantine/attendance/period=2023-09/load_id=E1", "2023-09"),
        ("quarantine", "quarantine/attendance/period=2024-05/load_id=A1", "2024-05"),
    ]
    assert set(audit["status"]) == {"deleted_by_retention"}
    assert set(audit["reason"]) == {"retention_school_years=2: before 2024-07"}
    # the deleted loads' files are not landed again from the drop folder
    assert audit["sha256"].to_list()[:6] == ["A1", "B1", "E1", "E2", "P0", "P1"]
    assert retention.retired_months(data) == ["2023-09", "2023-10", "2024-05", "2024-06"]
    assert retention.apply_retention(Settings(), TODAY, "r2") == []  # nothing more to delete

    # the deleted periods are not missing for `lagesbild verify`
    result = CliRunner().invoke(app, ["verify"])
    assert result.exit_code == 0, result.output
    assert "Checked 12 landed loads" in result.output

    # a full refresh would rebuild the marts without the retired months: refused
    with pytest.raises(dbt.DbtFailed, match=r"4 months \(2023-09..2024-06\)"):
        dbt.dbt_build(Settings(), TODAY, full_refresh=True)


def test_the_latest_clean_month_and_its_loads_stay_however_old(data):
    _publish(data)
    deleted = retention.apply_retention(Settings(), date(2030, 1, 1), "r1")
    # 5 clean months, 5 attendance loads, 2 absences and 5 persons loads, 3 quarantine folders;
    # the open absence's load stays
    assert len(deleted) == 20
    assert _files(data) == [
        "clean/attendance/period=2025-09/part-0.parquet",
        "clean/attendance/source_days/period=2023-09.parquet",
        "landing/attendance_export/skola24_csv/period=2025-09/load_id=E4/data.parquet",
        "landing/ss12000/absences/period=2024-03/load_id=B0/data.parquet",
        "landing/ss12000/absences/period=2024-06/load_id=B3/data.parquet",
        "landing/ss12000/organisations/period=2023-09/load_id=O1/data.parquet",
        "landing/ss12000/persons/period=2024-05/load_id=P3/data.parquet",
        "landing/ss12000/persons/period=2024-06/load_id=P5/data.parquet",
        "quarantine/attendance/period=2025-09/load_id=E4/quarantine.parquet",
        "quarantine/housing/period=2023-09/load_id=H1/quarantine.parquet",
    ]
