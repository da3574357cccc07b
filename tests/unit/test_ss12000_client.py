"""The SS 12000 client against the local SS 12000 server: paging, token, faults, errors.

The server holds a small hand-made store (23 pupils with distinct `meta.modified`), so every
expected count below follows from the store built here.
"""

from __future__ import annotations

import json
import math
import time
from datetime import date
from pathlib import Path

import httpx
import polars as pl
import pytest

from connectors.http import SourceError
from connectors.personal_ids import luhn_check_digit, pseudonym
from connectors.ss12000 import resources
from connectors.ss12000.client import SS12000Client
from connectors.ss12000.settings import SS12000Settings
from demo.ss12000_server import SS12000Server, running
from demo.ss12000_store import Store, entity_id

PUPILS = 23
PAGE = 5
KEY = b"unit-test-key"
SCHOOL = "34817265"
ORG = entity_id("organisation", SCHOOL)
SAMPLES = Path(__file__).parents[1] / "connectors" / "samples" / "ss12000"
DAY = date(2025, 9, 3)


def civic(i: int) -> str:
    serial = f"{100 + i:03d}"
    return f"20120101{serial}{luhn_check_digit('120101' + serial)}"


def small_store() -> Store:
    enrolment = {
        "enroledAt": {"id": ORG},
        "schoolYear": 7,
        "schoolType": "GR",
        "startDate": "2025-07-01",
        "endDate": "2026-06-30",
    }
    persons = pl.DataFrame(
        {
            "enrolments": [[enrolment]] * PUPILS,
            "person_id": [entity_id("person", i) for i in range(PUPILS)],
            "civic_no": [civic(i) for i in range(PUPILS)],
            "security_marking": ["Ingen"] * PUPILS,
            # pupil i was last modified on day i of September
            "meta_modified": [f"2025-09-{i + 1:02d}T10:00:00+02:00" for i in range(PUPILS)],
        }
    )
    lessons = pl.DataFrame(
        {
            "grade": ["7"] * PUPILS * 2,
            "date": [DAY] * PUPILS * 2,
            "lesson_start": ["08:00", "09:00"] * PUPILS,
            "offered_minutes": [60.0] * PUPILS * 2,
            "attended_minutes": [60.0, 50.0] * PUPILS,
            "valid_absence_minutes": [0.0, 10.0] * PUPILS,
            "invalid_absence_minutes": [0.0] * PUPILS * 2,
            "other_absence_minutes": [0.0] * PUPILS * 2,
            "student_id": [entity_id("person", i // 2) for i in range(PUPILS * 2)],
            "organisation_id": [ORG] * PUPILS * 2,
            "activity_id": [entity_id("activity", s) for s in ("08:00", "09:00")] * PUPILS,
        }
    )
    absences = pl.DataFrame(
        schema={
            "absence_id": pl.String,
            "student_id": pl.String,
            "organisation_id": pl.String,
            "date": pl.Date,
            "type": pl.String,
            "meta_modified": pl.String,
        }
    )
    organisations = [
        {
            "id": ORG,
            "meta": {"created": "2025-01-01T00:00:00Z", "modified": "2025-01-01T00:00:00Z"},
            "displayName": "Ekdalaskolan",
            "organisationType": "Skolenhet",
            "schoolUnitCode": SCHOOL,
            "municipalityCode": "1299",
        }
    ]
    return Store(organisations, persons, lessons, absences)


@pytest.fixture(scope="module")
def server():
    server = SS12000Server(small_store())
    with running(server) as url:
        server.url = url
        yield server


def settings(url: str, **options) -> SS12000Settings:
    return SS12000Settings(
        base_url=url, token_url=url + "/token", client_id="lagesbild-demo", **options
    )


@pytest.fixture
def client(server):
    server.faults.clear()
    server.requests.clear()
    server.request_times.clear()
    server.token_requests = 0
    config = settings(
        server.url, page_size=PAGE, timeout=2.0, max_attempts=3, backoff=0.05, max_backoff=3.0
    )
    with SS12000Client(config, server.client_secret) as client:
        yield client


def persons(client) -> pl.DataFrame:
    return pl.concat(list(resources.persons(client, KEY, None)))


def test_full_paging_follows_page_tokens_with_limit_only(client, server):
    frame = persons(client)
    assert frame.height == PUPILS and frame["person_id"].n_unique() == PUPILS
    assert sorted(frame["pupil_key"]) == sorted(pseudonym(KEY, civic(i)) for i in range(PUPILS))
    assert len(server.requests) == math.ceil(PUPILS / PAGE)
    first, *rest = [query for _, query in server.requests]
    assert first == {"relationship.entity.type": ["enrolment"], "limit": [str(PAGE)]}
    assert all(set(query) == {"pageToken", "limit"} for query in rest)


def test_modified_after_is_exclusive_and_survives_paging(client):
    # pupils 0..9 were modified on 1..10 September; after the 10th at 10:00 come pupils 10..22
    frame = pl.concat(list(resources.persons(client, KEY, "2025-09-10T10:00:00+02:00")))
    assert frame.height == PUPILS - 10
    expected = (resources.platform_ref(KEY, entity_id("person", i)) for i in range(10, PUPILS))
    assert sorted(frame["person_id"]) == sorted(expected)  # kept only as their keyed hash


def test_server_rejects_page_token_combined_with_a_filter(client, server):
    token = httpx.post(
        server.url + "/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "lagesbild-demo",
            "client_secret": "demo-secret",
        },
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    page = httpx.get(server.url + "/persons", params={"limit": 2}, headers=headers).json()
    mixed = httpx.get(
        server.url + "/persons",
        params={"pageToken": page["pageToken"], "meta.modified.after": "2025-01-01T00:00:00Z"},
        headers=headers,
    )
    assert mixed.status_code == 400 and mixed.json()["code"] == "400_invalid_filter"


def test_token_expiring_mid_run_is_renewed_once(client, server):
    pages = []
    for page in client.pages("/persons"):
        pages.append(page)
        if len(pages) == 2:  # every issued token stops working after the second page
            server.faults.add("expire_token")
    assert sorted(p["id"] for page in pages for p in page) == sorted(
        entity_id("person", i) for i in range(PUPILS)
    )
    assert server.token_requests == 2


def test_a_token_expiring_twice_in_a_row_says_so(client, server):
    """The token in use and the one fetched at once after it are both refused: the message
    names both possibilities, not only a wrong token_url."""
    server.faults.add("expire_token", times=2)
    with pytest.raises(SourceError) as raised:
        list(client.pages("/organisations"))
    message = str(raised.value)
    assert "answered 401 twice on /organisations" in message
    assert "to the token in use and to a new one fetched at once from" in message
    assert "(check token_url) or its tokens expire at once (expires_in " in message
    server.faults.clear()


@pytest.mark.parametrize("fault", ["429", "500", "503_overload", "slow"])
def test_transient_faults_are_retried(client, server, fault):
    server.faults.add(fault)
    assert persons(client).height == PUPILS
    assert len(server.requests) == math.ceil(PUPILS / PAGE) + 1  # one call was retried


def test_retry_after_in_seconds_is_waited(client, server):
    server.faults.add("429", retry_after=1)
    assert persons(client).height == PUPILS
    assert len(server.requests) == math.ceil(PUPILS / PAGE) + 1
    first, retried = server.request_times[:2]
    assert 1.0 <= retried - first < 2.0  # the header's second, not our 0.05 s backoff


def test_retry_after_as_an_http_date_is_waited(client, server):
    retry_at = math.ceil(time.time()) + 1  # an HTTP-date has whole seconds
    server.faults.add("429", retry_at=retry_at)
    assert persons(client).height == PUPILS
    assert len(server.requests) == math.ceil(PUPILS / PAGE) + 1
    assert retry_at <= server.request_times[1] < retry_at + 1.0


def test_persistent_5xx_gives_a_clear_error_after_max_attempts(client, server):
    server.faults.add("503_overload", times=3)
    with pytest.raises(SourceError) as failed:
        persons(client)
    assert len(server.requests) == 3
    assert str(failed.value) == (
        f"SS 12000 server {server.url} kept failing on /persons after 3 attempts (last: 503 "
        "503_overload: Svaret är för stort för servern att hantera). Nothing was published; "
        "the next run fetches the same delta again. If it persists, check that "
        f"{server.url} is reachable and ask the platform's support."
    )


def test_persistent_429_and_timeouts_name_the_last_answer(client, server):
    server.faults.add("429", times=3, retry_after=0)
    with pytest.raises(SourceError, match=r"after 3 attempts \(last: 429 429_too_many_requests"):
        persons(client)
    assert len(server.requests) == 3
    server.faults.add("slow", times=3)
    with pytest.raises(
        SourceError, match=r"on /persons after 3 attempts \(last: ReadTimeout after"
    ):
        persons(client)
    assert len(server.requests) == 6


def test_malformed_json_is_a_clear_error_not_retried(client, server):
    server.faults.add("malformed")
    with pytest.raises(SourceError, match="not JSON on /persons"):
        persons(client)
    assert len(server.requests) == 1


def test_credentials_by_http_basic(server):
    with SS12000Client(settings(server.url, token_auth="basic"), "demo-secret") as client:
        assert organisations_of(client) == [SCHOOL]


def organisations_of(client) -> list[str]:
    return [o["schoolUnitCode"] for page in client.pages("/organisations") for o in page]


def test_wrong_credentials_name_the_settings(server):
    with (
        SS12000Client(settings(server.url), "wrong") as client,
        pytest.raises(SourceError, match="CLIENT_ID"),
    ):
        list(client.pages("/organisations"))


def test_aggregated_attendance_needs_its_dates_and_maps_organisation(client, server):
    frame = pl.concat(list(resources.aggregated_attendance(client, KEY, DAY)))
    assert frame.height == PUPILS * 2
    assert frame["organisation_id"].unique().to_list() == [ORG]
    assert frame["offered_sum"].sum() == PUPILS * 120 and frame["valid_absence_sum"].sum() == (
        PUPILS * 10
    )
    with pytest.raises(SourceError, match="400 400_invalid_filter"):
        list(client.pages("/aggregatedAttendance", {"startDate": "2025-09-01"}))


def test_deleted_entities_after_a_time_are_paged(client, server):
    store = server.store
    ids = [entity_id("absence", i) for i in range(3)]
    store.absences = pl.DataFrame(
        {
            "absence_id": ids,
            "student_id": [entity_id("person", i) for i in range(3)],
            "organisation_id": [ORG] * 3,
            "date": [DAY] * 3,
            "type": ["Anmäld frånvaro"] * 3,
            "meta_modified": ["2025-09-03T07:30:00+00:00"] * 3,
        },
        schema=store.absences.schema,
    )
    before = Store.now()
    for absence_id in ids:
        store.delete_absence(absence_id)
    one_a_page = settings(server.url, page_size=1)
    with SS12000Client(one_a_page, server.client_secret) as paged:
        frame = resources.deleted(paged, KEY, before, ["Absence"])
    # kept as the same keyed hash as the absences' ids, never raw
    assert frame.to_dicts() == [
        {"entity": "Absence", "id": resources.platform_ref(KEY, i)} for i in ids
    ]
    asked = [q for p, q in server.requests if p == "/deletedEntities"]
    assert len(asked) == 3 and all(set(q) == {"pageToken", "limit"} for q in asked[1:])
    assert resources.deleted(client, KEY, Store.now(), ["Absence"]).height == 0


def test_the_server_checks_requests_against_the_spec(client, server):
    """Every parameter the spec lists is accepted; anything else is a 400 with its reason."""
    day = DAY.isoformat()
    body = client.get(
        "/aggregatedAttendance",
        {
            "startDate": day,
            "endDate": day,
            "schoolType": ["GR", "GRS", "FKLASS"],
            "expand": ["activity", "student"],
            "expandReferenceNames": "true",
            "limit": 5,
        },
    )
    assert len(body["data"]) == 5
    client.get(
        "/persons",
        {
            "relationship.entity.type": "enrolment",
            "sortkey": "ModifiedDesc",
            "relationship.organisation": ORG,
            "expandReferenceNames": "false",
        },
    )
    client.get("/organisations", {"type": ["Skolenhet", "Skola"], "schoolTypes": ["GR"]})
    refused = {
        "an unknown parameter": ("/persons", {"meta.modifiedAfter": "2025-01-01T00:00:00Z"}),
        "an enum value outside the spec": (
            "/aggregatedAttendance",
            {"startDate": day, "endDate": day, "schoolType": "XX"},
        ),
        "a required parameter missing": ("/aggregatedAttendance", {"startDate": day}),
        "a date that is not one": (
            "/aggregatedAttendance",
            {"startDate": "3 sept", "endDate": day},
        ),
    }
    for what, (path, params) in refused.items():
        with pytest.raises(SourceError, match="400 400_invalid_filter"):
            client.get(path, params)
        assert what
    assert server.spec_errors == []


def test_spec_examples_parse_through_the_same_code():
    page = json.loads((SAMPLES / "aggregated_attendance_page.json").read_text())
    row = resources.aggregated_frame(page["data"], KEY).row(0, named=True)
    assert (row["attendance_sum"], row["valid_absence_sum"], row["invalid_absence_sum"]) == (
        2400,
        180,
        120,
    )
    assert (row["other_attendance_sum"], row["offered_sum"], row["start_date"]) == (
        60,
        2820,
        "2024-08-19",
    )
    org = json.loads((SAMPLES / "organisation_schoolunit.json").read_text())
    assert resources.organisation_frame([org])["school_unit_code"].to_list() == ["12345678"]
    absences = json.loads((SAMPLES / "absences_page.json").read_text())
    assert resources.absence_frame(absences["data"], KEY)["type"].to_list() == ["Anmäld frånvaro"]
    person = json.loads((SAMPLES / "sampledata_person.json").read_text())
    frame = resources.person_frame([person], KEY)
    assert frame["pupil_key"].to_list() == [pseudonym(KEY, "200112240129")]
    assert "200112240129" not in frame.write_ndjson()
    assert frame["enrolments"].list.len().to_list() == [len(person["enrolments"])]


def test_a_short_lived_token_is_renewed_before_it_expires(server):
    short = SS12000Server(small_store(), token_lifetime=1)
    with running(short) as url, SS12000Client(settings(url), short.client_secret) as client:
        list(client.pages("/organisations"))
        time.sleep(0.6)  # past half the lifetime: renewed before the server would refuse
        list(client.pages("/organisations"))
    assert short.token_requests == 2
    assert [path for path, _ in short.requests] == ["/organisations", "/organisations"]


def test_half_configured_settings_name_the_missing_keys():
    from lagesbild.errors import ConfigError

    with pytest.raises(ConfigError, match="set LAGESBILD_SS12000__TOKEN_URL, LAGESBILD_SS12"):
        SS12000Client(SS12000Settings(base_url="http://127.0.0.1:9"), "secret")
    with pytest.raises(ConfigError, match="client secret missing"):
        settings("http://127.0.0.1:9").resolve_client_secret()
