"""HTTP client for an SS 12000 (SIS, v2.x) server: OAuth2 token, `pageToken` paging, retries.

Rules from the SS 12000 v2 spec (docs/sources/ss12000.md):

- every call carries a Bearer token from the OAuth2 client-credentials endpoint; the token is
  renewed shortly before `expires_in` runs out and once more when the server answers 401;
- list endpoints answer `{"data": [...], "pageToken": str | null}`; the follow-up request
  sends the token with `limit` only (any other parameter is a `400_invalid_filter`);
- error bodies are `{"code", "message"}`;
- only timeouts, connection errors, 429 (honouring `Retry-After`) and 5xx (including
  `503_overload`) are retried, with exponential backoff; every other failure is an
  `SS12000Error` that says what to do.

No Prefect here, and nothing is written: callers get plain dicts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

SOURCE = "ss12000"
TOKEN_MARGIN = 30  # seconds before expiry at which a token is renewed


class SS12000Error(RuntimeError):
    """A call to the SS 12000 server failed in a way retrying does not fix."""


class _Retryable(Exception):
    """A transient answer (429/5xx/timeout); `retry_after` in seconds if the server said."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class ClientConfig:
    base_url: str
    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scopes: list[str] = field(default_factory=list)
    page_size: int = 500
    timeout: float = 30.0
    max_attempts: int = 5
    backoff_max: float = 30.0
    token_auth: str = "post"  # client credentials in the form body, or "basic" (HTTP Basic)


def _describe(response: httpx.Response) -> str:
    """'503 503_overload: Svaret är för stort' from an SS 12000 error body, or the status."""
    try:
        body = response.json()
        return f"{response.status_code} {body['code']}: {body['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code} {response.reason_phrase}"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class SS12000Client:
    def __init__(self, config: ClientConfig, transport: httpx.BaseTransport | None = None):
        self.config = config
        self._http = httpx.Client(timeout=config.timeout, transport=transport)
        self._token: str | None = None
        self._token_expires = 0.0
        self.requests = 0  # calls to the API (not the token endpoint), for logs and tests

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SS12000Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- token -----------------------------------------------------------------------------

    def _fetch_token(self) -> None:
        data = {"grant_type": "client_credentials"}
        auth = None
        if self.config.token_auth == "basic":
            auth = (self.config.client_id, self.config.client_secret)
        else:
            data |= {"client_id": self.config.client_id, "client_secret": self.config.client_secret}
        if self.config.scopes:
            data["scope"] = " ".join(self.config.scopes)
        try:
            response = self._http.post(
                self.config.token_url,
                data=data,
                auth=auth,
            )
        except httpx.TransportError as exc:
            raise _Retryable(f"token endpoint: {type(exc).__name__}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(f"token endpoint: {_describe(response)}", _retry_after(response))
        if response.status_code != 200:
            raise SS12000Error(
                f"SS 12000 token endpoint {self.config.token_url} refused the client credentials "
                f"({_describe(response)}). Check LAGESBILD_SS12000__CLIENT_ID and the client "
                "secret (LAGESBILD_SS12000__CLIENT_SECRET or the Prefect Secret block) and the "
                "scopes the platform granted."
            )
        try:
            body = response.json()
            self._token = body["access_token"]
            expires_in = float(body.get("expires_in", 300))
        except (ValueError, KeyError, TypeError) as exc:
            raise SS12000Error(
                f"SS 12000 token endpoint {self.config.token_url} answered without an "
                "access_token; is token_url the platform's OAuth2 token endpoint?"
            ) from exc
        # renew a little early (half the lifetime for short-lived tokens)
        self._token_expires = time.monotonic() + expires_in - min(TOKEN_MARGIN, expires_in / 2)

    def _bearer(self) -> str:
        if self._token is None or time.monotonic() > self._token_expires:
            self._fetch_token()
        return f"Bearer {self._token}"

    # -- one call --------------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        backoff = wait_exponential(multiplier=0.5, max=self.config.backoff_max)(state)
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, self.config.backoff_max)
        return backoff

    def get(self, path: str, params: dict[str, Any]) -> Any:
        """GET a path and return the parsed JSON, retrying transient failures."""
        call = retry(
            retry=retry_if_exception_type(_Retryable),
            wait=self._wait,
            stop=stop_after_attempt(self.config.max_attempts),
            reraise=True,
        )(self._get_once)
        try:
            return call(path, params)
        except _Retryable as exc:
            raise SS12000Error(
                f"SS 12000 server {self.config.base_url} kept failing on {path} after "
                f"{self.config.max_attempts} attempts ({exc}). Nothing was published; the next "
                "run fetches the same delta again. If it persists, ask the platform's support."
            ) from exc

    def _get_once(self, path: str, params: dict[str, Any]) -> Any:
        url = self.config.base_url.rstrip("/") + path
        renewed = False
        while True:
            headers = {"Authorization": self._bearer(), "Accept": "application/json"}
            self.requests += 1
            try:
                response = self._http.get(url, params=params, headers=headers)
            except httpx.TimeoutException as exc:
                raise _Retryable(f"timeout after {self.config.timeout} s") from exc
            except httpx.TransportError as exc:
                raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
            if response.status_code == 401 and not renewed:
                self._token, renewed = None, True  # expired or revoked: renew once
                continue
            break
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(_describe(response), _retry_after(response))
        if response.status_code == 401:
            raise SS12000Error(
                f"SS 12000 server {self.config.base_url} rejected a freshly issued token on "
                f"{path} ({_describe(response)}). Check that token_url belongs to this server."
            )
        if response.status_code == 403:
            raise SS12000Error(
                f"SS 12000 server {self.config.base_url} does not allow {path} for this client "
                f"({_describe(response)}). Ask the platform to grant the scope for it."
            )
        if response.status_code != 200:
            raise SS12000Error(
                f"SS 12000 server {self.config.base_url} answered {_describe(response)} on "
                f"{path} with {sorted(params)}. Check base_url (it ends before /organisations)."
            )
        try:
            return response.json()
        except ValueError as exc:
            raise SS12000Error(
                f"SS 12000 server {self.config.base_url} sent a body that is not JSON on {path} "
                f"({len(response.content)} bytes). Nothing was landed from this call; report it "
                "to the platform."
            ) from exc

    # -- lists -----------------------------------------------------------------------------

    def pages(self, path: str, params: dict[str, Any] | None = None) -> Iterator[list[dict]]:
        """Yield each page's `data`; follow `pageToken` with `limit` and nothing else."""
        query = {**(params or {}), "limit": self.config.page_size}
        while True:
            body = self.get(path, query)
            if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                raise SS12000Error(
                    f"SS 12000 server {self.config.base_url} answered {path} without a `data` "
                    "list; is base_url an SS 12000 v2 API?"
                )
            yield body["data"]
            token = body.get("pageToken")
            if not token:
                return
            query = {"pageToken": token, "limit": self.config.page_size}

    def deleted_entities(self, after: str, entities: list[str]) -> dict[str, list[str]]:
        """Ids the server deleted after `after`, per entity list key (e.g. 'absences')."""
        merged: dict[str, list[str]] = {}
        query: dict[str, Any] = {"after": after, "entities": entities}
        query["limit"] = self.config.page_size
        while True:
            body = self.get("/deletedEntities", query)
            if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
                raise SS12000Error(
                    f"SS 12000 server {self.config.base_url} answered /deletedEntities without "
                    "a `data` object"
                )
            for key, ids in body["data"].items():
                merged.setdefault(key, []).extend(ids or [])
            token = body.get("pageToken")
            if not token:
                return merged
            query = {"pageToken": token, "limit": self.config.page_size}
