"""HTTP client for an SS 12000 (SIS, v2.x) server: OAuth2 token, `pageToken` paging.

Rules from the SS 12000 v2 spec (docs/sources/ss12000.md):

- every call carries a Bearer token from the OAuth2 client-credentials endpoint; the token is
  renewed shortly before `expires_in` runs out and once more when the server answers 401;
- list endpoints answer `{"data": [...], "pageToken": str | null}`; the follow-up request
  sends the token with `limit` only (any other parameter is a `400_invalid_filter`);
- error bodies are `{"code", "message"}`;
- timeouts, connection errors, 429 and 5xx (including `503_overload`) are retried by the
  policy of connectors/http.py (backoff, `Retry-After` in either form); every other failure
  is a `SourceError` that says what to do.

Settings: `connectors/ss12000/settings.py`. No Prefect here, and nothing is written: callers
get plain dicts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx

from connectors.http import HttpSource, SourceError
from connectors.ss12000.settings import SS12000Settings

SOURCE = "ss12000"
TOKEN_MARGIN = 30  # seconds before expiry at which a token is renewed


class SS12000Http(HttpSource):
    """The policy with SS 12000's `{code, message}` error bodies and its advice."""

    def describe(self, response: httpx.Response) -> str:
        """'503 503_overload: Svaret är för stort' from an error body, or the status."""
        try:
            body = response.json()
            return f"{response.status_code} {body['code']}: {body['message']}"
        except (ValueError, KeyError, TypeError):
            return f"{response.status_code} {response.reason_phrase}"

    def advice(self, response: httpx.Response | None) -> str:
        return (
            "Nothing was published; the next run fetches the same delta again. If it "
            f"persists, check that {self.base_url} is reachable and ask the platform's support."
        )


class SS12000Client:
    def __init__(
        self,
        settings: SS12000Settings,
        client_secret: str,
        transport: httpx.BaseTransport | None = None,
    ):
        settings.require_connection()
        self.settings = settings
        self.base_url = str(settings.base_url).rstrip("/")
        self._secret = client_secret
        self.http = SS12000Http(
            f"SS 12000 server {self.base_url}",
            self.base_url,
            settings.retry_policy(),
            transport=transport,
        )
        self._token: str | None = None
        self._token_expires = 0.0
        self._lifetime = 0.0  # the last token's expires_in (messages)
        self.requests = 0  # calls to the API (not the token endpoint), for logs and tests

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> SS12000Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _describe(self, response: httpx.Response) -> str:
        return self.http.describe(response)

    # -- token -----------------------------------------------------------------------------

    def _fetch_token(self) -> None:
        s = self.settings
        data = {"grant_type": "client_credentials"}
        auth = None
        if s.token_auth == "basic":
            auth = (s.client_id, self._secret)
        else:
            data |= {"client_id": s.client_id, "client_secret": self._secret}
        if s.scopes:
            data["scope"] = " ".join(s.scopes)
        response = self.http.call(
            f"the token endpoint {s.token_url}",
            lambda: self.http.client.post(s.token_url, data=data, auth=auth),
        )
        if response.status_code != 200:
            raise SourceError(
                f"SS 12000 token endpoint {s.token_url} refused the client credentials "
                f"({self._describe(response)}). Check LAGESBILD_SS12000__CLIENT_ID and the client "
                "secret (LAGESBILD_SS12000__CLIENT_SECRET or the Prefect Secret block) and the "
                "scopes the platform granted."
            )
        try:
            body = response.json()
            self._token = body["access_token"]
            expires_in = float(body.get("expires_in", 300))
            self._lifetime = expires_in
        except (ValueError, KeyError, TypeError) as exc:
            raise SourceError(
                f"SS 12000 token endpoint {s.token_url} answered without an "
                "access_token; is token_url the platform's OAuth2 token endpoint?"
            ) from exc
        # renew a little early (half the lifetime for short-lived tokens)
        self._token_expires = time.monotonic() + expires_in - min(TOKEN_MARGIN, expires_in / 2)

    def _bearer(self) -> str:
        if self._token is None or time.monotonic() > self._token_expires:
            self._fetch_token()
        return f"Bearer {self._token}"

    # -- one call --------------------------------------------------------------------------

    def _get_once(self, url: str, params: dict[str, Any]) -> httpx.Response:
        """One try: GET with a valid token; an expired or revoked one is renewed once."""
        renewed = False
        while True:
            headers = {"Authorization": self._bearer(), "Accept": "application/json"}
            self.requests += 1
            response = self.http.client.get(url, params=params, headers=headers)
            if response.status_code == 401 and not renewed:
                self._token, renewed = None, True
                continue
            return response

    def get(self, path: str, params: dict[str, Any]) -> Any:
        """GET a path and return the parsed JSON; transient failures are retried."""
        url = self.base_url + path
        response = self.http.call(path, lambda: self._get_once(url, params))
        if response.status_code == 401:
            raise SourceError(
                f"SS 12000 server {self.base_url} answered 401 twice on {path}: to the token "
                f"in use and to a new one fetched at once from {self.settings.token_url} "
                f"({self._describe(response)}). Either this server does not accept that "
                "endpoint's tokens (check token_url) or its tokens expire at once (expires_in "
                f"{self._lifetime:.0f} s)."
            )
        if response.status_code == 403:
            raise SourceError(
                f"SS 12000 server {self.base_url} does not allow {path} for this client "
                f"({self._describe(response)}). Ask the platform to grant the scope for it."
            )
        if response.status_code != 200:
            raise SourceError(
                f"SS 12000 server {self.base_url} answered {self._describe(response)} on "
                f"{path} with {sorted(params)}. Check base_url (it ends before /organisations)."
            )
        try:
            return response.json()
        except ValueError as exc:
            raise SourceError(
                f"SS 12000 server {self.base_url} sent a body that is not JSON on {path} "
                f"({len(response.content)} bytes). Nothing was landed from this call; report it "
                "to the platform."
            ) from exc

    # -- lists -----------------------------------------------------------------------------

    def pages(self, path: str, params: dict[str, Any] | None = None) -> Iterator[list[dict]]:
        """Yield each page's `data`; follow `pageToken` with `limit` and nothing else."""
        query = {**(params or {}), "limit": self.settings.page_size}
        while True:
            body = self.get(path, query)
            if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                raise SourceError(
                    f"SS 12000 server {self.base_url} answered {path} without a `data` "
                    "list; is base_url an SS 12000 v2 API?"
                )
            yield body["data"]
            token = body.get("pageToken")
            if not token:
                return
            query = {"pageToken": token, "limit": self.settings.page_size}

    def deleted_entities(self, after: str, entities: list[str]) -> dict[str, list[str]]:
        """Ids the server deleted after `after`, per entity list key (e.g. 'absences')."""
        merged: dict[str, list[str]] = {}
        query: dict[str, Any] = {"after": after, "entities": entities}
        query["limit"] = self.settings.page_size
        while True:
            body = self.get("/deletedEntities", query)
            if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
                raise SourceError(
                    f"SS 12000 server {self.base_url} answered /deletedEntities without "
                    "a `data` object"
                )
            for key, ids in body["data"].items():
                merged.setdefault(key, []).extend(ids or [])
            token = body.get("pageToken")
            if not token:
                return merged
            query = {"pageToken": token, "limit": self.settings.page_size}
