"""A local PxWeb for the demo and the tests: SCB's PxWebApi 2 and a Folkhälsomyndigheten-style
v1 API, with the real envelopes (tests/connectors/samples/pxweb): `/config` as SCB's, table
info with `updated`, metadata as JSON-stat2 without values, data as JSON-stat2 (`id`, `size`,
`dimension.*.category.index/label`, flat row-major `value`), DeSO codes with the 2025 suffix
(`1299C0010_DeSO2025`) as SCB's DeSO 2025 tables write them.

Limits like the real ones: more than `max_cells` cells → 403 (SCB: "HTTP 403 Forbidden
markerar att maxvärdet är överskridet"), more than `max_calls` calls per `time_window`
seconds → 429. Faults: `state.faults.add(...)`; `state.touch(table)` publishes a new version
of a table (its `updated` moves, its values change by `state.revision`).

Tables (fictional values for Ekdala kommun 1299 and its 8 areas, Skåne, the country and the
comparison municipalities):
- SCB `TAB6574` population by region (DeSO and the municipality) × age (single years and
  `tot`) × sex × year 2022-2024, content `000007Y7` (Folkmängd). The municipality and `tot`
  values carry small noise, as SCB's cell-key method makes them non-additive from 2025.
- FoHM v1 `A_Folkhalsodata/B_HLV/dAlkohol/hlv1alkoxreg.px`: shaped like Folkhälsomyndigheten's
  tables, with no ContentsCode: Region × the measure variable `Alkoholvanor` × `Ålder` ×
  `Andel och konfidensintervall` (Andel and the interval's bounds) × `Kön` (00 totalt, 01 män,
  02 kvinnor) × `År` 2021-2024; `?config` says maxValues 1,000, and more is a 403.
"""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass, field
from datetime import datetime

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from demo.generate import AREAS, MUNICIPALITY_CODE
from demo.servers import CallLog, Faults, fault_response

POPULATION = "TAB6574"
ALCOHOL = "A_Folkhalsodata/B_HLV/dAlkohol/hlv1alkoxreg.px"
AGES = [*[str(a) for a in range(100)], "100+"]
AGE_BANDS = [*[f"{a}-{a + 4}" for a in range(0, 80, 5)], "80-"]  # SCB TAB6574 as published
DESO_SUFFIX = "_DeSO2025"
COMPARISON = ("1261", "1263", "1264", "1267", "1273")


def _unit(*parts) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def population_value(region: str, age: str, sex: str, year: str, revision: int = 0) -> int:
    """Inhabitants: the demo's truth for TAB6574 (region without suffix)."""
    if region == MUNICIPALITY_CODE:
        total = sum(population_value(code, age, sex, year, revision) for code, _ in AREAS)
        return total + round(4 * _unit("ckm", age, sex, year) - 2)
    if age in ("tot", "totalt"):
        ages = sum(population_value(region, a, sex, year, revision) for a in AGES)
        return ages + round(4 * _unit("ckm", region, sex, year) - 2)
    if "-" in age:  # a 5-year band as SCB's DeSO tables have them ("15-19", "80-")
        low, high = age.split("-")
        years = AGES[int(low) : int(high) + 1] if high else AGES[int(low) :]
        return sum(population_value(region, a, sex, year, revision) for a in years)
    years = 100 if age == "100+" else int(age)
    size = 800 + 600 * _unit("size", region)  # people per sex in the area
    young = 1.3 if region[4] == "A" else 1.0  # more families outside the main town
    weight = (young if years < 20 else 1.0) * max(0.0, 1.0 - (years / 95) ** 3)
    base = size * weight / 70 * (1 + 0.02 * (int(year) - 2022)) + 3 * _unit(region, age, sex)
    return round(base + revision * (1 + (years % 3)))


ALCOHOL_REGIONS = {"00": "Riket", "12": "Skåne län", MUNICIPALITY_CODE: "Ekdala"} | {
    code: f"Kommun {code}" for code in COMPARISON
}


def alcohol_value(region: str, sex: str, age: str, year: str, contents: str) -> float | None:
    if region == "1264" and year == "2021":
        return None  # too few respondents: '..' in the source, null in JSON-stat2
    level = 24.0 if age == "16-29" else 15.0
    level += 8 * (_unit("alcohol", region) - 0.5) - 0.6 * (int(year) - 2021)
    level *= {"1": 1.15, "2": 0.85, "3": 1.0}[sex]
    return round(level if contents == "Andel" else 2.0 + 3 * _unit("ki", region, year), 1)


@dataclass
class PxTable:
    label: str
    variables: dict[str, dict[str, str]]  # code → value code → text
    updated: datetime
    contents_unit: str
    v1: bool = False


def _tables(age_bands: bool = False) -> dict[str, PxTable]:
    """The demo's tables; `age_bands` serves the population as SCB's TAB6574 publishes it
    (5-year bands and `totalt`) instead of single years and `tot`."""
    regions = {f"{c}{DESO_SUFFIX}": n for c, n in AREAS} | {MUNICIPALITY_CODE: "Ekdala kommun"}
    ages = (
        {"totalt": "totalt", **{a: f"{a} år" for a in AGE_BANDS}}
        if age_bands
        else {"tot": "totalt ålder", **{a: f"{a} år" for a in AGES}}
    )
    return {
        POPULATION: PxTable(
            "Folkmängd efter region, ålder, kön och år",
            {
                "Region": regions,
                "Alder": ages,
                "Kon": {"1": "män", "2": "kvinnor"},
                "ContentsCode": {"000007Y7": "Folkmängd"},
                "Tid": {y: y for y in ("2022", "2023", "2024")},
            },
            datetime(2025, 2, 21, 7, 0),
            "antal personer",
        ),
        ALCOHOL: PxTable(
            "Riskabla alkoholvanor efter region, kön, ålder och år. Andel (%)",
            {  # as Folkhälsomyndigheten's tables: a measure variable, no ContentsCode
                "Region": ALCOHOL_REGIONS,
                "Alkoholvanor": {"Riskabla alkoholvanor": "Riskabla alkoholvanor"},
                "Ålder": {"16-29": "16-29 år", "16-84": "16-84 år"},
                "Andel och konfidensintervall": {
                    "Andel": "Andel",
                    "Konfidensintervall nedre gräns": "Konfidensintervall nedre gräns",
                    "Konfidensintervall övre gräns": "Konfidensintervall övre gräns",
                },
                "Kön": {"00": "Totalt", "01": "Män", "02": "Kvinnor"},
                "År": {y: y for y in ("2021", "2022", "2023", "2024")},
            },
            datetime(2025, 6, 10, 9, 30),
            "procent",
            v1=True,
        ),
    }


@dataclass
class PxWebState:
    max_cells: int = 150_000
    v1_max_values: int = 1_000  # Folkhälsomyndigheten's v1 `?config` maxValues
    max_calls: int = 30
    time_window: int = 10
    tables: dict[str, PxTable] = field(default_factory=_tables)
    revision: int = 0  # added to the population values of the current version
    faults: Faults = field(default_factory=Faults)
    log: CallLog = field(default_factory=CallLog)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def touch(self, table: str, updated: datetime) -> None:
        """Publish a new version of a table (population values move by one revision)."""
        self.tables[table].updated = updated
        if table == POPULATION:
            self.revision += 1

    def value(self, table: str, cell: dict[str, str]) -> float | None:
        if table == POPULATION:
            region = cell["Region"].removesuffix(DESO_SUFFIX)
            return population_value(region, cell["Alder"], cell["Kon"], cell["Tid"], self.revision)
        sex = {"00": "3", "01": "1", "02": "2"}[cell["Kön"]]
        contents = "Andel" if cell["Andel och konfidensintervall"] == "Andel" else "KI"
        return alcohol_value(cell["Region"], sex, cell["Ålder"], cell["År"], contents)


def _problem(status: int, title: str) -> JSONResponse:
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status},
        status_code=status,
        media_type="application/problem+json",
    )


def _dataset(state: PxWebState, name: str, selection: dict[str, list[str]] | None) -> dict:
    table = state.tables[name]
    ids = list(table.variables)
    chosen = {v: (selection or {}).get(v, list(table.variables[v])) for v in ids}
    dataset = {
        "version": "2.0",
        "class": "dataset",
        "label": table.label,
        "source": "Folkhälsomyndigheten" if table.v1 else "SCB",
        "updated": table.updated.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "role": {"time": ["Tid"], "metric": ["ContentsCode"]},
        "id": ids,
        "size": [len(chosen[v]) for v in ids],
        "dimension": {
            v: {
                "label": v.lower(),
                "category": {
                    "index": {c: i for i, c in enumerate(chosen[v])},
                    "label": {c: table.variables[v][c] for c in chosen[v]},
                },
                "extension": {"elimination": False, "show": "value"},
            }
            for v in ids
        },
        "extension": {"px": {"tableid": name.rsplit("/", 1)[-1], "language": "sv"}},
    }
    if selection is not None:
        values = []
        for combination in _product([chosen[v] for v in ids]):
            values.append(state.value(name, dict(zip(ids, combination, strict=True))))
        dataset["value"] = values
    return dataset


def _product(lists: list[list[str]]):
    if not lists:
        yield ()
        return
    for head in lists[0]:
        for rest in _product(lists[1:]):
            yield (head, *rest)


def create_app(state: PxWebState | None = None) -> FastAPI:
    state = state or PxWebState()
    app = FastAPI(title="PxWeb (lagesbild demo)")
    app.state.pxweb = state

    def admit(request: Request):
        """Count the call; answer 429 above the window's limit, or a switched-on fault."""
        now_calls = state.log.calls
        state.log.record(f"{request.method} {request.url.path}", dict(request.query_params))
        recent = [t for t, _, _ in now_calls if now_calls[-1][0] - t < state.time_window]
        if len(recent) > state.max_calls:
            return _problem(429, "Too many requests in the time window")
        return fault_response(state.faults.take(), '{"version": "2.0", "class": "datas')

    def selected(name: str, pairs: list[tuple[str, list[str]]]):
        table = state.tables[name]
        selection = {}
        for variable, codes in pairs:
            if variable not in table.variables:
                return _problem(400, f"Unknown variable {variable}")
            known = list(table.variables[variable])
            chosen = known if codes == ["*"] else codes
            if any(c not in table.variables[variable] for c in chosen):
                return _problem(400, f"Unknown value code in {variable}")
            selection[variable] = chosen
        missing = [v for v in table.variables if v not in selection]
        if missing:  # these demo tables allow no elimination
            return _problem(400, f"Mandatory variables missing: {', '.join(missing)}")
        limit = state.v1_max_values if table.v1 else state.max_cells
        if math.prod(len(c) for c in selection.values()) > limit:
            return _problem(403, f"Too many cells selected (max {limit})")
        return selection

    # -- SCB PxWebApi 2 ------------------------------------------------------------------
    @app.get("/api/v2/config")
    def config(request: Request):
        return admit(request) or {
            "apiVersion": "2.3.2",
            "defaultLanguage": "sv",
            "maxDataCells": state.max_cells,
            "maxCallsPerTimeWindow": state.max_calls,
            "timeWindow": state.time_window,
            "defaultDataFormat": "json-stat2",
            "dataFormats": ["json-stat2", "csv", "px", "xlsx", "html", "json-px"],
        }

    def v2_table(name: str) -> PxTable | None:
        table = state.tables.get(name)
        return table if table is not None and not table.v1 else None

    @app.get("/api/v2/tables/{name}")
    def table_info(request: Request, name: str):
        table = v2_table(name)
        if (fault := admit(request)) is not None:
            return fault
        if table is None:
            return _problem(404, f"Table {name} not found")
        return {
            "language": "sv",
            "id": name,
            "label": table.label,
            "updated": table.updated.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "firstPeriod": next(iter(table.variables["Tid"])),
            "lastPeriod": list(table.variables["Tid"])[-1],
            "variableNames": [v.lower() for v in table.variables],
            "source": "SCB",
            "timeUnit": "Annual",
        }

    @app.get("/api/v2/tables/{name}/metadata")
    def metadata(request: Request, name: str):
        if (fault := admit(request)) is not None:
            return fault
        if v2_table(name) is None:
            return _problem(404, f"Table {name} not found")
        return _dataset(state, name, None)

    @app.post("/api/v2/tables/{name}/data")
    async def data(request: Request, name: str):
        if (fault := admit(request)) is not None:
            return fault
        if v2_table(name) is None:
            return _problem(404, f"Table {name} not found")
        try:
            body = await request.json()
            pairs = [(s["variableCode"], list(s["valueCodes"])) for s in body["selection"]]
        except (ValueError, KeyError, TypeError):
            return _problem(400, "Invalid selection")
        selection = selected(name, pairs)
        if isinstance(selection, JSONResponse):
            return selection
        with state.lock:
            return _dataset(state, name, selection)

    # -- Folkhälsomyndigheten-style PxWeb v1 ------------------------------------------------
    @app.get("/Folkhalsodata/api/v1/sv/{path:path}")
    def v1_get(request: Request, path: str):
        if (fault := admit(request)) is not None:
            return fault
        if path in ("", "/") and "config" in request.query_params:  # v1 `?config`
            return {
                "maxValues": state.v1_max_values,
                "maxCells": state.v1_max_values,
                "maxCalls": state.max_calls,
                "timeWindow": state.time_window,
                "CORS": True,
            }
        table = state.tables.get(path)
        if table is not None and table.v1:
            return {
                "title": table.label,
                "variables": [
                    {
                        "code": v,
                        "text": v.lower(),
                        "values": list(codes),
                        "valueTexts": list(codes.values()),
                        **({"time": True} if v in ("Tid", "År") else {}),
                    }
                    for v, codes in table.variables.items()
                ],
            }
        listing = [
            {
                "id": name.rsplit("/", 1)[-1],
                "type": "t",
                "text": t.label,
                "updated": t.updated.strftime("%Y-%m-%dT%H:%M:%S"),
            }
            for name, t in state.tables.items()
            if t.v1 and name.rsplit("/", 1)[0] == path.rstrip("/")
        ]
        return listing if listing else _problem(404, "Not found")

    @app.post("/Folkhalsodata/api/v1/sv/{path:path}")
    async def v1_data(request: Request, path: str):
        if (fault := admit(request)) is not None:
            return fault
        table = state.tables.get(path)
        if table is None or not table.v1:
            return _problem(404, "Not found")
        try:
            body = await request.json()
            pairs = [(q["code"], list(q["selection"]["values"])) for q in body["query"]]
        except (ValueError, KeyError, TypeError):
            return _problem(400, "Invalid query")
        selection = selected(path, pairs)
        if isinstance(selection, JSONResponse):
            return selection
        with state.lock:
            return _dataset(state, path, selection)

    return app
