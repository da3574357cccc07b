"""Mapping SS 12000 rows onto the clean lesson contract, and source precedence."""

from __future__ import annotations

from datetime import date

import polars as pl

from connectors.ss12000 import resources
from flows.attendance import ss12000
from flows.layers.clean import apply_precedence
from flows.layers.landing import Load, land
from flows.layers.manifest import Manifest

KEY = b"k"
SCHOOL, ORG, OTHER_ORG = "34817265", "org-1", "org-2"
DAY = date(2025, 9, 3)


def _manifest_fields(dataset: str, load_id: str, frame: pl.DataFrame) -> dict:
    return {
        "source": "ss12000",
        "dataset": dataset,
        "load_id": load_id,
        "request": {},
        "partition_kind": "month",
        "partitions": ["2025-09"],
        "sha256": "0" * 64,
        "rows": frame.height,
        "extracted_at": "2025-09-04T00:00:00+00:00",
        "columns": frame.columns,
    }


def _landed(tmp_path, dataset: str, frame: pl.DataFrame, load_id: str) -> None:
    manifest = Manifest(**_manifest_fields(dataset, load_id, frame))
    land(tmp_path, manifest, frame)


def _lookups(tmp_path) -> ss12000.Lookups:
    enrolment = {
        "enroledAt": {"id": ORG},
        "schoolYear": 0,
        "startDate": "2025-07-01",
        "endDate": "2026-06-30",
    }
    persons = [
        {"id": "p1", "civicNo": {"value": "201201011002"}, "enrolments": [enrolment]},
        {"id": "p2", "civicNo": {"value": "201201011003"}, "enrolments": [enrolment]},  # bad
        {"id": "p3", "civicNo": {"value": "201201011010"}, "enrolments": []},
    ]
    for p in persons:
        p["meta"] = {"modified": "2025-09-01T00:00:00Z"}
    _landed(tmp_path, "persons", resources.person_frame(persons, KEY), "1")
    orgs = [
        {"id": ORG, "schoolUnitCode": SCHOOL, "meta": {"modified": "2025-01-01T00:00:00Z"}},
        {"id": OTHER_ORG, "schoolUnitCode": "99999999", "meta": {"modified": "2025-01-01Z"}},
    ]
    _landed(tmp_path, "organisations", resources.organisation_frame(orgs), "2")
    return ss12000.Lookups(tmp_path)


def _row(student: str, activity: str, org: str = ORG, **sums) -> dict:
    values = {"attendanceSum": 40, "validAbsenceSum": 0, "invalidAbsenceSum": 5,
              "otherAttendanceSum": 0, "offeredSum": 45, **sums}  # fmt: skip
    return {
        "student": {"id": student},
        "activity": {"id": activity},
        "_embedded": {"activity": {"id": activity, "organisation": {"id": org}}},
        "startDate": DAY.isoformat(),
        "endDate": DAY.isoformat(),
        **values,
    }


def test_rows_map_to_lessons_or_quarantine_with_a_reason(tmp_path):
    rows = resources.aggregated_frame(
        [
            _row("p1", "a1"),  # clean: grade F, 5 invalid minutes
            _row("p1", "a2", otherAttendanceSum=3, offeredSum=50),  # 2 minutes not assessed
            _row("p1", "a2", otherAttendanceSum=3, offeredSum=50),  # exact repeat
            _row("p1", "a1", attendanceSum=45, invalidAbsenceSum=0),  # same lesson, other data
            _row("p2", "a1"),  # civicNo with a wrong check digit
            _row("p9", "a1"),  # not among the landed persons
            _row("p3", "a1"),  # no enrolment
            _row("p1", "a3", org=OTHER_ORG),  # a school unit not in the reference
            _row("p1", "a4", attendanceSum=50),  # more than offered
        ],
        KEY,
    )
    result = ss12000.split_load(rows, _lookups(tmp_path), {SCHOOL}, "L1", ss12000.day_owners([]))
    assert (result.received, result.clean, result.quarantined, result.duplicates) == (9, 2, 6, 1)
    assert result.quarantine["reason"].to_list() == [
        "conflicting_duplicate",
        "invalid_personal_id",
        "unknown_student",
        "no_enrolment",
        "unknown_school_unit",
        "minutes_do_not_add_up",
    ]
    assert result.rows.is_empty()  # L1 does not own the day: no load asked for it


def test_the_latest_load_asking_for_a_day_owns_it_and_minutes_map(tmp_path):
    rows = resources.aggregated_frame([_row("p1", "a1"), _row("p1", "a2", otherAttendanceSum=3,
                                                              offeredSum=50)], KEY)  # fmt: skip

    def manifest(load_id):
        return Load(Manifest(
            source="ss12000", dataset="aggregated_attendance", load_id=load_id,
            request={"days": [DAY.isoformat()]}, partition_kind="month", partitions=["2025-09"],
            sha256="0", rows=2, extracted_at="", columns=[]), tmp_path)  # fmt: skip

    owners = ss12000.day_owners([manifest("L2"), manifest("L1")])
    assert owners == {DAY: "L2"}
    lessons = ss12000.split_load(rows, _lookups(tmp_path), {SCHOOL}, "L2", owners).rows
    assert lessons.select(
        "grade",
        "offered_minutes",
        "attended_minutes",
        "invalid_absence_minutes",
        "other_absence_minutes",
    ).rows() == [
        ("F", 45.0, 40.0, 5.0, 0.0),
        ("F", 50.0, 43.0, 5.0, 2.0),
    ]


def test_precedence_per_school_day_and_unlisted_sources_last():
    lessons = pl.DataFrame(
        {
            "school_unit_code": ["A", "A", "A", "B", "B", "C"],
            "date": [DAY] * 6,
            "source": ["skola24_csv", "ss12000", "ss12000", "skola24_csv", "newsys", "newsys"],
            "load_id": ["e1", "s1", "s1", "e1", "n1", "n1"],
        }
    )
    key = ("school_unit_code", "date")
    served, lost = apply_precedence(lessons, ["ss12000", "skola24_csv"], key)
    assert sorted(served["load_id"].to_list()) == ["e1", "n1", "s1", "s1"]
    assert lost == {"e1": 1, "n1": 1}
    served, lost = apply_precedence(lessons, ["skola24_csv", "ss12000"], key)
    assert lost == {"s1": 2, "n1": 1}


def test_what_the_spec_leaves_optional_maps_by_its_meaning(tmp_path):
    """Only attendanceSum is required; an activity may belong to the school above its units
    and come without `_embedded`; civicNo may be withheld; GRS has a year 10; FKLASS may come
    without schoolYear; a gymnasium row a platform sends despite the filter is not ours."""
    school, unit2, gy = "skola-1", "org-2", "org-gy"
    orgs = [
        {"id": school, "organisationType": "Skola"},
        {"id": ORG, "schoolUnitCode": SCHOOL, "parentOrganisation": {"id": school}},
        {"id": unit2, "schoolUnitCode": "22222222", "parentOrganisation": {"id": school}},
        {"id": gy, "schoolUnitCode": "77777777"},
    ]
    for o in orgs:
        o["meta"] = {"modified": "2025-01-01T00:00:00Z"}
    _landed(tmp_path, "organisations", resources.organisation_frame(orgs), "1")

    def person(pid: str, unit: str, school_type: str, year: int | None) -> dict:
        enrolment = {
            "enroledAt": {"id": unit},
            "schoolType": school_type,
            "startDate": "2025-07-01",
            "endDate": "2026-06-30",
        }
        if year is not None:
            enrolment["schoolYear"] = year
        return {"id": pid, "enrolments": [enrolment], "meta": {"modified": "2025-09-01Z"}}

    persons = [
        person("p1", ORG, "GRS", 10),
        person("p2", unit2, "FKLASS", None),
        person("p3", gy, "GY", 2),
    ]
    frame = resources.person_frame(persons, KEY)  # no civicNo: keyed by person.id
    assert frame["pupil_id_kind"].to_list() == ["person_id"] * 3
    assert frame["pupil_key"].n_unique() == 3
    _landed(tmp_path, "persons", frame, "2")
    activities = [
        {"id": "a1", "organisation": {"id": school}, "meta": {"modified": "2025Z"}},
        {"id": "a3", "organisation": {"id": gy}, "meta": {"modified": "2025Z"}},
    ]
    _landed(tmp_path, "activities", resources.activity_frame(activities), "3")
    lookups = ss12000.Lookups(tmp_path, ["GR", "GRS", "FKLASS"])

    def row(student: str, activity: str, **sums) -> dict:
        return {
            "student": {"id": student},
            "activity": {"id": activity},
            "startDate": DAY.isoformat(),
            "endDate": DAY.isoformat(),
            **sums,
        }

    rows = resources.aggregated_frame(
        [
            row("p1", "a1", attendanceSum=40, offeredSum=45),  # 5 minutes not yet assessed
            row("p2", "a1", attendanceSum=30, invalidAbsenceSum=10, reportedSum=50),
            row("p3", "a3", attendanceSum=60, offeredSum=60),  # gymnasium: not ours
            row("p1", "a1"),  # no attendanceSum: the one sum the spec requires
        ],
        KEY,
    )
    owners = {DAY: "L1"}
    result = ss12000.split_load(rows, lookups, {SCHOOL, "22222222"}, "L1", owners)
    assert (result.received, result.clean, result.quarantined) == (3, 2, 1)
    assert result.quarantine["reason"].to_list() == ["invalid_number"]
    assert result.rows.select(
        "school_unit_code",
        "grade",
        "offered_minutes",
        "attended_minutes",
        "valid_absence_minutes",
        "invalid_absence_minutes",
        "other_absence_minutes",
    ).rows() == [
        (SCHOOL, "10", 45.0, 40.0, 0.0, 0.0, 5.0),
        ("22222222", "F", 50.0, 30.0, 0.0, 10.0, 10.0),  # offered = reportedSum
    ]


def test_a_day_off_of_the_school_or_a_day_after_it_closed_is_quarantined(tmp_path):
    """The reference's per-school rules apply to API rows as to exports."""
    from datetime import timedelta

    rows = resources.aggregated_frame([_row("p1", "a1"), _row("p1", "a2")], KEY)
    lookups = _lookups(tmp_path)
    days_off = pl.DataFrame({"school_unit_code": [SCHOOL], "date": [DAY]})
    result = ss12000.split_load(rows, lookups, {SCHOOL}, "L1", {}, days_off=days_off)
    assert result.quarantine["reason"].to_list() == ["not_a_school_day_for_school"] * 2
    closed = pl.DataFrame(
        {"school_unit_code": [SCHOOL], "valid_from": [None], "valid_to": [DAY - timedelta(1)]},
        schema={"school_unit_code": pl.String, "valid_from": pl.Date, "valid_to": pl.Date},
    )
    result = ss12000.split_load(rows, lookups, {SCHOOL}, "L1", {}, validity=closed)
    assert result.quarantine["reason"].to_list() == ["school_not_open_on_date"] * 2
    open_then = closed.with_columns(valid_to=pl.lit(DAY))
    result = ss12000.split_load(rows, lookups, {SCHOOL}, "L1", {}, validity=open_then)
    assert (result.clean, result.quarantined) == (2, 0)


def test_platform_ids_are_hashed_alike_on_every_resource_and_still_join(tmp_path):
    rows = resources.aggregated_frame([_row("p1", "a1")], KEY)
    persons = resources.person_frame([{"id": "p1", "civicNo": {"value": "201201011002"}}], KEY)
    absence = {"id": "x1", "student": {"id": "p1"}, "startTime": "", "endTime": ""}
    absences = resources.absence_frame([absence], KEY)
    ref = resources.platform_ref(KEY, "p1")
    assert len(ref) == 64 and ref != resources.platform_ref(b"other key", "p1")
    assert rows["student_id"].to_list() == persons["person_id"].to_list() == [ref]
    assert absences.row(0)[:2] == (resources.platform_ref(KEY, "x1"), ref)
    # the whole mapping joins on the hashes: the pupil's lesson is clean
    result = ss12000.split_load(rows, _lookups(tmp_path), {SCHOOL}, "L1", {DAY: "L1"})
    assert (result.clean, result.quarantined) == (1, 0)


def test_persons_landed_with_raw_ids_are_asked_for_again(tmp_path):
    """Loads of an earlier version kept raw person ids: the first run with hashed ids asks for
    every person again, else the new rows' hashed student ids would find no person."""
    raw = resources.person_frame([{"id": "p1"}], KEY).with_columns(person_id=pl.lit("p1"))
    _landed(tmp_path, "persons", raw, "1")
    assert ss12000._only_raw_ids(tmp_path, "persons")
    assert not ss12000._only_raw_ids(tmp_path, "absences")  # nothing landed: asked from scratch
    frame = resources.person_frame([{"id": "p1"}], KEY)
    fields = _manifest_fields("persons", "2", frame)
    land(tmp_path, Manifest(**fields, pseudonymised=ss12000.PSEUDONYMISED["persons"]), frame)
    assert not ss12000._only_raw_ids(tmp_path, "persons")
