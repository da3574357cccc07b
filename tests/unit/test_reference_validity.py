"""Per-school calendar exceptions and reference validity (flows/layers/reference.py) and the
quarantine reasons they give attendance rows (flows/attendance/rules.py)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from connectors.attendance_export.resources import read_export
from flows.attendance.rules import split_load
from flows.layers.reference import ReferenceError, load_reference
from tests.unit.test_attendance_export import KEY, LAYOUTS, PUPIL, export_file, write_csv

AREAS = (
    "area_code,area_name,area_type,municipality_code,municipality_name,valid_from,valid_to\n"
    "1299C0010,Centrum,DeSO,1299,Ekdala,,2025-12-31\n"
    "1299C0011,Centrum norra,DeSO,1299,Ekdala,2026-01-01,\n"
)
SCHOOLS = (
    "school_unit_code,school_name,school_type,grades,area_code,municipality_code,"
    "attendance_system,valid_to\n"
    "12345678,Ängsskolan,GR,F-9,1299C0010,1299,skola24,\n"
    "87654321,Björkskolan,GR,F-9,1299C0010,1299,skola24,2025-09-02\n"
)
CALENDAR = "date,school_year,term,is_school_day,day_type,note\n" + "".join(
    f"2025-09-0{d},2025/26,HT2025,{'true' if d < 6 else 'false'},"
    f"{'school_day' if d < 6 else 'weekend'},\n"
    for d in range(1, 8)
)
EXCEPTIONS = (
    "school_unit_code,date,day_type,note\n"
    "12345678,2025-09-03,study_day,Studiedag\n"
    "12345678,2025-09-06,make_up_day,Lördagsskola\n"
)


def reference_at(tmp_path: Path, **files: str):
    folder = tmp_path / "drop/reference"
    folder.mkdir(parents=True, exist_ok=True)
    defaults = {"areas": AREAS, "schools": SCHOOLS, "school_calendar": CALENDAR}
    for name, text in {**defaults, **files}.items():
        (folder / f"{name}.csv").write_text(text, encoding="utf-8")
    return load_reference(tmp_path / "drop", tmp_path / "clean")


def test_exceptions_and_validity_are_read_and_written_beside_the_reference(tmp_path):
    reference = reference_at(tmp_path, school_calendar_exceptions=EXCEPTIONS)
    assert reference.exceptions.rows() == [
        ("12345678", date(2025, 9, 3), "study_day", False, "Studiedag"),
        ("12345678", date(2025, 9, 6), "make_up_day", True, "Lördagsskola"),
    ]
    # the gate's school days: the municipality's five, and the make-up Saturday
    assert sorted(reference.school_days) == [date(2025, 9, d) for d in (1, 2, 3, 4, 5, 6)]
    assert reference.school_validity.rows() == [("87654321", None, date(2025, 9, 2))]
    assert reference.areas.select("area_code", "valid_from", "valid_to").rows() == [
        ("1299C0010", None, date(2025, 12, 31)),
        ("1299C0011", date(2026, 1, 1), None),
    ]
    written = pl.read_parquet(tmp_path / "clean/reference/school_calendar_exceptions.parquet")
    assert written.equals(reference.exceptions)


def test_without_the_optional_file_and_columns_nothing_changes(tmp_path):
    plain_schools = "\n".join(line.rsplit(",", 1)[0] for line in SCHOOLS.splitlines()) + "\n"
    reference = reference_at(tmp_path, schools=plain_schools)
    assert reference.exceptions.is_empty() and reference.school_validity.is_empty()
    assert len(reference.school_days) == 5


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "school_calendar_exceptions",
            "school_unit_code,date,day_type,note\n12345678,2025-09-03,studiedag,\n",
            "school_calendar_exceptions.csv: bad day_type on lines [2]; expected study_day, "
            "closed or make_up_day",
        ),
        (
            "school_calendar_exceptions",
            "school_unit_code,date,day_type,note\n11111111,2025-09-03,closed,\n",
            "school_calendar_exceptions.csv: school_unit_code on lines [2] is not in schools.csv",
        ),
        (
            "school_calendar_exceptions",
            "school_unit_code,date,day_type,note\n12345678,2025-09-31,closed,\n",
            "school_calendar_exceptions.csv: bad date on lines [2]; no such day",
        ),
        (
            "school_calendar_exceptions",
            "school_unit_code,date,day_type,note\n12345678,2025-09-03,closed,\n"
            "12345678,2025-09-03,study_day,\n",
            "school_calendar_exceptions.csv: a school and date repeated (2 lines)",
        ),
        (
            "schools",
            SCHOOLS.replace("2025-09-02", "2.9.2025"),
            "schools.csv: bad valid_to on lines [3]; expected YYYY-MM-DD or empty",
        ),
        (
            "areas",
            AREAS.replace("2026-01-01", "2027-01-01").replace(
                ",,2025-12-31", ",2026-06-01,2025-12-31"
            ),
            "areas.csv: valid_to before valid_from on lines [2]",
        ),
    ],
)
def test_a_bad_exception_or_validity_is_one_clear_error(tmp_path, name, text, message):
    with pytest.raises(ReferenceError) as error:
        reference_at(tmp_path, **{name: text})
    assert str(error.value).startswith(message), str(error.value)


def test_a_lesson_on_a_schools_day_off_or_after_it_closed_is_quarantined(tmp_path):
    reference = reference_at(tmp_path, school_calendar_exceptions=EXCEPTIONS)
    lines = [
        f"{PUPIL};N;{school};S;4;4A;2025-09-0{day};08:10;45;0;"
        for school, day in [
            ("12345678", 1),  # a school day
            ("12345678", 3),  # its study day
            ("12345678", 6),  # its make-up Saturday: a school day for it
            ("87654321", 2),  # the closed school's last day: history stays clean
            ("87654321", 3),  # after it closed
            ("87654321", 4),
        ]
    ]
    write_csv(tmp_path / "attendance/skola24/a.csv", lines)
    batch = read_export(export_file(tmp_path, "a.csv", "skola24_csv"), KEY)
    result = split_load(
        batch.rows,
        LAYOUTS["skola24_csv"],
        reference.school_codes,
        "L1",
        date(2025, 9, 30),
        reference.days_off,
        reference.school_validity,
    )
    assert (result.received, result.clean, result.quarantined) == (6, 3, 3)
    assert result.rows.select("school_unit_code", "date").rows() == [
        ("12345678", date(2025, 9, 1)),
        ("12345678", date(2025, 9, 6)),
        ("87654321", date(2025, 9, 2)),
    ]
    assert result.quarantine.group_by("reason").len().sort("reason").rows() == [
        ("not_a_school_day_for_school", 1),
        ("school_not_open_on_date", 2),
    ]


REVISIONS = "old_area_code,new_area_code,revision\n1299C0010,1299C0011,DeSO 2025\n"


def test_an_area_revision_keeps_past_geography_unless_remapping_is_asked(tmp_path):
    kept = reference_at(tmp_path, area_revisions=REVISIONS)
    assert kept.revisions.rows() == [("1299C0010", "1299C0011", "DeSO 2025")]
    assert kept.schools.select("school_unit_code", "area_code").rows() == [
        ("12345678", "1299C0010"),
        ("87654321", "1299C0010"),
    ]
    folder = tmp_path / "drop/reference"
    moved = load_reference(folder.parent, tmp_path / "clean", remap_areas=True)
    assert moved.schools.get_column("area_code").to_list() == ["1299C0011", "1299C0011"]
    written = pl.read_parquet(tmp_path / "clean/reference/schools.parquet")
    assert written.get_column("area_code").to_list() == ["1299C0011", "1299C0011"]


def test_a_chain_of_revisions_is_followed_and_a_split_is_not_remapped(tmp_path):
    areas = AREAS + "1299C0012,Centrum öst,DeSO,1299,Ekdala,2030-01-01,\n"
    chain = REVISIONS + "1299C0011,1299C0012,DeSO 2030\n"
    reference_at(tmp_path, areas=areas, area_revisions=chain)
    drop = tmp_path / "drop"
    moved = load_reference(drop, tmp_path / "clean", remap_areas=True)
    assert set(moved.schools.get_column("area_code")) == {"1299C0012"}
    split = REVISIONS + "1299C0010,1299C0012,DeSO 2025\n"
    (drop / "reference/area_revisions.csv").write_text(split, encoding="utf-8")
    assert load_reference(drop, tmp_path / "clean").revisions.height == 2  # kept: fine
    with pytest.raises(ReferenceError, match=r"areas \['1299C0010'\] were split in several"):
        load_reference(drop, tmp_path / "clean", remap_areas=True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "old_area_code,new_area_code,revision\n1299C0099,1299C0011,DeSO 2025\n",
            "area_revisions.csv: old_area_code on lines [2] is not in areas.csv",
        ),
        (
            "old_area_code,new_area_code,revision\n1299C0010,1299C0010,DeSO 2025\n",
            "area_revisions.csv: an area mapped to itself or twice on lines [2]",
        ),
        (
            "old_area_code,new_area_code,revision\n1299C0010,C0011,DeSO 2025\n",
            "area_revisions.csv: bad new_area_code on lines [2]; expected an area code",
        ),
    ],
)
def test_a_bad_area_revision_is_one_clear_error(tmp_path, text, message):
    with pytest.raises(ReferenceError) as error:
        reference_at(tmp_path, area_revisions=text)
    assert str(error.value).startswith(message), str(error.value)


def test_every_reference_column_is_documented_with_its_allowed_values():
    """docs/sources/reference-data.md has a row per column of every reference file."""
    import re

    from flows.layers.reference import REFERENCE_FILES, VALIDITY
    from lagesbild.settings import PROJECT_ROOT

    text = (PROJECT_ROOT / "docs/sources/reference-data.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"\*\*`(\w+)\.csv`\*\*[^\n]*\n\n((?:\|[^\n]*\n)+)", text))
    expected = {name: list(columns) for name, columns in REFERENCE_FILES.items()}
    for name in ("areas", "schools"):
        expected[name] += list(VALIDITY)
    expected["properties"] = ["company", "property_id", "property_name", "area_code", "apartments"]
    documented = {
        name: re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE)
        for name, table in sections.items()
    }
    assert documented == expected
