"""PxWeb: SCB's PxWebApi 2 (`/tables/{id}`, `/metadata`, POST `/data`) and the v1 API that
Folkhälsomyndigheten (and SCB's older `api.scb.se`) serve (GET a table = metadata, POST = data).

`fetch(table, selection)` takes a selection per variable (value codes, `*` for all), expands
it against the table's metadata, splits it into requests that stay under the cell limit
(the smaller of `pxweb_max_cells` and the server's: v2 `/config` `maxDataCells`, v1 `?config`
`maxValues`), and returns one long frame (see `jsonstat.py`). Calls are rate limited on our
side, by default 10 per 10 s (the limit SCB publishes; its `/config` allows 30), and retried
by the policy of connectors/http.py, plus SCB's 403 "too many calls"; a 403 for too many cells
is not retried (asking again cannot help): the request is split in halves instead, and the
lower limit kept. Settings: `connectors/pxweb/settings.py`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx
import polars as pl

from connectors.http import RETRY_STATUSES, HttpSource, RateLimiter, SourceError
from connectors.pxweb.jsonstat import Dataset, read_jsonstat2
from connectors.pxweb.settings import API_VERSIONS, Api, PxWebSettings


@dataclass
class TableInfo:
    table: str
    label: str
    updated: str | None
    variables: dict[str, list[str]]  # variable code → value codes, in the table's order


class OverCellLimit(SourceError):
    """A 403 for a selection above the server's cell limit."""


class PxWebHttp(HttpSource):
    """SCB answers 403 both to too many calls (retried like a 429) and to a selection above
    its cell limit (not retried; the message says which setting to lower). A 403 whose body
    speaks of cells is the second."""

    def __init__(
        self, settings: PxWebSettings, api: Api, transport: httpx.BaseTransport | None = None
    ):
        super().__init__(
            f"PxWeb {settings.url(api)}",
            settings.url(api),
            settings.retry_policy(RETRY_STATUSES | {403}),
            limiter=RateLimiter(settings.pxweb_calls, settings.pxweb_seconds),
            transport=transport,
        )
        self.max_cells = settings.pxweb_max_cells  # lowered to the server's `maxDataCells`

    @staticmethod
    def over_cell_limit(response: httpx.Response) -> bool:
        text = response.text.lower()
        return response.status_code == 403 and any(w in text for w in ("cell", "value", "värde"))

    def is_transient(self, response: httpx.Response) -> bool:
        return super().is_transient(response) and not self.over_cell_limit(response)

    def advice(self, response: httpx.Response | None) -> str:
        if response is not None and self.over_cell_limit(response):
            return (
                f"The server takes fewer cells per request than the {self.max_cells:,} we split "
                "at: set statistics.pxweb_max_cells lower. The previous data stays published."
            )
        return super().advice(response)


class PxWebClient:
    def __init__(
        self,
        settings: PxWebSettings,
        api: Api = "scb",
        *,
        language: str = "sv",
        transport: httpx.BaseTransport | None = None,
    ):
        self.api_version, self.language = API_VERSIONS[api], language
        self.http = PxWebHttp(settings, api, transport)
        self._config_read = False

    def __enter__(self) -> PxWebClient:
        return self

    def __exit__(self, *exc) -> None:
        self.http.close()

    @property
    def max_cells(self) -> int:
        """The smaller of ours and the server's published limit: v2 `/config` `maxDataCells`,
        v1 `?config` `maxValues` (Folkhälsomyndigheten: 1,000)."""
        if not self._config_read:
            if self.api_version == 2:
                config, key = self.http.request_json("GET", "config"), "maxDataCells"
            else:
                config, key = self.http.request_json("GET", "?config"), "maxValues"
            if isinstance(config, dict) and isinstance(config.get(key), int):
                self.http.max_cells = min(self.http.max_cells, config[key])
            self._config_read = True
        return self.http.max_cells

    def table(self, table: str) -> TableInfo:
        """Label, `updated` and the variables with their value codes."""
        if self.api_version == 2:
            info = self.http.request_json("GET", f"tables/{table}", params={"lang": self.language})
            meta = self.http.request_json(
                "GET", f"tables/{table}/metadata", params={"lang": self.language}
            )
            if not isinstance(meta, dict) or "dimension" not in meta:
                raise SourceError(f"PxWeb {table}: metadata is not a JSON-stat2 dataset")
            variables = {
                d: list(_codes(meta["dimension"][d])) for d in meta.get("id", meta["dimension"])
            }
            return TableInfo(table, info.get("label", ""), info.get("updated"), variables)
        meta = self.http.request_json("GET", table)
        if not isinstance(meta, dict) or "variables" not in meta:
            raise SourceError(f"PxWeb {table}: the table metadata has no 'variables'")
        variables = {v["code"]: list(v["values"]) for v in meta["variables"]}
        return TableInfo(table, meta.get("title", ""), self._v1_updated(table), variables)

    def _v1_updated(self, table: str) -> str | None:
        folder, _, name = table.rpartition("/")
        listing = self.http.request_json("GET", folder)
        for item in listing if isinstance(listing, list) else []:
            if item.get("id") == name:
                return item.get("updated")
        return None

    def fetch(
        self, table: str, selection: Mapping[str, Sequence[str]], info: TableInfo | None = None
    ) -> Dataset:
        """Every cell of the selection; variables not named are eliminated (aggregated)."""
        info = info or self.table(table)
        expanded = {}
        for variable, codes in selection.items():
            if variable not in info.variables:
                raise SourceError(
                    f"PxWeb {table}: no variable {variable!r}; it has {', '.join(info.variables)}"
                )
            known = info.variables[variable]
            chosen = known if list(codes) == ["*"] else list(codes)
            unknown = [c for c in chosen if c not in known]
            if unknown:
                raise SourceError(f"PxWeb {table}: {variable} has no value(s) {unknown[:5]}")
            expanded[variable] = chosen
        parts = [
            dataset
            for part in split_selection(expanded, self.max_cells)
            for dataset in self._post_split(table, part)
        ]
        first = parts[0]
        first.frame = pl.concat([p.frame for p in parts], how="vertical")
        return first

    def _post_split(self, table: str, selection: dict[str, list[str]]) -> list[Dataset]:
        """POST a part; a 403 over the cell limit (the server takes fewer cells than it
        published, or publishes none) halves the part and lowers the limit for what
        follows, instead of retrying the same request."""
        try:
            return [self._post(table, selection)]
        except OverCellLimit:
            cells = math.prod(len(c) for c in selection.values())
            if cells <= 1:
                raise
            self.http.max_cells = min(self.http.max_cells, max(cells // 2, 1))
            return [
                dataset
                for part in split_selection(selection, self.http.max_cells)
                for dataset in self._post_split(table, part)
            ]

    def _post(self, table: str, selection: dict[str, list[str]]) -> Dataset:
        if self.api_version == 2:
            body = {
                "selection": [{"variableCode": v, "valueCodes": c} for v, c in selection.items()]
            }
            answer = self._request_data(
                f"tables/{table}/data",
                params={"lang": self.language, "outputFormat": "json-stat2"},
                json=body,
            )
        else:
            body = {
                "query": [
                    {"code": v, "selection": {"filter": "item", "values": c}}
                    for v, c in selection.items()
                ],
                "response": {"format": "json-stat2"},
            }
            answer = self._request_data(table, json=body)
        return read_jsonstat2(answer)

    def _request_data(self, url: str, **kwargs):
        response = self.http.send("POST", url, **kwargs)
        if self.http.over_cell_limit(response):
            raise OverCellLimit(
                f"PxWeb {url}: 403 over the cell limit. {self.http.advice(response)}"
            )
        if not response.is_success:
            raise SourceError(
                f"{self.http.name}: POST {response.request.url} answered "
                f"{self.http.describe(response)}. {self.http.advice(response)}"
            )
        try:
            return response.json()
        except ValueError as exc:
            raise SourceError(
                f"{self.http.name}: POST {response.request.url} answered a body that is not "
                f"JSON (starts {response.text[:80]!r})"
            ) from exc


def _codes(dimension: dict) -> list[str]:
    index = dimension["category"]["index"]
    if isinstance(index, list):
        return index
    return [c for c, _ in sorted(index.items(), key=lambda item: item[1])]


def split_selection(selection: dict[str, list[str]], max_cells: int) -> list[dict[str, list[str]]]:
    """Split a selection into parts of at most `max_cells` cells, cutting the largest list."""
    cells = math.prod(len(c) for c in selection.values())
    if cells <= max_cells:
        return [selection]
    variable = max(selection, key=lambda v: len(selection[v]))
    codes = selection[variable]
    if len(codes) == 1:
        raise SourceError(f"PxWeb: one cell slice is above the limit of {max_cells} cells")
    other = cells // len(codes)
    per_part = max(max_cells // other, 1)
    parts = []
    for start in range(0, len(codes), per_part):
        part = {**selection, variable: codes[start : start + per_part]}
        parts += split_selection(part, max_cells)
    return parts
