"""Run a local demo API (a FastAPI app) with uvicorn in a background thread on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.utils import formatdate

import uvicorn


@contextmanager
def serve(app, port: int = 0) -> Iterator[str]:
    """Serve `app` until the block ends; yields its base URL (http://127.0.0.1:<port>)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the local demo server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


class Faults:
    """Switchable faults for a demo API: each queued fault answers the next matching request.

    kinds: `429` (with `Retry-After`: `retry_after` seconds, default 1, or with `retry_at`, an
    epoch time, as an HTTP-date), `403` (a rate limit the way SCB's older APIs answer one),
    `500`, `502`, `503`, `slow` (sleeps `seconds` before answering), `malformed` (a truncated
    JSON body with status 200). `times=None` keeps a fault on.
    """

    def __init__(self) -> None:
        self._queue: list[dict] = []
        self._lock = threading.Lock()

    def add(self, kind: str, times: int | None = 1, **options) -> None:
        with self._lock:
            self._queue.append({"kind": kind, "times": times, **options})

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def take(self) -> dict | None:
        with self._lock:
            if not self._queue:
                return None
            fault = self._queue[0]
            if fault["times"] is not None:
                fault["times"] -= 1
                if fault["times"] <= 0:
                    self._queue.pop(0)
            return dict(fault)


def fault_response(fault: dict | None, body_for_malformed: str = '{"values": [{"kpi": '):
    """The response a fault gives, or None to answer normally (after any `slow` delay)."""
    from fastapi.responses import JSONResponse, Response

    if fault is None:
        return None
    kind = fault["kind"]
    if kind == "slow":
        time.sleep(fault.get("seconds", 5))
        return None
    if kind == "429":
        return JSONResponse(
            {"detail": "Too many requests"},
            status_code=429,
            headers={"Retry-After": retry_after(fault)},
        )
    if kind == "403":
        return JSONResponse({"detail": "Too many calls in the time window"}, status_code=403)
    if kind in ("500", "502", "503"):
        return JSONResponse({"detail": "Internal server error"}, status_code=int(kind))
    if kind == "malformed":
        return Response(body_for_malformed, media_type="application/json")
    raise ValueError(f"unknown fault {kind!r}")


def retry_after(fault: dict) -> str:
    """The `Retry-After` of a 429 fault: delta-seconds, or an HTTP-date when `retry_at` is set."""
    if "retry_at" in fault:
        return formatdate(fault["retry_at"], usegmt=True)  # whole seconds, rounded down
    return str(fault.get("retry_after", 1))


class CallLog:
    """Every request the server answered (time, path, query), for rate-limit checks in tests.

    Times are wall-clock (`time.time()`), comparable with an HTTP-date `Retry-After`."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str, dict]] = []
        self._lock = threading.Lock()

    def record(self, path: str, query: dict) -> None:
        with self._lock:
            self.calls.append((time.time(), path, query))

    def max_in_window(self, seconds: float) -> int:
        times = sorted(t for t, _, _ in self.calls)
        best, start = 0, 0
        for end, t in enumerate(times):
            while t - times[start] >= seconds:
                start += 1
            best = max(best, end - start + 1)
        return best

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()
