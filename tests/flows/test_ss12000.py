"""Attendance over SS 12000 end to end: the nightly against the local SS 12000 server.

The server serves the same generated municipality as the exports (the generator writes both
from the same simulated days; the API has no dirty rows). Expected figures come from the
generator's ground truth, as in test_nightly; the request log of the server shows what the
client asked for.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

import polars as pl
import pytest

from connectors.ss12000 import resources
from demo.ss12000_server import VARIANTS, SS12000Server, running
from demo.ss12000_store import Store, entity_id
from flows.layers.audit import read_audit
from flows.layers.landing import landed_loads
from flows.nightly import backfill, nightly
from lagesbild.settings import Settings
from tests.flows.conftest import THROUGH, pipeline_at
from tests.flows.test_nightly import (
    ABSENCES,
    _personal_ids,
    _text_of,
    assert_matches,
    expected_rates,
    marts,
    truth_days,
)

# `make test-scenarios`: the SS 12000 API over several nights
pytestmark = pytest.mark.scenario

RUN_DATE = THROUGH + timedelta(days=1)
PAGE_SIZE = 2000
WINDOW = 10  # refetch_school_days (the default)


@pytest.fixture(scope="module")
def server(municipality):
    server = SS12000Server(Store.load(municipality["ss12000"]))
    with running(server) as url:
        server.url = url
        yield server


@pytest.fixture(scope="module")
def api_env(municipality, server, tmp_path_factory):
    data = tmp_path_factory.mktemp("api-data")
    settings = {
        "ss12000__base_url": server.url,
        "ss12000__token_url": server.url + "/token",
        "ss12000__client_id": server.client_id,
        "ss12000__client_secret": server.client_secret,
        "ss12000__page_size": str(PAGE_SIZE),
        "ss12000__max_attempts": "2",
    }
    with pipeline_at(data, municipality["drop"], **settings):
        yield data


@pytest.fixture(scope="module")
def first_run(api_env, server):
    state = nightly(run_date=RUN_DATE, return_state=True)
    assert state.is_completed(), state.message
    requests = list(server.requests)
    server.requests.clear()
    return Settings().paths, requests


def school_days(municipality) -> list[date]:
    calendar = pl.read_csv(municipality["drop"] / "reference/school_calendar.csv")
    days = calendar.filter(pl.col("is_school_day")).get_column("date").str.to_date()
    return sorted(d for d in days.to_list() if d < RUN_DATE)


def server_days(paths) -> list[date]:
    calendar = pl.read_csv(paths.drop / "reference/school_calendar.csv")
    days = calendar.filter(pl.col("is_school_day")).get_column("date").str.to_date()
    return sorted(d for d in days.to_list() if d < RUN_DATE)


def first_asks(requests, path: str) -> list[dict]:
    return [q for p, q in requests if p == path and "pageToken" not in q]


def expected_grade_month(days: pl.DataFrame) -> pl.DataFrame:
    days = days.with_columns(month=pl.col("date").dt.truncate("1mo"))
    return expected_rates(
        days.group_by("school_unit_code", "grade", "month").agg(
            pupils=pl.col("pupil_id").n_unique(),
            offered_minutes=pl.col("offered_minutes").sum(),
            **{c: pl.col(c).sum() for c in ABSENCES},
        )
    )


def test_api_and_exports_give_the_same_marts_as_the_truth(first_run, municipality):
    paths, _ = first_run
    actual = marts(paths)["mart_attendance_school_grade_month"]
    assert_matches(
        actual,
        expected_grade_month(truth_days(municipality)),
        ["school_unit_code", "grade", "month"],
    )
    clean = pl.read_parquet(paths.clean / "attendance" / "period=*" / "*.parquet")
    assert clean["source"].unique().to_list() == ["ss12000"]  # precedence: the API wins


def test_one_request_per_school_day_and_page_tokens_only_with_limit(first_run, municipality):
    _, requests = first_run
    asked = [q["startDate"] for q in first_asks(requests, "/aggregatedAttendance")]
    assert asked == [[d.isoformat()] for d in school_days(municipality)]
    for path, query in requests:
        if "pageToken" in query:
            assert set(query) == {"pageToken", "limit"}, (path, query)
    lessons = pl.read_parquet(municipality["truth"] / "lessons.parquet")
    pages = sum(1 for p, _ in requests if p == "/aggregatedAttendance")
    per_day = lessons.group_by("date").len()["len"]
    assert pages == sum((n + PAGE_SIZE - 1) // PAGE_SIZE for n in per_day.to_list())


def test_audit_shows_the_precedence_decision(first_run, municipality):
    paths, _ = first_run
    audit = read_audit(paths.audit)
    lessons = pl.read_parquet(municipality["truth"] / "lessons.parquet").height
    api = audit.filter(pl.col("source") == "ss12000")
    exports = audit.filter(pl.col("source") == "attendance_export")
    # one API row per pupil x lesson (an activity is a lesson slot), none rejected or lost
    assert api["rows_received"].sum() == api["rows_clean"].sum() == lessons
    assert api["rows_quarantined"].sum() == api["rows_superseded"].sum() == 0
    # every valid export lesson is covered by the API for its school and day
    assert exports["rows_clean"].sum() == exports["rows_superseded"].sum() == lessons
    for row in audit.iter_rows(named=True):
        assert row["rows_received"] == (
            row["rows_clean"] + row["rows_quarantined"] + row["rows_duplicate"]
        )


def test_no_personnummer_in_anything_the_api_run_wrote(first_run, municipality):
    paths, _ = first_run
    ids = _personal_ids(municipality["drop"])
    assert len(list(landed_loads(paths.landing, "ss12000"))) >= 4
    for path in paths.data.rglob("*"):
        if path.is_file() and "prefect" not in path.parts and ".wal" not in path.suffix:
            raw = pl.read_parquet(path).write_ndjson() if path.suffix == ".parquet" else None
            text = re.sub(r"(?<=\d)[-+](?=[0-9A-Z]{4})", "", raw or _text_of(path))
            assert not set(re.findall(r"[0-9A-Z]{10,12}", text)) & ids, path


def _platform_ids(store: Store) -> set[str]:
    """Every id of the test server's store that leads to a pupil: persons, students, absences."""
    return (
        set(store.persons["person_id"].to_list())
        | set(store.lessons["student_id"].to_list())
        | set(store.absences["student_id"].to_list())
        | set(store.absences["absence_id"].to_list())
    )


def test_no_raw_platform_person_id_is_at_rest(first_run, server):
    """Person, student and absence ids are kept only as their keyed hash: someone with access
    to the platform cannot look a landed, clean, quarantined or audited row up."""
    paths, _ = first_run
    ids = _platform_ids(server.store)
    assert len(ids) > 100
    uuid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    scanned = 0
    for path in paths.data.rglob("*"):
        if not path.is_file():
            continue
        # the bytes as stored, and the decoded content (parquet and DuckDB compress strings)
        texts = [path.read_bytes().decode("latin-1")]
        if path.suffix == ".parquet":
            texts.append(pl.read_parquet(path).write_ndjson())
        elif path.suffix == ".duckdb":
            texts.append(_text_of(path))
        found = {i for text in texts for i in uuid.findall(text)} & ids
        assert not found, f"{len(found)} raw platform ids in {path}"
        scanned += 1
    assert scanned > 20
    # the hashed ids still join: every landed student is a landed person
    landing = paths.landing / "ss12000"
    persons = pl.read_parquet(landing / "persons" / "**" / "*.parquet")["person_id"]
    students = pl.read_parquet(landing / "aggregated_attendance" / "**" / "*.parquet")
    assert students["student_id"].is_in(persons.implode()).all()
    key = Settings().require_pseudonym_key()
    assert set(persons) == {
        resources.platform_ref(key, i) for i in server.store.persons["person_id"]
    }


def _snapshot(paths) -> tuple[dict[str, bytes], dict[str, pl.DataFrame]]:
    """Clean partitions byte for byte; marts by content (their row order is not content)."""
    clean = paths.clean / "attendance"
    return {str(p): p.read_bytes() for p in sorted(clean.rglob("*.parquet"))}, marts(paths)


def _same(a, b) -> bool:
    return (
        a[0] == b[0] and a[1].keys() == b[1].keys() and all(a[1][k].equals(b[1][k]) for k in a[1])
    )


def _landed(paths) -> dict[str, str]:
    return {x.load_id: x.manifest.dataset for x in landed_loads(paths.landing, "ss12000")}


def test_second_run_fetches_only_the_delta_and_changes_nothing(first_run, server):
    paths, _ = first_run
    before, loads = _snapshot(paths), _landed(paths)
    state = nightly(run_date=RUN_DATE, return_state=True)
    assert state.is_completed(), state.message
    requests = list(server.requests)
    server.requests.clear()
    # the trailing window of recent school days is asked for again; nothing differs
    asked = [q["startDate"][0] for q in first_asks(requests, "/aggregatedAttendance")]
    assert asked == [d.isoformat() for d in server_days(paths)[-WINDOW:]]
    for query in first_asks(requests, "/aggregatedAttendance"):
        assert query["schoolType"] == ["GR", "GRS", "FKLASS"]
    landed = pl.read_parquet(paths.landing / "ss12000" / "persons" / "**" / "*.parquet")
    watermark = max(landed["meta_modified"].to_list())
    # the watermark less the overlap (10 minutes): what is landed already is not landed again
    overlap = datetime.fromisoformat(watermark) - timedelta(minutes=10)
    assert first_asks(requests, "/persons")[0]["meta.modified.after"] == [overlap.isoformat()]
    assert _landed(paths) == loads and _same(_snapshot(paths), before)


def test_a_late_report_and_a_deleted_absence_reach_the_marts(first_run, server, municipality):
    paths, _ = first_run
    truth = truth_days(municipality)
    store = server.store
    # A guardian reports a September day of invalid absence late; a reported sick day in
    # October is deleted by the school (it becomes invalid absence).
    reported = (
        truth.filter((pl.col("invalid_absence_minutes") > 0) & (pl.col("date").dt.month() == 9))
        .sort("pupil_id", "date")
        .row(0, named=True)
    )
    store.report_absence(entity_id("person", reported["pupil_id"]), reported["date"])
    absence = (
        store.absences.filter(pl.col("date").dt.month() == 10).sort("absence_id").row(0, named=True)
    )
    deleted_pupil = next(
        i
        for i in truth["pupil_id"].unique().to_list()
        if entity_id("person", i) == absence["student_id"]
    )
    store.delete_absence(absence["absence_id"])

    # First the server keeps failing on aggregatedAttendance: the run fails, nothing is
    # published, and the changed absences are not landed, so the next run still sees them.
    before = paths.marts_db.read_bytes(), _snapshot(paths)[0], _landed(paths)
    server.faults.add("503_overload", times=2, path="/aggregatedAttendance")  # max_attempts 2
    state = nightly(run_date=RUN_DATE, return_state=True)
    assert state.is_failed() and not server.faults.queue
    assert "kept failing on /aggregatedAttendance" in str(state.result(raise_on_failure=False))
    assert (paths.marts_db.read_bytes(), _snapshot(paths)[0], _landed(paths)) == before
    server.requests.clear()

    state = nightly(run_date=RUN_DATE, return_state=True)
    assert state.is_completed(), state.message
    asked = [q["startDate"] for q in first_asks(server.requests, "/aggregatedAttendance")]
    server.requests.clear()
    window = {d.isoformat() for d in server_days(paths)[-WINDOW:]}
    expected_days = {reported["date"].isoformat(), absence["date"].isoformat()} | window
    assert sorted(asked) == [[d] for d in sorted(expected_days)]

    late = (pl.col("pupil_id") == reported["pupil_id"]) & (pl.col("date") == reported["date"])
    gone = (pl.col("pupil_id") == deleted_pupil) & (pl.col("date") == absence["date"])
    changed = truth.with_columns(
        valid_absence_minutes=pl.when(late)
        .then(
            pl.col("valid_absence_minutes")
            + pl.col("invalid_absence_minutes")
            + pl.col("other_absence_minutes")
        )
        .when(gone)
        .then(0.0)
        .otherwise(pl.col("valid_absence_minutes")),
        invalid_absence_minutes=pl.when(late)
        .then(0.0)
        .when(gone)
        .then(pl.col("invalid_absence_minutes") + pl.col("valid_absence_minutes"))
        .otherwise(pl.col("invalid_absence_minutes")),
        other_absence_minutes=pl.when(late).then(0.0).otherwise(pl.col("other_absence_minutes")),
    )
    assert changed.filter(gone)["invalid_absence_minutes"].item() > 0  # the test sees a change
    actual = marts(paths)["mart_attendance_school_grade_month"]
    assert_matches(actual, expected_grade_month(changed), ["school_unit_code", "grade", "month"])
    server.expected = changed


def test_a_late_teacher_report_changes_the_marts_the_next_night(first_run, server, municipality):
    """A teacher reports a lesson three school days after it: the trailing window asks for
    that day again, and the minutes not yet assessed become attended in the marts."""
    paths, _ = first_run
    truth = getattr(server, "expected", truth_days(municipality))
    day = server_days(paths)[-3]
    pupil = (
        truth.filter((pl.col("date") == day) & (pl.col("other_absence_minutes") > 0))
        .sort("pupil_id")
        .row(0, named=True)
    )
    moved = server.store.teacher_reports(entity_id("person", pupil["pupil_id"]), day)
    assert moved == pupil["other_absence_minutes"] > 0
    before = marts(paths)["mart_attendance_school_grade_month"]
    state = nightly(run_date=RUN_DATE, return_state=True)
    assert state.is_completed(), state.message
    server.requests.clear()
    late = (pl.col("pupil_id") == pupil["pupil_id"]) & (pl.col("date") == day)
    # not assessed → attended (the truth has no attended column: it is what is left)
    changed = truth.with_columns(
        other_absence_minutes=pl.when(late).then(0.0).otherwise(pl.col("other_absence_minutes"))
    )
    actual = marts(paths)["mart_attendance_school_grade_month"]
    assert not actual.equals(before)
    assert_matches(actual, expected_grade_month(changed), ["school_unit_code", "grade", "month"])
    server.expected = changed


def test_an_absence_committed_later_under_a_served_timestamp_is_landed(first_run, server):
    """meta.modified.after is exclusive: without the overlap an absence the platform commits
    later with the same timestamp as the last one landed would be skipped for good."""
    paths, _ = first_run
    landed = pl.read_parquet(paths.landing / "ss12000" / "absences" / "**" / "*.parquet")
    mark = max(landed["meta_modified"].to_list(), key=lambda t: t.replace("Z", "+00:00"))
    student = server.store.absences["student_id"][0]  # raw on the platform, hashed landed
    new = server.store.add_absence(student, server_days(paths)[-1], modified=mark)
    state = nightly(run_date=RUN_DATE, return_state=True)
    assert state.is_completed(), state.message
    server.requests.clear()
    after = pl.read_parquet(paths.landing / "ss12000" / "absences" / "**" / "*.parquet")
    new_ref = resources.platform_ref(Settings().require_pseudonym_key(), new)
    assert after.filter(pl.col("absence_id") == new_ref).height == 1
    assert after.height == landed.height + 1  # what the overlap asked again was not re-landed


def test_backfill_refetches_the_window_and_changes_nothing_unchanged(first_run, server):
    paths, _ = first_run
    before = _snapshot(paths)
    state = backfill(
        "ss12000", date(2025, 10, 1), date(2025, 10, 31), run_date=RUN_DATE, return_state=True
    )
    assert state.is_completed(), state.message
    asked = [q["startDate"][0] for q in first_asks(server.requests, "/aggregatedAttendance")]
    server.requests.clear()
    assert asked and all(d.startswith("2025-10") for d in asked)
    assert _same(_snapshot(paths), before)


# -- a platform that sends only what the spec requires -----------------------------------------


@pytest.fixture(scope="module")
def minimal_run(municipality, tmp_path_factory):
    """The spec-minimal variant: no optional sums of 0 and no reportedSum, activities owned by
    the school above the unit, no `_embedded`, no civicNo, GRS and förskoleklass without
    schoolYear, a gymnasium unit, and pages of 250 on every endpoint."""
    server = SS12000Server(Store.load(municipality["ss12000"]), variant=VARIANTS["spec_minimal"])
    data = tmp_path_factory.mktemp("minimal-data")
    with running(server) as url:
        settings = {
            "ss12000__base_url": url,
            "ss12000__token_url": url + "/token",
            "ss12000__client_id": server.client_id,
            "ss12000__client_secret": server.client_secret,
            "ss12000__page_size": "250",
        }
        with pipeline_at(data, municipality["drop"], **settings):
            state = nightly(run_date=RUN_DATE, return_state=True)
            assert state.is_completed(), state.message
            yield Settings().paths, server


def test_a_spec_minimal_platform_gives_the_export_figures_without_quarantine(
    minimal_run, municipality
):
    paths, server = minimal_run
    assert server.spec_errors == []
    audit = read_audit(paths.audit)
    api = audit.filter(pl.col("source") == "ss12000")
    lessons = pl.read_parquet(municipality["truth"] / "lessons.parquet").height
    assert api["rows_quarantined"].sum() == 0
    assert api["rows_clean"].sum() == lessons  # the gymnasium's rows were never sent
    actual = marts(paths)["mart_attendance_school_grade_month"]
    assert_matches(
        actual,
        expected_grade_month(truth_days(municipality)),
        ["school_unit_code", "grade", "month"],
    )
    pages = {p for p, q in server.requests if "pageToken" in q}
    assert {"/persons", "/activities", "/aggregatedAttendance", "/absences"} <= pages
    kinds = pl.read_parquet(paths.landing / "ss12000" / "persons" / "**" / "*.parquet")
    assert kinds["pupil_id_kind"].unique().to_list() == ["person_id"]
