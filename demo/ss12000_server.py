"""A local SS 12000 v2 server for the demo and the tests (FastAPI), held to the spec.

It serves the generated demo municipality (`demo.ss12000_store`) the way the SS 12000 v2.0
OpenAPI (demo/ss12000_spec/) says a platform does, not the way our client asks: every request is
checked against the spec (`demo.ss12000_spec`: an unknown parameter, a wrong type or enum value
or a missing required one is a `400_invalid_filter` with the spec's reason) and every 200 body
is checked against its response schema (a break is a 500 and is kept in `server.spec_errors`,
so a test fails on a server that drifts from the spec). OAuth2 client credentials at
`POST /token`, Bearer tokens that expire, `{"data": [...], "pageToken": ...}` pages on every
paged endpoint (also `/deletedEntities`) whose token is only accepted with `limit`,
`meta.modified.after` exclusive and `.before` inclusive, `{code, message}` error bodies.

`Variant` switches what real platforms differ in, all of it legal by the spec: optional sums
left out, activities owned by the school (Skola) above the school unit, no `expand` support (no
`_embedded`), `civicNo` withheld, and several school forms (some pupils in anpassad grundskola,
förskoleklass enrolments without `schoolYear`, and a gymnasium unit whose attendance only a
`schoolType` filter keeps out).

Faults are queued on `server.faults` (`Faults.add(kind, times, path, **options)`), each
applied to the next API requests: `429` (with `Retry-After`: `retry_after` seconds, default
1, or `retry_at`, an epoch time, as an HTTP-date), `500`, `503_overload`, `slow` (sleeps past
the client's timeout), `malformed` (a body that is not JSON) and `expire_token` (every issued
token stops working, as when a token expires mid-run). Every API request is logged in
`server.requests` (path and query) and its wall-clock time in `server.request_times`, so
tests can check what a client asked for and when.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import parse_qs

import polars as pl
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from demo.servers import retry_after
from demo.ss12000_spec import Spec
from demo.ss12000_store import CREATED, Store, _utc, entity_id

SLOW_SECONDS = 3.0
FAULTS = ("429", "500", "503_overload", "slow", "malformed", "expire_token")
# /deletedEntities list keys per entity type (the spec misspells activities as 'activitites')
DELETED_KEYS = {
    "Absence": "absences",
    "Person": "persons",
    "Organisation": "organisations",
    "Activity": "activitites",
}
OPTIONAL_SUMS = ("validAbsenceSum", "invalidAbsenceSum", "otherAttendanceSum", "offeredSum")
GY_PUPILS = 12  # gymnasium pupils the `several_school_forms` variant adds
_SPEC: Spec | None = None  # loading the spec takes ~2 s: once per process


def spec() -> Spec:
    global _SPEC
    if _SPEC is None:
        _SPEC = Spec()
    return _SPEC


def _error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


class _Invalid(Exception):
    def __init__(self, message: str):
        self.message = message


@dataclass(frozen=True)
class Variant:
    """What a platform may do differently, every choice legal by the spec."""

    omit_optional_sums: bool = False  # sums of 0 and reportedSum left out (only attendanceSum
    # is required)
    school_as_organisation: bool = False  # an activity belongs to the Skola, not the unit
    expand: bool = True  # False: `expand` is accepted and ignored (no `_embedded`)
    civic_no: bool = True  # False: no civicNo (a separate scope at some platforms)
    several_school_forms: bool = False  # GRS pupils, FKLASS without schoolYear, a GY unit


VARIANTS = {
    "spec_minimal": Variant(
        omit_optional_sums=True,
        school_as_organisation=True,
        expand=False,
        civic_no=False,
        several_school_forms=True,
    ),
}


@dataclass
class Faults:
    # (kind, path or any, options)
    queue: list[tuple[str, str | None, dict]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, times: int = 1, path: str | None = None, **options) -> None:
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind}; known: {', '.join(FAULTS)}")
        with self.lock:
            self.queue += [(kind, path, options)] * times

    def clear(self) -> None:
        with self.lock:
            self.queue.clear()

    def next(self, path: str) -> tuple[str | None, dict]:
        """The first queued fault for this path (or for any path) and its options, removed
        from the queue; (None, {}) when there is none."""
        with self.lock:
            for i, (kind, only, options) in enumerate(self.queue):
                if only is None or only == path:
                    del self.queue[i]
                    return kind, options
            return None, {}


def _school_of(unit_index: int) -> int:
    return unit_index // 2  # two school units per school (Skola)


def _in_window(value: str, query: dict, name: str) -> bool:
    """meta.<x>.after is exclusive, meta.<x>.before inclusive (spec, searchParameters)."""
    after, before = query.get(f"{name}.after", [None])[0], query.get(f"{name}.before", [None])[0]
    when = _utc(value)
    return (not after or when > _utc(after)) and (not before or when <= _utc(before))


class SS12000Server:
    def __init__(
        self,
        store: Store,
        client_id: str = "lagesbild-demo",
        client_secret: str = "demo-secret",
        token_lifetime: int = 3600,
        variant: Variant | None = None,
        validate: bool = True,
    ):
        self.store = store
        self.variant = variant or Variant()
        self.client_id, self.client_secret = client_id, client_secret
        self.token_lifetime = token_lifetime
        self.tokens: dict[str, float] = {}
        self.token_requests = 0
        self.faults = Faults()
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.request_times: list[float] = []  # wall clock, beside `requests`
        self.spec = spec() if validate else None
        self.spec_errors: list[str] = []  # responses that broke the spec (a server bug)
        if self.variant.several_school_forms:
            store.add_gymnasium(GY_PUPILS)
        self.app = self._build()

    # -- what is served --------------------------------------------------------------------

    def organisations(self) -> list[dict]:
        """Huvudman → Skola (two units each) → Skolenhet, as a municipality's tree is."""
        owners = [o for o in self.store.organisations if o["organisationType"] == "Huvudman"]
        if not owners:
            return list(self.store.organisations)
        owner = owners[0]
        units = [o for o in self.store.organisations if o["organisationType"] == "Skolenhet"]
        units = sorted(units, key=lambda o: o.get("schoolUnitCode") or "")
        schools = []
        for n in range((len(units) + 1) // 2):
            schools.append(
                {
                    "id": entity_id("school", owner["id"], n),
                    "meta": {"created": CREATED, "modified": CREATED},
                    "displayName": f"Skola {n + 1}",
                    "organisationType": "Skola",
                    "parentOrganisation": {"id": owner["id"]},
                    "municipalityCode": owner.get("municipalityCode"),
                }
            )
        served = [owner, *schools]
        for i, unit in enumerate(units):
            served.append({**unit, "parentOrganisation": {"id": schools[_school_of(i)]["id"]}})
        return served

    def activity_owner(self) -> dict[str, str]:
        """School unit id → the organisation its activities belong to in this variant."""
        served = self.organisations()
        if not self.variant.school_as_organisation:
            return {o["id"]: o["id"] for o in served}
        return {
            o["id"]: o.get("parentOrganisation", {}).get("id", o["id"])
            for o in served
            if o["organisationType"] == "Skolenhet"
        }

    def activity(self, activity_id: str, unit_id: str, owners: dict[str, str]) -> dict:
        return {
            "id": activity_id,
            "meta": {"created": CREATED, "modified": CREATED},
            "displayName": f"Lektion {activity_id[:8]}",
            "calendarEventsRequired": True,
            "startDate": "2025-07-01",
            "activityType": "Undervisning",
            "groups": [{"id": entity_id("group", unit_id, activity_id)}],
            "organisation": {"id": owners.get(unit_id, unit_id)},
        }

    # -- helpers ---------------------------------------------------------------------------

    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        expires = self.tokens.get(header.removeprefix("Bearer "))
        return expires is not None and expires > time.monotonic()

    @staticmethod
    def _token(query: dict, offset: int) -> str:
        return base64.urlsafe_b64encode(json.dumps({"q": query, "o": offset}).encode()).decode()

    def _paged(self, request: Request, build, page) -> Response:
        """Paging shared by every list endpoint: `build(query)` returns all matching items,
        `page(items, token)` the body of one page of them."""
        pairs = list(request.query_params.multi_items())
        query = {k: request.query_params.getlist(k) for k in request.query_params}
        limit = query.pop("limit", [None])[0]
        limit = None if limit is None else int(limit)  # the spec check made it an int >= 1
        offset = 0
        if "pageToken" in query:
            if set(query) != {"pageToken"}:
                return _error(
                    400,
                    "400_invalid_filter",
                    "Filter (ex sortkey, meta.modified.after, ...) kan inte kombineras med "
                    "pageToken",
                )
            try:
                state = json.loads(base64.urlsafe_b64decode(query["pageToken"][0]))
                query, offset = state["q"], state["o"]
            except (ValueError, KeyError):
                return _error(400, "400_invalid_filter", "Ogiltig pageToken")
        try:
            items = build(query)
        except _Invalid as exc:
            return _error(400, "400_invalid_filter", exc.message)
        end = len(items) if limit is None else offset + limit
        token = self._token(query, end) if end < len(items) else None
        body = page(items[offset:end], token)
        if self.spec is not None:
            broken = self.spec.check_response(request.url.path, pairs, body)
            if broken:
                self.spec_errors.append(broken)
                return _error(500, "500_spec", f"svaret följer inte specifikationen: {broken}")
        return JSONResponse(body)

    def _list(self, request: Request, build) -> Response:
        return self._paged(request, build, lambda items, token: {"data": items, "pageToken": token})

    # -- the app ---------------------------------------------------------------------------

    def _build(self) -> FastAPI:
        app = FastAPI(title="SS 12000 demo server (lagesbild)", version="2.0.0")

        @app.post("/token")
        async def token(request: Request) -> Response:
            self.token_requests += 1
            # application/x-www-form-urlencoded (parsed here: no python-multipart needed)
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
            basic = request.headers.get("Authorization", "")
            if basic.startswith("Basic "):  # client_secret_basic instead of the form body
                pair = base64.b64decode(basic.removeprefix("Basic ")).decode()
                form["client_id"], _, form["client_secret"] = pair.partition(":")
            if form.get("grant_type") != "client_credentials":
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
            if (form.get("client_id"), form.get("client_secret")) != (
                self.client_id,
                self.client_secret,
            ):
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            value = secrets.token_urlsafe(24)
            self.tokens[value] = time.monotonic() + self.token_lifetime
            return JSONResponse(
                {"access_token": value, "token_type": "Bearer", "expires_in": self.token_lifetime}
            )

        @app.middleware("http")
        async def auth_and_faults(request: Request, call_next):
            if request.url.path == "/token":
                return await call_next(request)
            self.request_times.append(time.time())
            self.requests.append(
                (
                    request.url.path,
                    {k: request.query_params.getlist(k) for k in request.query_params},
                )
            )
            fault, options = self.faults.next(request.url.path)
            if fault == "expire_token":
                self.tokens.clear()
            if not self._authorised(request):
                return _error(401, "401_unauthorised", "Token saknas eller har gått ut")
            if fault == "429":
                after = {"Retry-After": retry_after(options)}
                return _error(429, "429_too_many_requests", "För många anrop", after)
            if fault == "500":
                return _error(500, "500_internal", "Internt fel")
            if fault == "503_overload":
                return _error(503, "503_overload", "Svaret är för stort för servern att hantera")
            if fault == "slow":
                await asyncio.sleep(SLOW_SECONDS)
            if fault == "malformed":
                return Response(b'{"data": [{"id": "trunc', media_type="application/json")
            if self.spec is not None:
                wrong = self.spec.check_request(
                    request.url.path, list(request.query_params.multi_items())
                )
                if wrong:
                    return _error(400, "400_invalid_filter", wrong)
            return await call_next(request)

        store = self.store
        variant = self.variant

        @app.get("/organisations")
        def organisations(request: Request) -> Response:
            def build(query: dict) -> list[dict]:
                items = self.organisations()
                for name, key in (
                    ("type", "organisationType"),
                    ("schoolUnitCode", "schoolUnitCode"),
                ):
                    if name in query:
                        items = [o for o in items if o.get(key) in query[name]]
                if "parent" in query:
                    items = [
                        o
                        for o in items
                        if o.get("parentOrganisation", {}).get("id") in query["parent"]
                    ]
                return [
                    o for o in items if _in_window(o["meta"]["modified"], query, "meta.modified")
                ]

            return self._list(request, build)

        @app.get("/persons")
        def persons(request: Request) -> Response:
            def enrolment(e: dict) -> dict:
                if variant.several_school_forms and e["schoolType"] == "FKLASS":
                    return {k: v for k, v in e.items() if k != "schoolYear"}
                return e

            def build(query: dict) -> list[dict]:
                frame = store.persons.filter(
                    pl.col("meta_modified").map_elements(
                        lambda t: _in_window(t, query, "meta.modified"), pl.Boolean
                    )
                )
                items = []
                for p in frame.sort("person_id").iter_rows(named=True):
                    item = {
                        "id": p["person_id"],
                        "meta": {"created": CREATED, "modified": p["meta_modified"]},
                        "givenName": "Elev",  # the demo does not serve names
                        "familyName": p["person_id"][:8],
                        "securityMarking": p["security_marking"],
                        "enrolments": [enrolment(e) for e in p["enrolments"]],
                    }
                    if variant.civic_no:
                        item["civicNo"] = {"value": p["civic_no"], "nationality": "SE"}
                    items.append(item)
                return items

            return self._list(request, build)

        @app.get("/activities")
        def activities(request: Request) -> Response:
            def build(query: dict) -> list[dict]:
                pairs = store.lessons.select("activity_id", "organisation_id").unique()
                owners = self.activity_owner()
                items = [self.activity(a, unit, owners) for a, unit in sorted(pairs.iter_rows())]
                if "organisation" in query:
                    items = [a for a in items if a["organisation"]["id"] in query["organisation"]]
                return [
                    a for a in items if _in_window(a["meta"]["modified"], query, "meta.modified")
                ]

            return self._list(request, build)

        @app.get("/absences")
        def absences(request: Request) -> Response:
            def build(query: dict) -> list[dict]:
                frame = store.absences.filter(
                    pl.col("meta_modified").map_elements(
                        lambda t: _in_window(t, query, "meta.modified"), pl.Boolean
                    )
                )
                return [
                    {
                        "id": a["absence_id"],
                        "meta": {"created": a["meta_modified"], "modified": a["meta_modified"]},
                        "startTime": f"{a['date']}T08:00:00+02:00",
                        "endTime": f"{a['date']}T16:00:00+02:00",
                        "type": a["type"],
                        "student": {"id": a["student_id"]},
                        "organisation": {"id": a["organisation_id"]},
                    }
                    for a in frame.sort("date", "absence_id").iter_rows(named=True)
                ]

            return self._list(request, build)

        @app.get("/aggregatedAttendance")
        def aggregated(request: Request) -> Response:
            def build(query: dict) -> list[dict]:
                start = date.fromisoformat(query["startDate"][0])  # required and checked
                end = date.fromisoformat(query["endDate"][0])
                if end < start:
                    raise _Invalid("endDate är före startDate")
                lessons = store.lessons.filter(pl.col("date").is_between(start, end))
                if "schoolType" in query:
                    lessons = lessons.filter(pl.col("school_type").is_in(query["schoolType"]))
                owners = self.activity_owner()
                lessons = lessons.with_columns(
                    owner=pl.col("organisation_id").replace_strict(owners, default=None)
                )
                if "organisation" in query:
                    lessons = lessons.filter(pl.col("owner").is_in(query["organisation"]))
                if "student" in query:
                    lessons = lessons.filter(pl.col("student_id").is_in(query["student"]))
                # a lesson is reported when the teacher has assessed all of its minutes
                lessons = lessons.with_columns(
                    reported=pl.when(pl.col("other_absence_minutes") == 0)
                    .then(pl.col("offered_minutes"))
                    .otherwise(0.0)
                )
                sums = (
                    lessons.group_by("student_id", "activity_id", "organisation_id")
                    .agg(pl.col("^.*_minutes$", "reported").sum().cast(pl.Int64))
                    .sort("student_id", "activity_id")
                )
                expand = variant.expand and "activity" in query.get("expand", [])
                items = []
                for row in sums.iter_rows(named=True):
                    item = {
                        "activity": {"id": row["activity_id"]},
                        "student": {"id": row["student_id"]},
                        "startDate": start.isoformat(),
                        "endDate": end.isoformat(),
                        "attendanceSum": row["attended_minutes"] - row["other_attendance_minutes"],
                        "validAbsenceSum": row["valid_absence_minutes"],
                        "invalidAbsenceSum": row["invalid_absence_minutes"],
                        "otherAttendanceSum": row["other_attendance_minutes"],
                        "reportedSum": row["reported"],
                        "offeredSum": row["offered_minutes"],
                    }
                    if variant.omit_optional_sums:
                        del item["reportedSum"]
                        for name in OPTIONAL_SUMS:
                            if item[name] == 0:
                                del item[name]
                    if expand:
                        item["_embedded"] = {
                            "activity": self.activity(
                                row["activity_id"], row["organisation_id"], owners
                            )
                        }
                    items.append(item)
                return items

            return self._list(request, build)

        @app.get("/deletedEntities")
        def deleted(request: Request) -> Response:
            def build(query: dict) -> list[tuple[str, str]]:
                entities = query.get("entities") or list(DELETED_KEYS)
                after = query.get("after", [None])[0]
                return [
                    (DELETED_KEYS[entity], entity_key)
                    for entity, entity_key, when in store.deleted
                    if entity in entities and (not after or when > _utc(after))
                ]

            def page(items: list[tuple[str, str]], token: str | None) -> dict:
                data: dict[str, list[str]] = {}
                for key, entity_key in items:
                    data.setdefault(key, []).append(entity_key)
                return {"data": data, "pageToken": token}

            return self._paged(request, build, page)

        return app


@contextmanager
def running(server: SS12000Server, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve on a free loopback port in a background thread; yields the base URL."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(server.app, host=host, port=port, log_level="warning", lifespan="off")
    http = uvicorn.Server(config)
    thread = threading.Thread(target=http.run, name="ss12000-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not http.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the local SS 12000 server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        http.should_exit = True
        thread.join(timeout=10)


def serve_store(folder: Path, **kwargs) -> SS12000Server:
    return SS12000Server(Store.load(folder), **kwargs)


DEMO_SETTINGS = ("BASE_URL", "TOKEN_URL", "CLIENT_ID", "CLIENT_SECRET", "PAGE_SIZE")


@contextmanager
def serving_demo(store_dir: Path, page_size: int = 5000) -> Iterator[str]:
    """Serve the demo store and point the pipeline's settings at it while the block runs."""
    # the spec check needs openapi-core (a dev dependency): the demo runs without it
    server = serve_store(store_dir, validate=importlib.util.find_spec("openapi_core") is not None)
    with running(server) as url:
        values = dict(
            zip(
                DEMO_SETTINGS,
                (url, f"{url}/token", server.client_id, server.client_secret, str(page_size)),
                strict=True,
            )
        )
        names = {f"LAGESBILD_SS12000__{k}": v for k, v in values.items()}
        previous = {k: os.environ.get(k) for k in names}
        os.environ.update(names)
        try:
            yield url
        finally:
            for k, v in previous.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
