"""The demo SS 12000 server's data: written by the generator, read and changed by the server.

The generator calls `StoreWriter.write` with every month's valid lesson rows (the same rows
the exports are made of, before dirty rows are added) and `close` with the population, so the
API and the exports describe the same attendance. Files in the store folder:

- `organisations.json`: the municipality (Huvudman) and one Skolenhet per school;
- `persons.parquet`: one pupil per row with civicNo (the personnummer, fictional), a security
  marking for a few, and one enrolment per school year (school unit, grade, dates);
- `lessons.parquet`: one row per pupil x lesson with the minutes as SS 12000 sums them
  (`attendanceSum`, `validAbsenceSum`, `invalidAbsenceSum`, `otherAttendanceSum` = 0,
  `reportedSum` = offered minus the not yet assessed minutes, `offeredSum`); an activity is a
  school x grade x lesson start;
- `absences.parquet`: an `Anmäld frånvaro` for every whole day of valid absence.

`Store` holds them in memory for the server, with the two changes a platform makes after the
fact (a late absence report, a deleted absence) and the tombstones of deletions.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl

NAMESPACE = uuid.UUID("5b0c3f8e-2d7a-4c1e-9f3b-6a1d2e4c8b70")  # fixed: ids never change
CREATED = "2025-06-15T08:00:00+00:00"  # when the demo platform was set up
GRADE_YEARS = {"F": 0, **{str(g): g for g in range(1, 10)}}
MARKINGS = ("Ingen", "Sekretessmarkering", "Skyddad folkbokföring")
GY_UNIT_CODE = "77777777"  # the gymnasium unit of the several-school-forms variant


def entity_id(*parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(str(p) for p in parts)))


def _with_id(frame: pl.DataFrame, name: str, prefix: str, *columns: str) -> pl.DataFrame:
    """Add a uuid5 column per distinct value of `columns` (one uuid5 call per value)."""
    keys = frame.select(columns).unique()
    ids = [entity_id(prefix, *row) for row in keys.iter_rows()]
    return frame.join(keys.with_columns(pl.Series(name, ids, pl.String)), on=list(columns))


def _school_year(day: pl.Expr) -> pl.Expr:
    return pl.when(day.dt.month() >= 7).then(day.dt.year()).otherwise(day.dt.year() - 1)


class StoreWriter:
    """Streams the generator's lesson rows into the store folder."""

    def __init__(self, folder: Path, schools, municipality_code: str, municipality_name: str):
        self.folder = folder
        self.schools = schools
        self.municipality = (municipality_code, municipality_name)
        self.parts: list[pl.DataFrame] = []
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, month_frame: pl.DataFrame) -> None:
        minutes = month_frame.select(pl.col("^.*_minutes$"))
        if minutes.select(pl.any_horizontal(pl.all() % 1 != 0).any()).item():
            raise ValueError("SS 12000 sums are whole minutes; the generator wrote fractions")
        self.parts.append(
            month_frame.select(
                "pupil_id",
                "school_unit_code",
                "grade",
                "date",
                "lesson_start",
                "offered_minutes",
                "attended_minutes",
                "valid_absence_minutes",
                "invalid_absence_minutes",
                "other_absence_minutes",
            )
        )

    def close(self, id12: np.ndarray) -> list[Path]:
        code, name = self.municipality
        owner = entity_id("organisation", code)
        organisations = [
            {
                "id": owner,
                "meta": {"created": CREATED, "modified": CREATED},
                "displayName": name,
                "organisationType": "Huvudman",
                "organisationNumber": "212000-0000",
                "municipalityCode": code,
            }
        ] + [
            {
                "id": entity_id("organisation", s.code),
                "meta": {"created": CREATED, "modified": CREATED},
                "displayName": s.name,
                "organisationType": "Skolenhet",
                "parentOrganisation": {"id": owner},
                "schoolUnitCode": s.code,
                "schoolTypes": ["FKLASS", "GR"],
                "municipalityCode": code,
            }
            for s in self.schools
        ]
        (self.folder / "organisations.json").write_text(
            json.dumps(organisations, ensure_ascii=False, indent=1), encoding="utf-8"
        )
        lessons = pl.concat(self.parts) if self.parts else None
        if lessons is None:
            return []
        lessons = _with_id(lessons, "student_id", "person", "pupil_id")
        lessons = _with_id(lessons, "organisation_id", "organisation", "school_unit_code")
        lessons = _with_id(
            lessons, "activity_id", "activity", "school_unit_code", "grade", "lesson_start"
        )
        enrolments = (
            lessons.group_by("pupil_id", "organisation_id", _school_year(pl.col("date")))
            .agg(pl.col("grade").first())
            .sort("pupil_id", "date")
            .select(
                "pupil_id",
                pl.struct(
                    enroledAt=pl.struct(id=pl.col("organisation_id")),
                    schoolYear=pl.col("grade").replace_strict(GRADE_YEARS, return_dtype=pl.Int32),
                    schoolType=pl.when(pl.col("grade") == "F")
                    .then(pl.lit("FKLASS"))
                    .otherwise(pl.lit("GR")),
                    startDate=pl.format("{}-07-01", pl.col("date")),
                    endDate=pl.format("{}-06-30", pl.col("date") + 1),
                ).alias("enrolment"),
            )
            .group_by("pupil_id", maintain_order=True)
            .agg(enrolments=pl.col("enrolment"))
        )
        civic = pl.DataFrame(
            {"pupil_id": np.arange(1, len(id12) + 1, dtype=np.int64), "civic_no": id12}
        )
        persons = _with_id(enrolments, "person_id", "person", "pupil_id")
        persons = (
            persons.join(civic, on="pupil_id")
            .with_columns(
                # about 1 % carry a marking (deterministic by id); they stay in the data
                security_marking=pl.when(pl.col("pupil_id") % 97 == 3)
                .then(pl.lit(MARKINGS[2]))
                .when(pl.col("pupil_id") % 97 == 5)
                .then(pl.lit(MARKINGS[1]))
                .otherwise(pl.lit(MARKINGS[0])),
                meta_modified=pl.lit(CREATED),
            )
            .drop("pupil_id")
        )
        whole_day_valid = (
            lessons.group_by("student_id", "organisation_id", "date")
            .agg(pl.col("offered_minutes", "valid_absence_minutes").sum())
            .filter(pl.col("valid_absence_minutes") == pl.col("offered_minutes"))
        )
        absences = _with_id(whole_day_valid, "absence_id", "absence", "student_id", "date")
        absences = absences.select(
            "absence_id",
            "student_id",
            "organisation_id",
            "date",
            type=pl.lit("Anmäld frånvaro"),
            meta_modified=pl.format("{}T07:30:00+00:00", pl.col("date")),
        ).sort("date", "absence_id")
        out = [self.folder / n for n in ("persons.parquet", "lessons.parquet", "absences.parquet")]
        persons.write_parquet(out[0])
        lessons.drop("pupil_id", "school_unit_code").sort("date", "student_id").write_parquet(
            out[1]
        )
        absences.write_parquet(out[2])
        return [self.folder / "organisations.json", *out]


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@dataclass
class Store:
    """In-memory data of the demo server; changes stamp `meta.modified` with the clock."""

    organisations: list[dict]
    persons: pl.DataFrame
    lessons: pl.DataFrame
    absences: pl.DataFrame
    deleted: list[tuple[str, str, datetime]] = field(default_factory=list)  # entity, id, when
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if "school_type" not in self.lessons.columns:
            self._school_forms()

    def _school_forms(self) -> None:
        """School forms and other attendance, as a platform records them; the minutes the
        exports carry are unchanged."""
        activity = pl.col("activity_id")
        lessons = self.lessons.with_columns(
            school_type=pl.when(pl.col("grade") == "F")
            .then(pl.lit("FKLASS"))
            .otherwise(pl.lit("GR")),
            # one activity in 23 is partly spent in another school activity (elevråd): the
            # platform sums those minutes as otherAttendanceSum, not attendanceSum
            other_attendance_minutes=pl.when(
                (activity.str.slice(0, 2).str.to_integer(base=16, strict=False) % 23 == 0)
                & (pl.col("attended_minutes") >= 10)
            )
            .then(10.0)
            .otherwise(0.0),
        )
        # one pupil in 11 of grades 1-9 goes to anpassad grundskola (GRS) in the same year
        grs = pl.col("person_id").str.slice(0, 2).str.to_integer(base=16, strict=False) % 11 == 0
        field = pl.element().struct.field("schoolType")
        self.persons = self.persons.with_columns(
            enrolments=pl.when(grs)
            .then(
                pl.col("enrolments").list.eval(
                    pl.element().struct.with_fields(
                        schoolType=pl.when(field == "GR").then(pl.lit("GRS")).otherwise(field)
                    )
                )
            )
            .otherwise(pl.col("enrolments"))
        )
        grs_pupils = self.persons.filter(grs)["person_id"].implode()
        self.lessons = lessons.with_columns(
            school_type=pl.when(
                pl.col("student_id").is_in(grs_pupils) & (pl.col("school_type") == "GR")
            )
            .then(pl.lit("GRS"))
            .otherwise(pl.col("school_type"))
        )

    @classmethod
    def load(cls, folder: Path) -> Store:
        return cls(
            organisations=json.loads((folder / "organisations.json").read_text("utf-8")),
            persons=pl.read_parquet(folder / "persons.parquet"),
            lessons=pl.read_parquet(folder / "lessons.parquet"),
            absences=pl.read_parquet(folder / "absences.parquet"),
        )

    def add_gymnasium(self, pupils: int) -> None:
        """A gymnasium school unit whose pupils' attendance only a `schoolType` filter keeps
        out: the lessons of `pupils` grade-9 pupils, copied as year-2 gymnasium pupils."""
        with self.lock:
            if any(o.get("schoolUnitCode") == GY_UNIT_CODE for o in self.organisations):
                return
            owner = self.organisations[0]
            unit = entity_id("organisation", GY_UNIT_CODE)
            self.organisations.append(
                {
                    "id": unit,
                    "meta": {"created": CREATED, "modified": CREATED},
                    "displayName": "Ekdala gymnasium",
                    "organisationType": "Skolenhet",
                    "schoolUnitCode": GY_UNIT_CODE,
                    "schoolTypes": ["GY"],
                    "parentOrganisation": {"id": owner["id"]},
                    "municipalityCode": owner.get("municipalityCode"),
                }
            )
            nine = self.lessons.filter(pl.col("grade") == "9")
            chosen = nine["student_id"].unique().sort().head(pupils)
            lessons = nine.filter(pl.col("student_id").is_in(chosen.implode())).with_columns(
                student_id=pl.lit("gy-") + pl.col("student_id"),
                activity_id=pl.lit("gy-") + pl.col("activity_id"),
                organisation_id=pl.lit(unit),
                grade=pl.lit("2"),
                school_type=pl.lit("GY"),
            )
            lessons = lessons.with_columns(
                student_id=pl.col("student_id").map_elements(entity_id, pl.String),
                activity_id=pl.col("activity_id").map_elements(entity_id, pl.String),
            )
            enrolment = {
                "enroledAt": {"id": unit},
                "schoolYear": 2,
                "schoolType": "GY",
                "startDate": "2025-07-01",
                "endDate": "2026-06-30",
            }
            persons = pl.DataFrame(
                [
                    {
                        "person_id": p,
                        "enrolments": [enrolment],
                        "civic_no": None,
                        "security_marking": MARKINGS[0],
                        "meta_modified": CREATED,
                    }
                    for p in lessons["student_id"].unique().sort().to_list()
                ],
                schema=self.persons.schema,
            )
            self.persons = pl.concat([self.persons, persons], how="vertical_relaxed")
            self.lessons = pl.concat([self.lessons, lessons.select(self.lessons.columns)])

    def teacher_reports(self, student_id: str, day: date) -> float:
        """A teacher reports a pupil's lessons of a day late: the minutes not yet assessed
        become attended. Returns the minutes that moved."""
        with self.lock:
            lesson = (pl.col("student_id") == student_id) & (pl.col("date") == day)
            moved = self.lessons.filter(lesson)["other_absence_minutes"].sum()
            if not moved:
                raise KeyError(f"nothing unreported for {student_id} on {day}")
            self.lessons = self.lessons.with_columns(
                attended_minutes=pl.when(lesson)
                .then(pl.col("attended_minutes") + pl.col("other_absence_minutes"))
                .otherwise(pl.col("attended_minutes")),
                other_absence_minutes=pl.when(lesson)
                .then(0.0)
                .otherwise(pl.col("other_absence_minutes")),
            )
            return moved

    def add_absence(self, student_id: str, day: date, modified: str) -> str:
        """An absence registered with a given `meta.modified` (e.g. the same instant as one
        already served: the platform committed it later under the same timestamp)."""
        with self.lock:
            organisation = self.lessons.filter(pl.col("student_id") == student_id)[
                "organisation_id"
            ][0]
            absence_id = entity_id("absence", student_id, day, "extra")
            row = pl.DataFrame(
                {
                    "absence_id": [absence_id],
                    "student_id": [student_id],
                    "organisation_id": [organisation],
                    "date": [day],
                    "type": ["Beviljad ledighet"],
                    "meta_modified": [modified],
                },
                schema=self.absences.schema,
            )
            self.absences = pl.concat([self.absences, row])
            return absence_id

    @staticmethod
    def now() -> str:
        return datetime.now(UTC).isoformat(timespec="microseconds")

    def report_absence(self, student_id: str, day: date) -> str:
        """A guardian reports a day late: its invalid and unassessed minutes become valid."""
        with self.lock:
            lesson = (pl.col("student_id") == student_id) & (pl.col("date") == day)
            if self.lessons.filter(lesson).is_empty():
                raise KeyError(f"no lessons for {student_id} on {day}")
            moved = pl.col("invalid_absence_minutes") + pl.col("other_absence_minutes")
            self.lessons = self.lessons.with_columns(
                valid_absence_minutes=pl.when(lesson)
                .then(pl.col("valid_absence_minutes") + moved)
                .otherwise(pl.col("valid_absence_minutes")),
                invalid_absence_minutes=pl.when(lesson)
                .then(0.0)
                .otherwise(pl.col("invalid_absence_minutes")),
                other_absence_minutes=pl.when(lesson)
                .then(0.0)
                .otherwise(pl.col("other_absence_minutes")),
            )
            organisation = self.lessons.filter(lesson)["organisation_id"][0]
            absence_id = entity_id("absence", student_id, day)
            self.absences = pl.concat(
                [
                    self.absences.filter(pl.col("absence_id") != absence_id),
                    pl.DataFrame(
                        {
                            "absence_id": [absence_id],
                            "student_id": [student_id],
                            "organisation_id": [organisation],
                            "date": [day],
                            "type": ["Anmäld frånvaro"],
                            "meta_modified": [self.now()],
                        },
                        schema=self.absences.schema,
                    ),
                ]
            )
            return absence_id

    def delete_absence(self, absence_id: str) -> None:
        """The school removes a reported absence: that day's valid minutes become invalid."""
        with self.lock:
            row = self.absences.filter(pl.col("absence_id") == absence_id)
            if row.is_empty():
                raise KeyError(absence_id)
            student_id, day = row["student_id"][0], row["date"][0]
            lesson = (pl.col("student_id") == student_id) & (pl.col("date") == day)
            self.lessons = self.lessons.with_columns(
                invalid_absence_minutes=pl.when(lesson)
                .then(pl.col("invalid_absence_minutes") + pl.col("valid_absence_minutes"))
                .otherwise(pl.col("invalid_absence_minutes")),
                valid_absence_minutes=pl.when(lesson)
                .then(0.0)
                .otherwise(pl.col("valid_absence_minutes")),
            )
            self.absences = self.absences.filter(pl.col("absence_id") != absence_id)
            self.deleted.append(("Absence", absence_id, datetime.now(UTC)))

    def modified_after(self, frame: pl.DataFrame, after: str | None) -> pl.DataFrame:
        if not after:
            return frame
        cutoff = _utc(after)
        return frame.filter(
            pl.col("meta_modified").map_elements(lambda t: _utc(t) > cutoff, pl.Boolean)
        )
