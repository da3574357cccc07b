"""SS 12000 resources as polars frames: what lagesbild keeps of each, nothing more.

Each `*_frame` function turns a list of raw objects (one page, or a sample file) into a
frame with a fixed schema, so landing never depends on which optional fields a platform
sends. Personal data: `civicNo` is replaced by its HMAC pseudonym (`pupil_key`) here, before
anything can be written. `civicNo` is optional in the spec (some platforms sell it as a
separate scope): a pupil without one is keyed by the HMAC of the platform's `person.id`
(`pupil_id_kind` "person_id"), stable as long as the platform keeps its ids, but not the same
key as the pupil's rows in the exports (see docs/sources/ss12000.md). The platform ids that
lead to a pupil (person, student and absence ids, deleted absence ids) are kept only as their
keyed hash (`platform_ref`), the same on every resource so they still join. Names, addresses,
e-mails, phone numbers, birth dates, sex, responsibles and `securityMarking` (skyddad
folkbokföring, sekretessmarkering) are never read: the marts count a pupil with a marking like
every other, from school unit and grade per enrolment, so nothing needs to know which pupils
have one, and nothing at rest tells it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any

import polars as pl

from connectors.personal_ids import KIND_MISSING, pseudonym, pseudonymise_column
from connectors.ss12000.client import SS12000Client

ORGANISATION_SCHEMA = {
    "organisation_id": pl.String,
    "organisation_type": pl.String,
    "parent_id": pl.String,
    "school_unit_code": pl.String,
    "display_name": pl.String,
    "municipality_code": pl.String,
    "meta_modified": pl.String,
}
PERSON_SCHEMA = {
    "person_id": pl.String,
    "pupil_key": pl.String,
    "pupil_id_kind": pl.String,
    "enrolments": pl.List(
        pl.Struct(
            {
                "organisation_id": pl.String,
                "school_year": pl.Int32,
                "school_type": pl.String,
                "start_date": pl.String,
                "end_date": pl.String,
            }
        )
    ),
    "meta_modified": pl.String,
}
ACTIVITY_SCHEMA = {
    "activity_id": pl.String,
    "organisation_id": pl.String,
    "meta_modified": pl.String,
}
AGGREGATED_SCHEMA = {
    "student_id": pl.String,
    "activity_id": pl.String,
    "organisation_id": pl.String,  # of the activity when embedded, else from /activities
    "start_date": pl.String,
    "end_date": pl.String,
    "attendance_sum": pl.Int64,
    "valid_absence_sum": pl.Int64,
    "invalid_absence_sum": pl.Int64,
    "other_attendance_sum": pl.Int64,
    "reported_sum": pl.Int64,
    "offered_sum": pl.Int64,
}
ABSENCE_SCHEMA = {
    "absence_id": pl.String,
    "student_id": pl.String,
    "organisation_id": pl.String,
    "type": pl.String,
    "start_time": pl.String,
    "end_time": pl.String,
    "meta_modified": pl.String,
}
DELETED_SCHEMA = {"entity": pl.String, "id": pl.String}
KIND_PERSON_ID = "person_id"  # keyed by the platform's person.id: civicNo withheld
PERSON_ID_PREFIX = "ss12000-person:"  # a person.id never hashes to a personnummer's key
# Platform ids that lead to a pupil (person, student, absence ids) are kept only as this
# keyed hash: the same HMAC on every resource, so persons, enrolments, absences and
# aggregatedAttendance still join, but nobody can look a landed row up on the platform.
REF_PREFIX = "ss12000-ref:"


def platform_ref(key: bytes, platform_id: str | None) -> str | None:
    """The keyed pseudonym that stands for a platform id at rest (None stays None)."""
    return None if platform_id is None else pseudonym(key, REF_PREFIX + platform_id)


# /deletedEntities list keys per entity type (the spec misspells activities as 'activitites').
DELETED_KEYS = {
    "Absence": "absences",
    "Person": "persons",
    "Organisation": "organisations",
    "Activity": "activitites",
}


def _ref(obj: dict, key: str) -> str | None:
    value = obj.get(key)
    return value.get("id") if isinstance(value, dict) else None


def _modified(obj: dict) -> str | None:
    meta = obj.get("meta")
    return meta.get("modified") if isinstance(meta, dict) else None


def organisation_frame(objects: Iterable[dict]) -> pl.DataFrame:
    rows = [
        {
            "organisation_id": o.get("id"),
            "organisation_type": o.get("organisationType"),
            "parent_id": _ref(o, "parentOrganisation"),
            "school_unit_code": o.get("schoolUnitCode"),
            "display_name": o.get("displayName"),
            "municipality_code": o.get("municipalityCode"),
            "meta_modified": _modified(o),
        }
        for o in objects
    ]
    return pl.DataFrame(rows, schema=ORGANISATION_SCHEMA)


def person_frame(objects: Iterable[dict], key: bytes) -> pl.DataFrame:
    """Pupils: id, pseudonymised civicNo, enrolments. Nothing else."""
    rows = []
    for p in objects:
        civic = p.get("civicNo")
        rows.append(
            {
                "person_id": p.get("id"),
                "civic_no": civic.get("value") if isinstance(civic, dict) else None,
                "enrolments": [
                    {
                        "organisation_id": _ref(e, "enroledAt"),
                        "school_year": e.get("schoolYear"),
                        "school_type": e.get("schoolType"),
                        "start_date": e.get("startDate"),
                        "end_date": e.get("endDate"),
                    }
                    for e in p.get("enrolments") or []
                    if not e.get("cancelled")
                ],
                "meta_modified": _modified(p),
            }
        )
    raw = {k: v for k, v in PERSON_SCHEMA.items() if k not in ("pupil_key", "pupil_id_kind")}
    frame = pl.DataFrame(rows, schema={"civic_no": pl.String, **raw})
    keyed = pseudonymise_column(frame, "civic_no", key)
    withheld = pl.col("pupil_id_kind") == KIND_MISSING
    by_id = {i: pseudonym(key, PERSON_ID_PREFIX + i) for i in frame["person_id"].drop_nulls()}
    return (
        keyed.with_columns(
            pupil_key=pl.when(withheld & pl.col("person_id").is_not_null())
            .then(pl.col("person_id").replace_strict(by_id, default=None, return_dtype=pl.String))
            .otherwise(pl.col("pupil_key")),
            pupil_id_kind=pl.when(withheld & pl.col("person_id").is_not_null())
            .then(pl.lit(KIND_PERSON_ID))
            .otherwise(pl.col("pupil_id_kind")),
        )
        .pipe(_hashed, key, "person_id")
        .select(list(PERSON_SCHEMA))
    )


def _hashed(frame: pl.DataFrame, key: bytes, *columns: str) -> pl.DataFrame:
    """Replace platform ids by their keyed pseudonym (one HMAC per distinct id)."""
    for column in columns:
        refs = {i: platform_ref(key, i) for i in frame[column].drop_nulls().unique()}
        frame = frame.with_columns(
            pl.col(column).replace_strict(refs, default=None, return_dtype=pl.String)
        )
    return frame


def activity_frame(objects: Iterable[dict]) -> pl.DataFrame:
    rows = [
        {
            "activity_id": a.get("id"),
            "organisation_id": _ref(a, "organisation"),
            "meta_modified": _modified(a),
        }
        for a in objects
    ]
    return pl.DataFrame(rows, schema=ACTIVITY_SCHEMA)


def aggregated_frame(objects: Iterable[dict], key: bytes) -> pl.DataFrame:
    rows = []
    for a in objects:
        activity = (a.get("_embedded") or {}).get("activity") or {}
        rows.append(
            {
                "student_id": _ref(a, "student"),
                "activity_id": _ref(a, "activity"),
                "organisation_id": _ref(activity, "organisation"),
                "start_date": a.get("startDate"),
                "end_date": a.get("endDate"),
                "attendance_sum": a.get("attendanceSum"),
                "valid_absence_sum": a.get("validAbsenceSum"),
                "invalid_absence_sum": a.get("invalidAbsenceSum"),
                "other_attendance_sum": a.get("otherAttendanceSum"),
                "reported_sum": a.get("reportedSum"),
                "offered_sum": a.get("offeredSum"),
            }
        )
    frame = pl.DataFrame(rows, schema=AGGREGATED_SCHEMA, strict=False)
    return _hashed(frame, key, "student_id")


def absence_frame(objects: Iterable[dict], key: bytes) -> pl.DataFrame:
    rows = [
        {
            "absence_id": a.get("id"),
            "student_id": _ref(a, "student"),
            "organisation_id": _ref(a, "organisation"),
            "type": a.get("type"),
            "start_time": a.get("startTime"),
            "end_time": a.get("endTime"),
            "meta_modified": _modified(a),
        }
        for a in objects
    ]
    return _hashed(pl.DataFrame(rows, schema=ABSENCE_SCHEMA), key, "absence_id", "student_id")


def _modified_after(after: str | None) -> dict[str, Any]:
    return {"meta.modified.after": after} if after else {}


def organisations(client: SS12000Client, after: str | None) -> Iterator[pl.DataFrame]:
    """Every organisation: an activity may belong to a school (Skola) above its units."""
    for page in client.pages("/organisations", _modified_after(after)):
        yield organisation_frame(page)


def activities(client: SS12000Client, after: str | None) -> Iterator[pl.DataFrame]:
    """Activity → owning organisation, for platforms that do not embed the activity."""
    for page in client.pages("/activities", _modified_after(after)):
        yield activity_frame(page)


def persons(client: SS12000Client, key: bytes, after: str | None) -> Iterator[pl.DataFrame]:
    params = {"relationship.entity.type": "enrolment", **_modified_after(after)}
    for page in client.pages("/persons", params):
        yield person_frame(page, key)


def absences(client: SS12000Client, key: bytes, after: str | None) -> Iterator[pl.DataFrame]:
    for page in client.pages("/absences", _modified_after(after)):
        yield absence_frame(page, key)


def aggregated_attendance(
    client: SS12000Client, key: bytes, day: date, school_types: list[str] | None = None
) -> Iterator[pl.DataFrame]:
    """One day's summed minutes per pupil x activity (a one-day window is the day grain) of
    the school forms asked for."""
    params = {"startDate": day.isoformat(), "endDate": day.isoformat(), "expand": ["activity"]}
    if school_types:
        params["schoolType"] = list(school_types)
    for page in client.pages("/aggregatedAttendance", params):
        yield aggregated_frame(page, key)


def deleted(client: SS12000Client, key: bytes, after: str, entities: list[str]) -> pl.DataFrame:
    """Deleted entities' ids, keyed-hashed like the ids they delete (absence_id)."""
    by_key = client.deleted_entities(after, entities)
    rows = [
        {"entity": entity, "id": i}
        for entity in entities
        for i in by_key.get(DELETED_KEYS[entity], [])
    ]
    return _hashed(pl.DataFrame(rows, schema=DELETED_SCHEMA), key, "id")
