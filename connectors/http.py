"""HTTP plumbing the public-statistics connectors share: a call-rate limiter and retries.

Both APIs are public and rate limited. The limiter keeps us inside the published limits on
our side (a sliding window: at most `calls` requests in any `seconds`); the retry policy backs
off exponentially on 429, 403 (SCB's "too many calls"), 5xx and network errors and honours a
`Retry-After` header. Anything else (400, 404, a malformed body) is not retried: it fails the
same way twice.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from email.utils import parsedate_to_datetime

import httpx
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

RETRY_STATUSES = {403, 429, 500, 502, 503, 504}


class SourceError(RuntimeError):
    """A statistics source answered something we cannot use; the message says what and where."""


class RateLimiter:
    """At most `calls` calls in any window of `seconds` (sliding window, thread safe)."""

    def __init__(self, calls: int, seconds: float, clock: Callable[[], float] = time.monotonic):
        if calls < 1 or seconds <= 0:
            raise ValueError("a rate limit needs calls >= 1 and seconds > 0")
        self.calls, self.seconds, self._clock = calls, seconds, clock
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            while True:
                now = self._clock()
                while self._sent and now - self._sent[0] >= self.seconds:
                    self._sent.popleft()
                if len(self._sent) < self.calls:
                    self._sent.append(now)
                    return
                time.sleep(self.seconds - (now - self._sent[0]) + 0.001)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code in RETRY_STATUSES
    return isinstance(exc, httpx.TransportError)  # timeouts, refused and reset connections


def retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        try:  # an HTTP date
            return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            return None


def _wait(base: float, cap: float):
    exponential = wait_exponential(multiplier=base, max=cap)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, httpx.HTTPStatusError):
            after = retry_after_seconds(exc.response)
            if after is not None:
                return min(after, cap)
        return exponential(state)

    return wait


class HttpSource:
    """One API: a client with timeouts, the rate limiter and the retry policy around it."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        calls: int,
        per_seconds: float,
        timeout: float = 30.0,
        attempts: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.limiter = RateLimiter(calls, per_seconds)
        self.client = httpx.Client(
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": "lagesbild (open-source municipal statistics pipeline)"},
        )
        self._send = retry(
            retry=retry_if_exception(_retryable),
            wait=_wait(backoff, max_backoff),
            stop=stop_after_attempt(attempts),
            reraise=True,
        )(self._send_once)

    def _send_once(self, method: str, url: str, **kwargs) -> httpx.Response:
        self.limiter.wait()
        response = self.client.request(method, url, **kwargs)
        response.raise_for_status()
        return response

    def request_json(self, method: str, url: str, **kwargs):
        """The decoded JSON body; a clear SourceError for anything unusable."""
        if not url.startswith(("http://", "https://")):
            url = f"{self.base_url}/{url.lstrip('/')}"
        try:
            response = self._send(method, url, **kwargs)
        except httpx.HTTPStatusError as exc:
            raise SourceError(
                f"{self.name}: {method} {url} answered HTTP {exc.response.status_code}: "
                f"{exc.response.text[:300]}"
            ) from exc
        except httpx.TransportError as exc:
            raise SourceError(
                f"{self.name}: {method} {url} failed ({type(exc).__name__}); is {self.base_url} "
                "reachable from this machine? The previous data stays published."
            ) from exc
        try:
            return response.json()
        except ValueError as exc:
            raise SourceError(
                f"{self.name}: {method} {url} answered a body that is not JSON "
                f"(starts {response.text[:80]!r})"
            ) from exc

    def close(self) -> None:
        self.client.close()
