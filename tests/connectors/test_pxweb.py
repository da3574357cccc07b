"""The PxWeb connector: the real samples, and the local PxWeb (SCB v2 and a v1 like
Folkhälsomyndigheten's) with its cell and call limits and faults. Expected values come from
the server's data model (`population_value`, `alcohol_value`)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import polars as pl
import pytest

from connectors.http import SourceError
from connectors.pxweb.client import PxWebClient, split_selection
from connectors.pxweb.jsonstat import read_jsonstat2, read_px_json
from connectors.pxweb.settings import PxWebSettings
from demo.generate import AREAS
from demo.pxweb_server import ALCOHOL, POPULATION, PxWebState, alcohol_value, create_app
from demo.pxweb_server import population_value as population
from demo.servers import serve

SAMPLES = Path(__file__).resolve().parent / "samples" / "pxweb"  # real samples, see README
POPULATION_SELECTION = {
    "Region": ["*"], "Alder": ["*"], "Kon": ["1", "2"], "ContentsCode": ["000007Y7"],
    "Tid": ["2023", "2024"],
}  # fmt: skip


def sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


def test_real_samples_parse():
    data = read_jsonstat2(sample("scb_v2_TAB638_data_jsonstat2.json"))
    assert data.table_id == "TAB638" and data.updated == "2025-02-21T07:00:00Z"
    assert data.frame.rows(named=True) == [
        {"Region": "00", "Civilstand": "OG", "Alder": "0", "Kon": "1",
         "ContentsCode": "BE0101N1", "Tid": "2024", "value": 50937.0, "status": None}
    ]  # fmt: skip
    v1 = read_px_json(sample("scb_v1_response_json_BefolkningNy.json"))
    assert v1.frame.select("Tid", "ContentsCode", "value").rows() == [
        ("2010", "BE0101N1", 9415570.0), ("2010", "BE0101N2", 74888.0),
        ("2011", "BE0101N1", 9482855.0), ("2011", "BE0101N2", 67285.0),
        ("2012", "BE0101N1", 9555893.0), ("2012", "BE0101N2", 73038.0),
    ]  # fmt: skip
    assert v1.updated == "2025-02-21T07:00:00Z"


def test_the_real_config_sets_the_cell_limit():
    import httpx

    config = (SAMPLES / "scb_v2_config.json").read_bytes()
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=config))
    with PxWebClient(PxWebSettings(), transport=transport) as c:
        assert c.max_cells == 100_000  # ours is lower than SCB's 150,000
    with PxWebClient(PxWebSettings(pxweb_max_cells=10**6), transport=transport) as c:
        assert c.max_cells == 150_000


def test_jsonstat2_any_dimensions_row_major():
    body = {
        "class": "dataset", "id": ["a", "b", "c"], "size": [2, 1, 3],
        "dimension": {
            "a": {"category": {"index": {"x": 0, "y": 1}}},
            "b": {"category": {"index": ["only"]}},
            "c": {"category": {"index": {"0180C1010_DeSO2025": 0, "2": 1, "3": 2}}},
        },
        "value": [1, 2, None, 4, 5, 6], "status": {"2": ".."},
    }  # fmt: skip
    frame = read_jsonstat2(body).frame
    assert frame.rows() == [
        ("x", "only", "0180C1010", 1.0, None), ("x", "only", "2", 2.0, None),
        ("x", "only", "3", None, ".."), ("y", "only", "0180C1010", 4.0, None),
        ("y", "only", "2", 5.0, None), ("y", "only", "3", 6.0, None),
    ]  # fmt: skip
    with pytest.raises(SourceError, match="5 values for 6 cells"):
        read_jsonstat2({**body, "value": [1, 2, 3, 4, 5]})


def test_split_selection_stays_under_the_limit():
    selection = {"a": [str(i) for i in range(10)], "b": ["1", "2"], "c": ["x", "y", "z"]}
    parts = split_selection(selection, 12)
    assert all(len(p["a"]) * len(p["b"]) * len(p["c"]) <= 12 for p in parts)
    assert sorted(a for p in parts for a in p["a"]) == sorted(selection["a"])
    assert len(parts) == 5


@pytest.fixture(scope="module")
def pxweb():
    state = PxWebState(max_cells=1000, max_calls=3, time_window=1)
    with serve(create_app(state)) as url:
        yield state, url


@pytest.fixture
def state(pxweb):
    state, _ = pxweb
    state.faults.clear()
    state.log.clear()
    return state


def scb(pxweb, **options) -> PxWebClient:
    options = {"pxweb_calls": 3, "pxweb_seconds": 1.2, "backoff": 0.05, **options}
    return PxWebClient(PxWebSettings(scb_url=f"{pxweb[1]}/api/v2", **options), "scb")


def test_v2_population_split_under_the_cell_limit_and_suffixes_stripped(pxweb, state):
    with scb(pxweb) as c:
        data = c.fetch(POPULATION, POPULATION_SELECTION)
    frame = data.frame
    assert frame.height == 9 * 102 * 2 * 2
    assert set(frame["Region"]) == {code for code, _ in AREAS} | {"1299"}  # no _DeSO2025
    for row in frame.sample(50, seed=1).iter_rows(named=True):
        assert row["value"] == population(row["Region"], row["Alder"], row["Kon"], row["Tid"])
    posts = [p for _, p, _ in state.log.calls if p.startswith("POST")]
    assert len(posts) == 4  # 3,672 cells, at most 1,000 per request (a 403 otherwise)
    assert data.updated == "2025-02-21T07:00:00Z"


def test_calls_stay_within_the_rate_limit(pxweb, state):
    with scb(pxweb) as c:  # 3 calls per 1.2 s: under the server's 3 per second, with margin
        c.fetch(POPULATION, POPULATION_SELECTION)
        c.fetch(POPULATION, {**POPULATION_SELECTION, "Tid": ["2022"]})
    assert len(state.log.calls) == 11  # config, 2 × (info, metadata), 4 + 2 data
    assert state.log.max_in_window(1.0) <= 3  # so the server never answered 429


def fohm_client(pxweb) -> PxWebClient:
    fohm = PxWebSettings(fohm_url=f"{pxweb[1]}/Folkhalsodata/api/v1/sv", pxweb_calls=3,
                         pxweb_seconds=1.2)  # fmt: skip
    return PxWebClient(fohm, "fohm")


def test_v1_table_shaped_like_folkhalsomyndighetens_selected_from_its_metadata(pxweb, state):
    """No ContentsCode: the measure is a value code of whichever variable holds it."""
    from flows.statistics.catalogue import contents_selection

    with fohm_client(pxweb) as c:
        info = c.table(ALCOHOL)
        assert list(info.variables) == [
            "Region",
            "Alkoholvanor",
            "Ålder",
            "Andel och konfidensintervall",
            "Kön",
            "År",
        ]
        selection = {
            "Region": ["12", "1299"],
            "Kön": ["00"],
            "Ålder": ["16-29"],
            "År": ["*"],
            "Alkoholvanor": ["Riskabla alkoholvanor"],
            **contents_selection(info.variables, "Andel"),
        }
        data = c.fetch(ALCOHOL, selection, info=info)
    assert selection["Andel och konfidensintervall"] == ["Andel"]
    assert info.updated == "2025-06-10T09:30:00"
    expected = {
        (r, y): alcohol_value(r, "3", "16-29", y, "Andel")
        for r in ("12", "1299") for y in ("2021", "2022", "2023", "2024")
    }  # fmt: skip
    got = {(r["Region"], r["År"]): r["value"] for r in data.frame.iter_rows(named=True)}
    assert got == expected


def test_v1_limit_read_from_its_config_and_kept(pxweb, state):
    """The v1 `?config` maxValues is the limit (Folkhälsomyndigheten: 1,000; here 300): 8
    regions x 3 measures x 2 ages x 3 sexes x 4 years = 576 cells go in two requests."""
    state.v1_max_values = 300
    try:
        with fohm_client(pxweb) as c:
            assert c.max_cells == 300
            everything = {v: ["*"] for v in c.table(ALCOHOL).variables}
            data = c.fetch(ALCOHOL, everything)
    finally:
        state.v1_max_values = 1_000
    assert data.frame.height == 8 * 3 * 2 * 3 * 4
    posts = [p for _, p, _ in state.log.calls if p.startswith("POST")]
    assert len(posts) == 2  # no 403: the split came from the config
    assert ("GET /Folkhalsodata/api/v1/sv/", {"config": ""}) in [
        (p, q) for _, p, q in state.log.calls
    ]


def test_a_catalogued_measure_code_in_no_variable_is_a_clear_error():
    from flows.statistics.catalogue import contents_selection
    from lagesbild.errors import ConfigError

    with pytest.raises(ConfigError, match="'000007Y7' is in no variable"):
        contents_selection({"Region": ["1299"], "Kön": ["00"]}, "000007Y7")


def test_faults_retried_or_clear(pxweb, state):
    state.faults.add("429", retry_after=1)
    state.faults.add("500")
    with scb(pxweb) as c:
        data = c.fetch(POPULATION, {**POPULATION_SELECTION, "Region": ["1299"]})
    assert data.frame.filter(pl.col("Alder") == "tot")["value"].to_list() == [
        population("1299", "tot", k, t) for k in ("1", "2") for t in ("2023", "2024")
    ]
    state.faults.add("malformed")
    with scb(pxweb) as c, pytest.raises(SourceError, match="not JSON"):
        c.table(POPULATION)
    with scb(pxweb) as c, pytest.raises(SourceError, match="no variable 'Kommun'"):
        c.fetch(POPULATION, {"Kommun": ["1299"]})


ONE_AREA = {**POPULATION_SELECTION, "Region": ["1299"]}  # 408 cells: one request


def test_retry_after_as_an_http_date_is_waited(pxweb, state):
    retry_at = math.ceil(time.time()) + 1  # an HTTP-date has whole seconds
    state.faults.add("429", retry_at=retry_at)
    with scb(pxweb) as c:
        c.fetch(POPULATION, ONE_AREA)
    calls = [(t, p) for t, p, _ in state.log.calls]
    assert [p for _, p in calls] == [
        f"GET /api/v2/tables/{POPULATION}", f"GET /api/v2/tables/{POPULATION}",
        f"GET /api/v2/tables/{POPULATION}/metadata", "GET /api/v2/config",
        f"POST /api/v2/tables/{POPULATION}/data",
    ]  # fmt: skip
    assert retry_at <= calls[1][0] < retry_at + 1.0


def test_a_403_rate_limit_is_retried_a_403_cell_limit_is_split(pxweb, state):
    state.faults.add("403")  # SCB's older answer to too many calls
    with scb(pxweb) as c:
        assert c.fetch(POPULATION, ONE_AREA).frame.height == 408
    assert len(state.log.calls) == 5  # info twice, metadata, config, data

    state.log.clear()
    with scb(pxweb) as c:
        assert c.max_cells == 1000  # the server's maxDataCells
        state.max_cells = 100  # ... which it lowers before the data request
        try:
            data = c.fetch(POPULATION, ONE_AREA)
        finally:
            state.max_cells = 1000
        assert c.max_cells == 102  # halved until the parts passed; kept for what follows
    assert data.frame.height == 408
    assert data.frame.filter(pl.col("Alder") == "tot")["value"].to_list() == [
        population("1299", "tot", k, t) for k in ("1", "2") for t in ("2023", "2024")
    ]
    posts = [p for _, p, _ in state.log.calls if p.startswith("POST")]
    assert len(posts) == 1 + (1 + 3) * 2  # 408 refused; each half refused, then 3 parts


def test_exhausted_retries_give_one_clear_message(pxweb, state):
    state.faults.add("503", times=None)
    try:
        with scb(pxweb, attempts=2) as c, pytest.raises(SourceError) as failed:
            c.table(POPULATION)
    finally:
        state.faults.clear()
    assert len(state.log.calls) == 2
    url = f"{pxweb[1]}/api/v2"
    assert str(failed.value) == (
        f"PxWeb {url} kept failing on GET {url}/tables/{POPULATION} after 2 attempts "
        '(last: HTTP 503: {"detail":"Internal server error"}). The server is busy or failing; '
        f"nothing from PxWeb {url} was published in this run and the previous data stays; "
        "the next run asks again."
    )
