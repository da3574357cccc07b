"""The Kolada v3 connector: the real samples, and the local Kolada server with its limits and
faults. Expected values come from the server's data model (`KoladaData`)."""

from __future__ import annotations

import json
import math
import socket
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from connectors.http import SourceError
from connectors.kolada.client import KoladaClient, parse_data_page, parse_kpi_page
from connectors.kolada.settings import KoladaSettings
from demo.kolada_server import KPIS, KoladaState, create_app
from demo.servers import serve

SAMPLES = Path(__file__).resolve().parent / "samples" / "kolada"  # real samples, see README
YEARS = range(2019, 2026)


@pytest.fixture(scope="module")
def kolada():
    state = KoladaState()
    with serve(create_app(state)) as url:
        yield state, f"{url}/v3"


@pytest.fixture
def state(kolada):
    state, _ = kolada
    state.faults.clear()
    state.log.clear()
    state.data.changes.clear()
    return state


def client(kolada, **options) -> KoladaClient:
    options = {"kolada_calls": 100, "backoff": 0.01, **options}
    return KoladaClient(KoladaSettings(kolada_url=kolada[1], **options))


def expected(state, kpis, areas, years) -> set[tuple]:
    return {
        (k, a, y, g, state.data.value(k, a, y, g)[0])
        for k in kpis for a in areas for y in years for g in state.data.genders(k)
    }  # fmt: skip


def as_set(values) -> set[tuple]:
    return {(v.kpi, v.area, v.period, v.gender, v.value) for v in values}


def test_real_samples_parse():
    data = json.loads((SAMPLES / "v3_data_response_shape.json").read_text(encoding="utf-8"))
    values, next_url = parse_data_page(data)
    assert next_url is None
    assert [(v.kpi, v.area, v.period, v.gender, v.value) for v in values] == [
        ("U07452", "0180", 2023, "T", 1234.5),
        ("N15419", "0180", 2024, "K", 80.1),
        ("N15419", "0180", 2024, "M", 76.3),
        ("N15419", "0180", 2024, "T", 78.2),
    ]
    assert not any(v.is_deleted for v in values)
    catalogue = json.loads((SAMPLES / "v3_kpi_catalog_subset.json").read_text(encoding="utf-8"))
    kpis = {k["id"]: k for k in parse_kpi_page(catalogue)}
    assert kpis["U07452"]["title"] == "Anmälda brott om skadegörelse, antal/100 000 inv"
    assert kpis["N33820"]["is_divided_by_gender"] is True
    first3 = json.loads((SAMPLES / "v3_kpi_page1_first3.json").read_text(encoding="utf-8"))
    assert [k["id"] for k in parse_kpi_page(first3)] == ["N00003", "N00005", "N00009"]


def test_paging_follows_next_url(kolada, state):
    with client(kolada, kolada_per_page=7) as c:
        values = list(c.data(["N33820", "U07452"], ["1299", "0012", "0000"], YEARS))
    assert as_set(values) == expected(state, ["N33820", "U07452"], ["1299", "0012", "0000"], YEARS)
    assert len(values) == 2 * 3 * 7 * 2  # rows: N33820 has K/M/T values, U07452 T only → 84
    assert len(state.log.calls) == 6  # 42 rows at 7 per page
    pages = [q.get("page") for _, _, q in state.log.calls]
    assert pages == [None, "2", "3", "4", "5", "6"]


def test_next_url_is_followed_under_our_base_url_whatever_its_scheme_and_host(kolada, state):
    """The real v3 next_url is http://api.kolada.se/v3/…?page=2 (see the real sample) and a
    redirect to https is not followed: only its path after /v3 and its query are used."""
    first3 = json.loads((SAMPLES / "v3_kpi_page1_first3.json").read_text(encoding="utf-8"))
    assert first3["next_url"].startswith("http://api.kolada.se/v3/")
    with client(kolada, kolada_per_page=7) as c:
        assert c._relative(first3["next_url"]) == "kpi?is_available_for_ou=true&page=2"
        values = list(c.data(["U07452"], ["1299", "0012", "0000"], YEARS))
    assert len(values) == 3 * 7 and len(state.log.calls) == 3  # pages 1-3 of our server


def test_long_lists_are_chunked_to_25(kolada, state):
    municipalities = [f"12{n:02d}" for n in range(60, 90)]  # 30 codes
    with client(kolada) as c:
        values = list(c.data(["U07452"], municipalities, YEARS))
    assert as_set(values) == expected(state, ["U07452"], municipalities, YEARS)
    lists = [p.split("/municipality/")[1].split("/")[0].split(",") for _, p, _ in state.log.calls]
    assert [len(x) for x in lists] == [25, 5]


def test_the_server_refuses_26_values(kolada, state):
    with client(kolada) as c, pytest.raises(SourceError, match="HTTP 400"):
        c.http.request_json("GET", f"data/kpi/U07452/municipality/{','.join(['1299'] * 26)}"
                                   "/year/2024")  # fmt: skip
    assert len(state.log.calls) == 1  # a 400 is not retried


def test_from_date_revisions_and_deletions(kolada, state):
    day = date(2026, 3, 2)
    state.data.revise("N33820", "1299", 2024, "K", 14.2, day)
    state.data.delete("U07452", "1263", 2022, day)
    with client(kolada) as c:
        changed = list(c.data(KPIS, ["1299", "1263"], YEARS, from_date=day))
        later = list(c.data(KPIS, ["1299", "1263"], YEARS, from_date=day + timedelta(days=1)))
    assert later == []
    assert [(v.kpi, v.area, v.period, v.gender, v.value, v.is_deleted) for v in changed] == [
        ("U07452", "1263", 2022, "T", None, True),
        ("N33820", "1299", 2024, "K", 14.2, False),
        ("N33820", "1299", 2024, "M", state.data.original("N33820", "1299", 2024, "M"), False),
        ("N33820", "1299", 2024, "T", state.data.original("N33820", "1299", 2024, "T"), False),
    ]
    assert [q["from_date"] for _, _, q in state.log.calls] == ["2026-03-02", "2026-03-03"]


def test_kpi_metadata(kolada, state):
    with client(kolada) as c:
        meta = {k["id"]: k for k in c.kpis(["U07452", "N02797", "N15419"])}
    assert meta["U07452"]["publ_period"] == "2025"
    assert meta["U07452"]["prel_publication_date"] == "2026-01-15"
    assert meta["N15419"]["prel_publication_date"] is None


def test_rate_limit_is_kept_at_the_server(kolada, state):
    started = time.monotonic()
    with client(kolada, kolada_calls=4, kolada_seconds=1.0, kolada_per_page=1) as c:
        values = list(c.data(["U07452"], ["1299", "0012"], range(2020, 2025)))
    assert len(values) == 10 and len(state.log.calls) == 10
    # 300 ms for the time a busy machine may hold a request between client and server
    assert state.log.max_in_window(0.7) <= 4
    assert time.monotonic() - started >= 2.0  # 10 calls at 4 per second


def test_429_is_retried_after_retry_after_in_seconds(kolada, state):
    state.faults.add("429", retry_after=1)
    with client(kolada) as c:
        values = list(c.data(["U07452"], ["1299"], YEARS))
    assert as_set(values) == expected(state, ["U07452"], ["1299"], YEARS)
    (first, _, _), (second, _, _) = state.log.calls  # exactly one retry
    assert 1.0 <= second - first < 2.0  # the header's second, not our 0.01 s backoff


def test_429_is_retried_after_retry_after_as_an_http_date(kolada, state):
    retry_at = math.ceil(time.time()) + 1  # an HTTP-date has whole seconds
    state.faults.add("429", retry_at=retry_at)
    with client(kolada) as c:
        values = list(c.data(["U07452"], ["1299"], YEARS))
    assert as_set(values) == expected(state, ["U07452"], ["1299"], YEARS)
    (_, _, _), (second, _, _) = state.log.calls
    assert retry_at <= second < retry_at + 1.0


def test_a_retry_after_beyond_max_backoff_is_capped(kolada, state):
    state.faults.add("429", retry_after=3600)
    with client(kolada, max_backoff=0.2) as c:
        list(c.data(["U07452"], ["1299"], YEARS))
    (first, _, _), (second, _, _) = state.log.calls
    assert 0.2 <= second - first < 1.0


def test_5xx_and_timeouts_are_retried(kolada, state):
    state.faults.add("500")
    state.faults.add("503")
    state.faults.add("slow", seconds=1.0)
    with client(kolada, timeout=0.3) as c:
        values = list(c.data(["N15419"], ["1299"], YEARS))
    assert as_set(values) == expected(state, ["N15419"], ["1299"], YEARS)
    assert len(state.log.calls) == 4


def test_persistent_errors_and_malformed_bodies_are_clear_errors(kolada, state):
    state.faults.add("503", times=None)
    with client(kolada, attempts=3) as c, pytest.raises(SourceError) as failed:
        list(c.data(["N15419"], ["1299"], YEARS))
    assert len(state.log.calls) == 3
    assert str(failed.value) == (
        f"Kolada kept failing on GET {kolada[1]}/data/kpi/N15419/municipality/1299/year/"
        f"{','.join(map(str, YEARS))} after 3 attempts (last: HTTP 503: "
        '{"detail":"Internal server error"}). The server is busy or failing; nothing from '
        "Kolada was published in this run and the previous data stays; the next run asks again."
    )
    state.faults.clear()
    state.faults.add("malformed")
    with client(kolada) as c, pytest.raises(SourceError, match="not JSON"):
        list(c.data(["N15419"], ["1299"], YEARS))


def test_unusable_rows_are_named():
    with pytest.raises(SourceError, match="unknown gender"):
        parse_data_page({"values": [{"kpi": "N1", "municipality": "1299", "period": 2024,
                                     "values": [{"gender": "X", "value": 1}]}]})  # fmt: skip
    with pytest.raises(SourceError, match="no 'values' list"):
        parse_data_page({"detail": "Not found"})


def test_ou_data_for_school_units(kolada, state):
    units = ["V15E129900101", "V15E129900102"]
    with client(kolada) as c:
        values = list(c.ou_data(["N15419"], units, [2024, 2025]))
    assert as_set(values) == expected(state, ["N15419"], units, [2024, 2025])
    assert [p for _, p, _ in state.log.calls] == [
        "GET /v3/oudata/kpi/N15419/ou/V15E129900101,V15E129900102/year/2024,2025"
    ]


def test_an_unreachable_source_says_so():
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/v3"
    settings = KoladaSettings(kolada_url=url, attempts=2, backoff=0.01)
    with KoladaClient(settings) as c, pytest.raises(SourceError) as failed:
        c.kpis(["N15419"])
    assert str(failed.value) == (
        f"Kolada kept failing on GET {url}/kpi/N15419 after 2 attempts (last: ConnectError). "
        f"Is {url} reachable from this machine? Nothing from Kolada was published in this run "
        "and the previous data stays; the next run asks again."
    )
