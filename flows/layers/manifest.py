"""The manifest of a landed load: what was landed, from where, covering which partitions.

Every load in landing has one, as `_manifest.json` beside its rows. A load comes either from a
file in the drop folder (`file`) or from requests to an API (`request`), never both.
`partitions` are the periods its rows cover, all of one `partition_kind`.
"""

from __future__ import annotations

from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, model_validator

PartitionKind = Literal["month", "year", "none"]
_FORMATS = {"month": "%Y-%m", "year": "%Y"}


def partitions_of(dates: pl.Series, kind: PartitionKind) -> list[str]:
    """The months (YYYY-MM) or years (YYYY) that dates fall in, sorted."""
    return sorted(dates.drop_nulls().dt.strftime(_FORMATS[kind]).unique().to_list())


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str  # the landing source: attendance_export, ss12000, housing_export, kolada, ...
    dataset: str  # what was landed: an export layout, an API resource, a statistics table
    load_id: str  # sortable by time, unique by content
    file: str | None = None  # drop-folder file, relative to the drop folder
    request: dict[str, Any] | None = None  # API loads: what was asked (days, watermarks, ...)
    partition_kind: PartitionKind
    partitions: list[str]  # YYYY-MM months, YYYY years, or [] for kind "none"
    sha256: str  # of the drop-folder file, or of the rows and request of an API load
    rows: int
    extracted_at: str  # ISO 8601, UTC
    columns: list[str]
    dropped_columns: list[str] = []  # `ignore`d columns: never landed
    header_row: int | None = None  # drop-folder files: the header's row; a row's `_source_row`
    # counts from below it (file row = header_row + _source_row)
    pseudonymised: dict[str, str] = {}  # source column → the column holding its pseudonym
    key_fingerprint: str | None = None  # of the key that made the pseudonyms (never the key)
    release: dict[str, Any] = {}  # statistics: what the source said about this release
    size: int | None = None  # drop-folder files: size and mtime when found (the quick check)
    mtime_ns: int | None = None
    # the landed rows' file (data.parquet): its size and sha256 (older manifests lack them)
    data_size: int | None = None
    data_sha256: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_older_manifests(cls, data: Any) -> Any:
        """Manifests landed before partitions were typed had `period`/`periods`, and `file`
        held an API request's description too. Landing is never rewritten: read them."""
        if not isinstance(data, dict) or "periods" not in data:
            return data
        data = dict(data)
        periods = data.pop("periods")
        data.pop("period", None)
        source = data["source"]
        kind = {"housing_export": "year", "kolada": "year", "pxweb": "year", "survey": "year"}
        data["partition_kind"] = kind.get(source, "month")
        data["partitions"] = [p for p in periods if p != "unknown"]
        if source in ("ss12000", "kolada", "pxweb"):  # `file` described the request
            described = data.pop("file").removeprefix(f"ss12000:{data['dataset']}:")
            data["request"] = {**(data.get("request") or {}), "described": described}
        return data

    @property
    def origin(self) -> str:
        """The file, or a short description of the request (messages, audit)."""
        if self.file is not None:
            return self.file
        request = self.request or {}
        return f"{self.source}:{self.dataset}:{request.get('described', '')}"

    @property
    def folder_period(self) -> str:
        """The `period=` folder the load lands in (and its quarantine is written to)."""
        return self.partitions[0] if self.partitions else "none"
