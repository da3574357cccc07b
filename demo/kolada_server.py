"""A local Kolada v3 for the demo and the tests: same paths, envelope, paging and limits.

Shaped by the real samples (tests/connectors/samples/kolada): the envelope
`{values, count, next_url, previous_url}` (count = items on this page), data rows
`{kpi, municipality|ou, period, values: [{count, gender, status, value}]}`, `isdeleted` on a
withdrawn row, KPI metadata objects as in `/v3/kpi`. Limits as the real API: at most 25
values per path list and `per_page` at most 5000 (400 otherwise, FastAPI's `{"detail": …}`).

Values are deterministic for ANY municipality code (like Kolada's 290 municipalities and the
country/regions): `KoladaData.value` is the ground truth the tests compare marts against.
Revisions and deletions can be switched on between runs (`revise`, `delete`), each stamped
with the day it happened, which `from_date` filters on. Faults: `state.faults.add(...)`.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from datetime import date, timedelta
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from demo.servers import CallLog, Faults, fault_response

MAX_PATH_VALUES = 25
MAX_PER_PAGE = 5000
FIRST_YEAR, LAST_YEAR = 2019, 2025
PUBLISHED = date(2026, 1, 15)  # the day the demo's original values were published

# id: (title, divided by gender, base value, yearly change, spread between municipalities,
#      preliminary: the latest year is preliminary until publication_date)
KPIS = {
    "U07452": ("Anmälda brott om skadegörelse, antal/100 000 inv", False, 980.0, -15.0, 300.0,
               True),
    "N33820": ("Psykisk ohälsa bland barn och unga, andel (%)", True, 11.0, 0.4, 3.0, False),
    "N15419": (
        "Elever i åk 9 som uppnått betygskriterierna i alla ämnen, kommunala skolor, andel (%)",
        True, 74.0, 0.3, 8.0, False,
    ),
    "N15643": (
        'Elever i åk 8: Känner du dig trygg i skolan? Andel som svarat "Helt och hållet" eller '
        '"Till stor del", (%)',
        True, 84.0, -0.5, 6.0, False,
    ),
    "N02797": ("Invånare 16-24 år som varken arbetar eller studerar, andel (%)", True, 6.5, -0.1,
               2.0, True),
    "N17625": (
        "Gymnasieelever med indraget studiestöd pga. ogiltig frånvaro, avser läsår, hemkommun, "
        "andel (%)", True, 3.1, 0.1, 1.2, False,
    ),
    "U09802": ("Deltagartillfällen i idrottsföreningar, antal/inv 13-16 år", True, 38.0, -0.6,
               9.0, False),
}  # fmt: skip


def _unit(*parts) -> float:
    """A deterministic number in [0, 1) from the parts."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class Change:
    value: float | None
    day: date
    deleted: bool = False


@dataclass
class KoladaData:
    """The demo's truth: a value for every KPI × municipality × year × gender, plus changes."""

    today: date = field(default_factory=date.today)
    changes: dict[tuple[str, str, int, str], Change] = field(default_factory=dict)

    def original(self, kpi: str, area: str, year: int, gender: str) -> float | None:
        _, _, base, trend, spread, _ = KPIS[kpi]
        if _unit("missing", kpi, area, year) < 0.04:
            return None  # missing or secret ("..") in Kolada: value null
        level = base + spread * (_unit(kpi, area) - 0.5) + trend * (year - FIRST_YEAR)
        level += spread * 0.1 * (_unit(kpi, area, year) - 0.5)
        if gender != "T":
            level *= 1.06 if gender == ("K" if kpi in ("N33820", "N15419") else "M") else 0.94
        return round(max(level, 0.0), 1)

    def genders(self, kpi: str) -> list[str]:
        return ["K", "M", "T"] if KPIS[kpi][1] else ["T"]

    def value(self, kpi: str, area: str, year: int, gender: str) -> tuple[float | None, bool]:
        """(current value, deleted)."""
        change = self.changes.get((kpi, area, year, gender))
        if change is None:
            return self.original(kpi, area, year, gender), False
        return change.value, change.deleted

    def updated(self, kpi: str, area: str, year: int) -> date:
        days = [c.day for (k, a, y, _), c in self.changes.items() if (k, a, y) == (kpi, area, year)]
        return max(days, default=PUBLISHED)

    def revise(self, kpi: str, area: str, year: int, gender: str, value: float, day: date):
        self.changes[(kpi, area, year, gender)] = Change(value, day)

    def delete(self, kpi: str, area: str, year: int, day: date) -> None:
        for gender in self.genders(kpi):
            self.changes[(kpi, area, year, gender)] = Change(None, day, deleted=True)

    def kpi_metadata(self, kpi: str) -> dict:
        title, by_gender, *_, preliminary = KPIS[kpi]
        return {
            "id": kpi,
            "title": title,
            "description": f"{title}. Källa: lagesbild demo (fictional values).",
            "is_divided_by_gender": by_gender,
            "municipality_type": "K",
            "auspice": None,
            "operating_area": "Demo",
            "perspective": "Kvalitet och resultat",
            "prel_publication_date": (PUBLISHED.isoformat() if preliminary else None),
            "publication_date": (
                (self.today + timedelta(days=60)).isoformat() if preliminary else "2026-01-15"
            ),
            "publ_period": str(LAST_YEAR),
            "has_ou_data": False,
        }


@dataclass
class KoladaState:
    data: KoladaData = field(default_factory=KoladaData)
    faults: Faults = field(default_factory=Faults)
    log: CallLog = field(default_factory=CallLog)
    lock: threading.Lock = field(default_factory=threading.Lock)


NEXT_URL_HOST = "http://api.kolada.se"  # the real v3 next_url is http:// (a redirect away)


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


def _page(request: Request, items: list[dict], page: int, per_page: int) -> dict:
    start = (page - 1) * per_page
    chunk = items[start : start + per_page]

    def link(number: int) -> str:
        query = {k: v for k, v in request.query_params.items() if k != "page"}
        # as the real API: http:// and its public host, whatever the request came to
        return f"{NEXT_URL_HOST}{request.url.path}?{urlencode({**query, 'page': number})}"

    return {
        "values": chunk,
        "count": len(chunk),
        "next_url": link(page + 1) if start + per_page < len(items) else None,
        "previous_url": link(page - 1) if page > 1 else None,
    }


def create_app(state: KoladaState | None = None) -> FastAPI:
    state = state or KoladaState()
    app = FastAPI(title="Kolada v3 (lagesbild demo)")
    app.state.kolada = state

    def common(request: Request):
        state.log.record(f"{request.method} {request.url.path}", dict(request.query_params))
        return fault_response(state.faults.take())

    def lists(*values: str) -> list[list[str]] | JSONResponse:
        parsed = [[v for v in value.split(",") if v] for value in values]
        for items in parsed:
            if len(items) > MAX_PATH_VALUES:
                return _error(f"Too many values in list: {len(items)} (at most {MAX_PATH_VALUES})")
        return parsed

    def paging(request: Request) -> tuple[int, int, date | None] | JSONResponse:
        try:
            per_page = int(request.query_params.get("per_page", MAX_PER_PAGE))
            page = int(request.query_params.get("page", 1))
            raw = request.query_params.get("from_date")
            from_date = date.fromisoformat(raw) if raw else None
        except ValueError:
            return _error("Invalid query parameter")
        if not 1 <= per_page <= MAX_PER_PAGE or page < 1:
            return _error(f"per_page must be between 1 and {MAX_PER_PAGE}")
        return page, per_page, from_date

    def rows(kpis, areas, years, from_date, area_key) -> list[dict]:
        out = []
        for kpi in kpis:
            if kpi not in KPIS:
                continue
            for area in areas:
                for year in years:
                    if not FIRST_YEAR <= year <= LAST_YEAR:
                        continue  # no data yet (or any more) for that year
                    if from_date is not None and state.data.updated(kpi, area, year) < from_date:
                        continue
                    entries, deleted = [], False
                    for gender in state.data.genders(kpi):
                        value, gone = state.data.value(kpi, area, year, gender)
                        deleted = deleted or gone
                        entries.append({"count": 1, "gender": gender, "status": "", "value": value})
                    row = {"kpi": kpi, area_key: area, "period": year, "values": entries}
                    if deleted:
                        row["isdeleted"] = True
                    out.append(row)
        return out

    def data(request, kpi, areas, year, area_key):
        fault = common(request)
        if fault is not None:
            return fault
        parsed = lists(kpi, areas, year)
        if isinstance(parsed, JSONResponse):
            return parsed
        kpis, area_list, years = parsed
        try:
            year_list = [int(y) for y in years]
        except ValueError:
            return _error("Invalid year")
        options = paging(request)
        if isinstance(options, JSONResponse):
            return options
        page, per_page, from_date = options
        with state.lock:
            items = rows(kpis, area_list, year_list, from_date, area_key)
        return _page(request, items, page, per_page)

    @app.get("/v3/data/kpi/{kpi}/municipality/{municipality}/year/{year}")
    def municipality_data(request: Request, kpi: str, municipality: str, year: str):
        return data(request, kpi, municipality, year, "municipality")

    @app.get("/v3/oudata/kpi/{kpi}/ou/{ou}/year/{year}")
    def ou_data(request: Request, kpi: str, ou: str, year: str):
        return data(request, kpi, ou, year, "ou")

    @app.get("/v3/kpi/{ids}")
    def kpi(request: Request, ids: str):
        fault = common(request)
        if fault is not None:
            return fault
        parsed = lists(ids)
        if isinstance(parsed, JSONResponse):
            return parsed
        items = [state.data.kpi_metadata(i) for i in parsed[0] if i in KPIS]
        return _page(request, items, 1, MAX_PER_PAGE)

    return app
