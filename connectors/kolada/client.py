"""Kolada v3 (RKA's municipal KPI database, https://api.kolada.se/v3): data and KPI metadata.

- Data: `/data/kpi/{kpis}/municipality/{ids}/year/{years}` and, for organisational units such
  as school units, `/oudata/kpi/{kpis}/ou/{ids}/year/{years}`. Kolada refuses more than 25
  values in one path list, so longer lists are chunked.
- Paging: `per_page` (at most 5000) and the envelope's `next_url`, followed until null.
- Incremental: `from_date=YYYY-MM-DD` returns only values updated on or after that day.
- A row holds up to three values (gender T total, K kvinnor, M män); each value keeps its
  `status` and may be null. Rows flagged `isdeleted` are reported as deletions
  (`is_deleted=True`, value None), never as values, so a caller can withdraw what it had.
- KPI metadata (`/kpi/{ids}`): title, publication dates, publ_period.

Politeness: at most `kolada_calls` requests per `kolada_seconds` (default 5 per second, what
other clients use; Kolada publishes no limit) and the retry policy of connectors/http.py.
Settings: `connectors/kolada/settings.py`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlsplit

import httpx

from connectors.http import HttpSource, RateLimiter, SourceError
from connectors.kolada.settings import KoladaSettings

MAX_PATH_VALUES = 25  # v3 refuses longer kpi / municipality / year lists
GENDERS = {"T", "K", "M"}


@dataclass(frozen=True)
class KpiValue:
    """One value: KPI × municipality (or OU) × period × gender."""

    kpi: str
    area: str  # municipality id (4 digits, 0000 the country, 00LL a region) or OU id
    period: int
    gender: str  # T | K | M
    value: float | None
    status: str
    count: int | None  # members behind a municipality-group average
    is_deleted: bool


def _chunks(values: Iterable[str], size: int = MAX_PATH_VALUES) -> list[list[str]]:
    items = list(dict.fromkeys(str(v) for v in values))  # unique, order kept
    return [items[i : i + size] for i in range(0, len(items), size)]


def parse_data_page(body: dict, *, where: str = "Kolada") -> tuple[list[KpiValue], str | None]:
    """The values of one `/data` or `/oudata` page and its `next_url`."""
    if not isinstance(body, dict) or not isinstance(body.get("values"), list):
        raise SourceError(f"{where}: the answer has no 'values' list (keys: {_keys(body)})")
    values = []
    for row in body["values"]:
        try:
            area = row["municipality"] if "municipality" in row else row["ou"]
            kpi, period = str(row["kpi"]), int(row["period"])
            entries = row["values"]
        except (KeyError, TypeError, ValueError) as exc:
            raise SourceError(
                f"{where}: a data row lacks kpi, municipality/ou, period or values: {row!r:.200}"
            ) from exc
        row_deleted = bool(row.get("isdeleted", False))
        for entry in entries:
            gender = entry.get("gender")
            if gender not in GENDERS:
                raise SourceError(f"{where}: unknown gender {gender!r} in {row!r:.200}")
            deleted = row_deleted or bool(entry.get("isdeleted", False))
            raw = entry.get("value")
            if not (raw is None or isinstance(raw, int | float)) or isinstance(raw, bool):
                raise SourceError(f"{where}: value {raw!r} is not a number in {row!r:.200}")
            values.append(
                KpiValue(
                    kpi=kpi,
                    area=str(area),
                    period=period,
                    gender=gender,
                    value=None if deleted or raw is None else float(raw),
                    status=str(entry.get("status") or ""),
                    count=entry.get("count"),
                    is_deleted=deleted,
                )
            )
    return values, body.get("next_url")


def _keys(body) -> str:
    return ", ".join(map(str, body)) if isinstance(body, dict) else type(body).__name__


class KoladaClient:
    def __init__(self, settings: KoladaSettings, transport: httpx.BaseTransport | None = None):
        self.per_page = settings.kolada_per_page
        self.base_url = settings.kolada_url
        self.http = HttpSource(
            "Kolada",
            settings.kolada_url,
            settings.retry_policy(),
            limiter=RateLimiter(settings.kolada_calls, settings.kolada_seconds),
            transport=transport,
        )

    def __enter__(self) -> KoladaClient:
        return self

    def __exit__(self, *exc) -> None:
        self.http.close()

    def _relative(self, next_url: str | None) -> str | None:
        """`next_url` as a path and query under our own base URL. The real one is
        `http://api.kolada.se/v3/…` (no redirect to https is followed, and a proxy or a
        test server has another host): only what follows the base path is trusted."""
        if not next_url:
            return None
        link, base = urlsplit(next_url), urlsplit(self.base_url).path.rstrip("/")
        path = link.path
        if base and base in path:
            path = path[path.index(base) + len(base) :]
        return path.lstrip("/") + (f"?{link.query}" if link.query else "")

    def _pages(self, path: str, params: dict) -> Iterator[KpiValue]:
        url: str | None = path
        first = True
        while url:
            body = self.http.request_json("GET", url, params=params if first else None)
            values, url = parse_data_page(body, where=f"Kolada {path}")
            url = self._relative(url)
            first = False
            yield from values

    def data(
        self,
        kpis: Iterable[str],
        municipalities: Iterable[str],
        years: Iterable[int],
        from_date: date | None = None,
    ) -> Iterator[KpiValue]:
        """Values of the KPIs for the municipalities and years, every chunk and page."""
        yield from self._fetch("data", "municipality", kpis, municipalities, years, from_date)

    def ou_data(
        self,
        kpis: Iterable[str],
        units: Iterable[str],
        years: Iterable[int],
        from_date: date | None = None,
    ) -> Iterator[KpiValue]:
        """Values for organisational units (e.g. school units `V15E…`)."""
        yield from self._fetch("oudata", "ou", kpis, units, years, from_date)

    def _fetch(self, kind, area_kind, kpis, areas, years, from_date) -> Iterator[KpiValue]:
        params: dict[str, str | int] = {"per_page": self.per_page}
        if from_date is not None:
            params["from_date"] = from_date.isoformat()
        for kpi_chunk, area_chunk, year_chunk in itertools.product(
            _chunks(kpis), _chunks(areas), _chunks(str(y) for y in years)
        ):
            path = (
                f"{kind}/kpi/{','.join(kpi_chunk)}/{area_kind}/{','.join(area_chunk)}"
                f"/year/{','.join(year_chunk)}"
            )
            yield from self._pages(path, params)

    def kpis(self, ids: Iterable[str]) -> list[dict]:
        """KPI metadata objects (id, title, publication_date, prel_publication_date, …)."""
        found = []
        for chunk in _chunks(ids):
            url: str | None = f"kpi/{','.join(chunk)}"
            while url:
                body = self.http.request_json("GET", url)
                found += parse_kpi_page(body)
                url = self._relative(body.get("next_url"))
        return found


def parse_kpi_page(body: dict) -> list[dict]:
    if not isinstance(body, dict) or not isinstance(body.get("values"), list):
        raise SourceError(f"Kolada /kpi: the answer has no 'values' list (keys: {_keys(body)})")
    for kpi in body["values"]:
        if not isinstance(kpi, dict) or "id" not in kpi or "title" not in kpi:
            raise SourceError(f"Kolada /kpi: a KPI without id/title: {kpi!r:.200}")
    return body["values"]
