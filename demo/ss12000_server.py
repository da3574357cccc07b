"""A local SS 12000 v2 server for the demo and the tests (FastAPI), with switchable faults.

It serves the generated demo municipality (`demo.ss12000_store`) the way the spec says a
platform does: OAuth2 client credentials at `POST /token`, Bearer tokens that expire,
`{"data": [...], "pageToken": ...}` pages whose token is only accepted with `limit`
(`400_invalid_filter` otherwise), `meta.modified.after` (exclusive), `/deletedEntities`,
required `startDate`/`endDate` on `/aggregatedAttendance` (at most `MAX_WINDOW_DAYS`) and
`{code, message}` error bodies.

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
from demo.ss12000_store import Store, _utc

MAX_WINDOW_DAYS = 31
SLOW_SECONDS = 2.0
FAULTS = ("429", "500", "503_overload", "slow", "malformed", "expire_token")
DELETED_KEYS = {"Absence": "absences", "Person": "persons", "Organisation": "organisations"}


def _error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


class _Invalid(Exception):
    def __init__(self, message: str):
        self.message = message


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


class SS12000Server:
    def __init__(
        self,
        store: Store,
        client_id: str = "lagesbild-demo",
        client_secret: str = "demo-secret",
        token_lifetime: int = 3600,
    ):
        self.store = store
        self.client_id, self.client_secret = client_id, client_secret
        self.token_lifetime = token_lifetime
        self.tokens: dict[str, float] = {}
        self.token_requests = 0
        self.faults = Faults()
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.request_times: list[float] = []  # wall clock, beside `requests`
        self.app = self._build()

    # -- helpers ---------------------------------------------------------------------------

    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        expires = self.tokens.get(header.removeprefix("Bearer "))
        return expires is not None and expires > time.monotonic()

    @staticmethod
    def _page(items: list[dict], query: dict, limit: int | None, offset: int) -> dict:
        end = len(items) if limit is None else offset + limit
        token = None
        if end < len(items):
            state = json.dumps({"q": query, "o": end}).encode()
            token = base64.urlsafe_b64encode(state).decode()
        return {"data": items[offset:end], "pageToken": token}

    def _list(self, request: Request, allowed: set[str], build) -> Response:
        """Paging shared by every list endpoint; `build(query)` returns all matching items."""
        query = {k: request.query_params.getlist(k) for k in request.query_params}
        limit = query.pop("limit", [None])[0]
        try:
            limit = None if limit is None else int(limit)
            if limit is not None and limit < 1:
                raise ValueError
        except ValueError:
            return _error(400, "400_invalid_filter", "limit måste vara ett heltal >= 1")
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
        unknown = set(query) - allowed
        if unknown:
            return _error(400, "400_invalid_filter", f"Okänt filter: {', '.join(sorted(unknown))}")
        try:
            items = build(query)
        except _Invalid as exc:
            return _error(400, "400_invalid_filter", exc.message)
        return JSONResponse(self._page(items, query, limit, offset))

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
            return await call_next(request)

        store = self.store

        def after(query: dict, name: str = "meta.modified.after") -> str | None:
            value = query.get(name, [None])[0]
            if value:
                try:
                    _utc(value)
                except ValueError as exc:
                    raise _Invalid(f"{name} är inte en RFC 3339-tidpunkt") from exc
            return value

        @app.get("/organisations")
        def organisations(request: Request) -> Response:
            def build(query: dict) -> list[dict]:
                items = store.organisations
                if "type" in query:
                    items = [o for o in items if o["organisationType"] in query["type"]]
                if "schoolUnitCode" in query:
                    items = [o for o in items if o.get("schoolUnitCode") in query["schoolUnitCode"]]
                cutoff = after(query)
                if cutoff:
                    items = [o for o in items if _utc(o["meta"]["modified"]) > _utc(cutoff)]
                return items

            allowed = {"type", "schoolUnitCode", "meta.modified.after"}
            return self._list(request, allowed, build)

        @app.get("/persons")
        def persons(request: Request) -> Response:
            def build(query: dict) -> list[dict]:
                frame = store.modified_after(store.persons, after(query))
                return [
                    {
                        "id": p["person_id"],
                        "meta": {"created": p["meta_modified"], "modified": p["meta_modified"]},
                        "givenName": "Elev",  # the demo does not serve names
                        "familyName": p["person_id"][:8],
                        "civicNo": {"value": p["civic_no"], "nationality": "SE"},
                        "securityMarking": p["security_marking"],
                        "enrolments": p["enrolments"],
                    }
                    for p in frame.sort("person_id").iter_rows(named=True)
                ]

            allowed = {"meta.modified.after", "relationship.entity.type"}
            return self._list(request, allowed, build)

        @app.get("/absences")
        def absences(request: Request) -> Response:
            def build(query: dict) -> list[dict]:
                frame = store.modified_after(store.absences, after(query))
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

            return self._list(request, {"meta.modified.after"}, build)

        @app.get("/aggregatedAttendance")
        def aggregated(request: Request) -> Response:
            def build(query: dict) -> list[dict]:
                try:
                    start = date.fromisoformat(query["startDate"][0])
                    end = date.fromisoformat(query["endDate"][0])
                except (KeyError, ValueError) as exc:
                    raise _Invalid("startDate och endDate (RFC 3339-datum) krävs") from exc
                if end < start or (end - start).days >= MAX_WINDOW_DAYS:
                    raise _Invalid(f"Intervallet får vara högst {MAX_WINDOW_DAYS} dagar")
                lessons = store.lessons.filter(pl.col("date").is_between(start, end))
                if "organisation" in query:
                    lessons = lessons.filter(pl.col("organisation_id").is_in(query["organisation"]))
                if "student" in query:
                    lessons = lessons.filter(pl.col("student_id").is_in(query["student"]))
                sums = (
                    lessons.group_by("student_id", "activity_id", "organisation_id")
                    .agg(pl.col("^.*_minutes$").sum().cast(pl.Int64))
                    .sort("student_id", "activity_id")
                )
                expand = "activity" in query.get("expand", [])
                items = []
                for row in sums.iter_rows(named=True):
                    item = {
                        "activity": {"id": row["activity_id"]},
                        "student": {"id": row["student_id"]},
                        "startDate": start.isoformat(),
                        "endDate": end.isoformat(),
                        "attendanceSum": row["attended_minutes"],
                        "validAbsenceSum": row["valid_absence_minutes"],
                        "invalidAbsenceSum": row["invalid_absence_minutes"],
                        "otherAttendanceSum": 0,
                        "reportedSum": row["offered_minutes"] - row["other_absence_minutes"],
                        "offeredSum": row["offered_minutes"],
                    }
                    if expand:
                        item["_embedded"] = {
                            "activity": {
                                "id": row["activity_id"],
                                "organisation": {"id": row["organisation_id"]},
                            }
                        }
                    items.append(item)
                return items

            allowed = {"startDate", "endDate", "organisation", "student", "expand", "schoolType"}
            return self._list(request, allowed, build)

        @app.get("/deletedEntities")
        def deleted(request: Request) -> Response:
            query = {k: request.query_params.getlist(k) for k in request.query_params}
            limit = query.pop("limit", [None])[0]
            if "pageToken" in query:
                return _error(400, "400_invalid_filter", "Ogiltig pageToken")
            cutoff = query.get("after", [None])[0]
            entities = query.get("entities") or list(DELETED_KEYS)
            data: dict[str, list[str]] = {}
            for entity, entity_key, when in store.deleted:
                if entity in entities and (not cutoff or when > _utc(cutoff)):
                    data.setdefault(DELETED_KEYS[entity], []).append(entity_key)
            del limit  # tombstones are few: one page
            return JSONResponse({"data": data, "pageToken": None})

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
    server = serve_store(store_dir)
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
