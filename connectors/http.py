"""The one HTTP policy of the API connectors (SS 12000, Kolada, PxWeb).

- Timeouts on every call (`timeout` seconds).
- Retried: network errors and timeouts, and the answers a source marks transient: 429 and
  500/502/503/504 everywhere (SS 12000's `503_overload` included); a source may add its own
  (PxWeb adds SCB's 403 "too many calls", `HttpSource.is_transient`). Anything else (400,
  401, 404, a malformed body) fails the same way twice and is not retried.
- The wait before the next try: the server's `Retry-After` when it sent one (delta-seconds or
  an HTTP-date), else exponential backoff (`backoff`, doubled per try); both capped at
  `max_backoff`. At most `attempts` tries.
- A call-rate limiter for sources with published limits (a sliding window on our side).
- One error type, `SourceError`, whose message names the source, the endpoint and what to do.

Tenacity runs the loop; what is transient and how an answer reads is decided here, once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import NoReturn

import httpx
from pydantic import BaseModel, Field
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "lagesbild (open-source municipal statistics pipeline)"


class SourceError(RuntimeError):
    """A source failed in a way retrying does not fix; the message says where and what to do."""


@dataclass(frozen=True)
class RetryPolicy:
    timeout: float = 30.0  # seconds per HTTP call
    attempts: int = 5  # tries per call, the first included
    backoff: float = 1.0  # seconds before the second try, doubled per further try
    max_backoff: float = 60.0  # cap on any wait, a server's Retry-After included
    statuses: frozenset[int] = RETRY_STATUSES  # answers worth asking again

    def wait(self, state: RetryCallState) -> float:
        """Seconds before the next try: the answer's Retry-After, else exponential backoff."""
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            after = retry_after_seconds(outcome.result())
            if after is not None:
                return min(after, self.max_backoff)
        return wait_exponential(multiplier=self.backoff, max=self.max_backoff)(state)


class HttpSettings(BaseModel):
    """Timeout and retry settings a connector's settings share (see `RetryPolicy`)."""

    timeout: float = Field(30.0, gt=0, description="seconds per HTTP request")
    attempts: int = Field(5, ge=1, description="tries per request on 429/5xx/timeouts")
    backoff: float = Field(1.0, ge=0, description="first backoff in seconds, doubled per try")
    max_backoff: float = Field(
        60.0, gt=0, description="longest wait between tries in seconds, Retry-After included"
    )

    def retry_policy(self, statuses: frozenset[int] = RETRY_STATUSES) -> RetryPolicy:
        return RetryPolicy(self.timeout, self.attempts, self.backoff, self.max_backoff, statuses)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds from now: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None  # neither form: fall back to our own backoff
    if when.tzinfo is None:  # "-0000": the date is UTC
        when = when.replace(tzinfo=UTC)
    return max(when.timestamp() - time.time(), 0.0)


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


class HttpSource:
    """One API: an httpx client with the policy's timeout, an optional rate limit, retries.

    Subclasses adapt it to a source: `is_transient` (which answers are worth asking again),
    `describe` (how an answer reads in a message), `advice` (what to do when it fails).
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        policy: RetryPolicy,
        *,
        limiter: RateLimiter | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.policy = policy
        self.limiter = limiter
        self.client = httpx.Client(
            timeout=policy.timeout, transport=transport, headers={"User-Agent": USER_AGENT}
        )

    # -- hooks -------------------------------------------------------------------------------

    def is_transient(self, response: httpx.Response) -> bool:
        return response.status_code in self.policy.statuses

    def describe(self, response: httpx.Response) -> str:
        return f"HTTP {response.status_code}: {response.text[:300]}"

    def advice(self, response: httpx.Response | None) -> str:
        """What to do when a call failed (`response` None: it never got an answer)."""
        stays = (
            f"Nothing from {self.name} was published in this run and the previous data stays; "
            "the next run asks again."
        )
        if response is None:
            return f"Is {self.base_url} reachable from this machine? {stays}"
        if self.is_transient(response):
            return f"The server is busy or failing; {stays[0].lower()}{stays[1:]}"
        return (
            "Check the source's URL in the settings and the catalogue entry behind this "
            "request; the previous data stays published."
        )

    # -- calls -------------------------------------------------------------------------------

    def call(self, what: str, attempt: Callable[[], httpx.Response]) -> httpx.Response:
        """Run `attempt` under the policy; the first answer that is not transient, any status.

        `what` names the endpoint in the message when every try failed (a `SourceError`).
        """
        transient = retry_if_exception_type(httpx.TransportError) | retry_if_result(
            self.is_transient
        )
        retrying = Retrying(
            retry=transient,
            wait=self.policy.wait,
            stop=stop_after_attempt(self.policy.attempts),
            retry_error_callback=lambda state: self._give_up(what, state),
        )
        return retrying(self._limited, attempt)

    def _limited(self, attempt: Callable[[], httpx.Response]) -> httpx.Response:
        if self.limiter is not None:
            self.limiter.wait()
        return attempt()

    def _give_up(self, what: str, state: RetryCallState) -> NoReturn:
        outcome = state.outcome
        assert outcome is not None
        response = None if outcome.failed else outcome.result()
        if response is None:
            exc = outcome.exception()
            last = type(exc).__name__
            if isinstance(exc, httpx.TimeoutException):
                last += f" after {self.policy.timeout} s"
        else:
            last = self.describe(response)
        raise SourceError(
            f"{self.name} kept failing on {what} after {state.attempt_number} attempts "
            f"(last: {last}). {self.advice(response)}"
        ) from outcome.exception()

    def send(self, method: str, url: str, **kwargs) -> httpx.Response:
        if not url.startswith(("http://", "https://")):
            url = f"{self.base_url}/{url.lstrip('/')}"
        return self.call(f"{method} {url}", lambda: self.client.request(method, url, **kwargs))

    def request_json(self, method: str, url: str, **kwargs):
        """The decoded JSON body of a 2xx answer; a clear SourceError for anything else."""
        response = self.send(method, url, **kwargs)
        where = f"{method} {response.request.url}"
        if not response.is_success:
            raise SourceError(
                f"{self.name}: {where} answered {self.describe(response)}. {self.advice(response)}"
            )
        try:
            return response.json()
        except ValueError as exc:
            raise SourceError(
                f"{self.name}: {where} answered a body that is not JSON "
                f"(starts {response.text[:80]!r})"
            ) from exc

    def close(self) -> None:
        self.client.close()
