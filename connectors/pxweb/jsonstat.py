"""Readers for PxWeb answers: JSON-stat2 (v2's default, and v1 with format json-stat2) and
v1's `format=json`, into one long polars frame: a text column per dimension plus `value`.

JSON-stat2 keeps the values in one flat row-major array in the order of `id`; the position of
a cell is Σ posᵢ × Πⱼ>ᵢ sizeⱼ. `null` marks a missing or suppressed value (and `status` may
say why), and is kept as null.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import polars as pl

from connectors.http import SourceError

# DeSO/RegSO 2025 codes come as e.g. '0180C1010_DeSO2025'; the code is the part before.
_AREA_SUFFIX = re.compile(r"_(DeSO|RegSO)\d{4}$")
_MISSING = {"..", ".", "-", "…", ""}


def strip_area_suffix(code: str) -> str:
    return _AREA_SUFFIX.sub("", code)


@dataclass
class Dataset:
    frame: pl.DataFrame  # one column per dimension (codes, text) + value (Float64) + status
    label: str
    updated: str | None
    source: str | None
    table_id: str | None
    dimension_labels: dict[str, dict[str, str]]  # dimension → code → label


def _ordered_codes(dimension: dict, name: str) -> list[str]:
    try:
        index = dimension["category"]["index"]
    except (KeyError, TypeError) as exc:
        raise SourceError(f"JSON-stat2: dimension {name!r} has no category index") from exc
    if isinstance(index, list):
        return [str(c) for c in index]
    return [str(c) for c, _ in sorted(index.items(), key=lambda item: item[1])]


def read_jsonstat2(body: dict) -> Dataset:
    """Any JSON-stat2 dataset, whatever its dimensions."""
    if not isinstance(body, dict) or body.get("class") != "dataset":
        raise SourceError("JSON-stat2: the answer is not a dataset (class != 'dataset')")
    try:
        ids, sizes, dimensions = list(body["id"]), list(body["size"]), body["dimension"]
    except KeyError as exc:
        raise SourceError(f"JSON-stat2: the dataset lacks {exc.args[0]!r}") from exc
    codes = [_ordered_codes(dimensions[d], d) for d in ids]
    if [len(c) for c in codes] != sizes:
        raise SourceError(f"JSON-stat2: sizes {sizes} do not match the dimensions' categories")
    cells = 1
    for size in sizes:
        cells *= size
    raw = body.get("value", [])
    if isinstance(raw, dict):  # sparse form: {"position": value}
        raw = [raw.get(str(i)) for i in range(cells)]
    if len(raw) != cells:
        raise SourceError(f"JSON-stat2: {len(raw)} values for {cells} cells")
    status = body.get("status") or {}
    if isinstance(status, list):
        status = {str(i): s for i, s in enumerate(status) if s}
    rows = list(itertools.product(*codes))  # row-major, the last dimension varies fastest
    columns = {d: [strip_area_suffix(r[i]) for r in rows] for i, d in enumerate(ids)}
    try:
        values = [None if v is None else float(v) for v in raw]
    except (TypeError, ValueError) as exc:
        raise SourceError(f"JSON-stat2: a value is not a number ({exc})") from exc
    frame = pl.DataFrame(
        {
            **columns,
            "value": pl.Series(values, dtype=pl.Float64),
            "status": [status.get(str(i)) for i in range(cells)],
        },
        schema_overrides={d: pl.String for d in ids} | {"status": pl.String},
    )
    labels = {
        d: {strip_area_suffix(c): t for c, t in dimensions[d]["category"].get("label", {}).items()}
        for d in ids
    }
    px = (body.get("extension") or {}).get("px") or {}
    return Dataset(
        frame, body.get("label", ""), body.get("updated"), body.get("source"), px.get("tableid"),
        labels,
    )  # fmt: skip


def read_px_json(body: dict) -> Dataset:
    """PxWeb v1 `format=json`: `columns` (t/d = dimensions, c = contents) and `data` rows."""
    try:
        columns, data = body["columns"], body["data"]
    except (KeyError, TypeError) as exc:
        raise SourceError("PxWeb json: the answer lacks 'columns' or 'data'") from exc
    keys = [c["code"] for c in columns if c.get("type") != "c"]
    contents = [c["code"] for c in columns if c.get("type") == "c"]
    rows: dict[str, list] = {k: [] for k in [*keys, "ContentsCode", "value"]}
    for item in data:
        if len(item["key"]) != len(keys) or len(item["values"]) != len(contents):
            raise SourceError(f"PxWeb json: a row does not match the columns: {item!r:.200}")
        for content, raw in zip(contents, item["values"], strict=True):
            for key, code in zip(keys, item["key"], strict=True):
                rows[key].append(strip_area_suffix(code))
            rows["ContentsCode"].append(content)
            try:
                rows["value"].append(None if raw in _MISSING else float(raw))
            except ValueError as exc:
                raise SourceError(f"PxWeb json: value {raw!r} is not a number") from exc
    metadata = (body.get("metadata") or [{}])[0]
    frame = pl.DataFrame(rows, schema={**{k: pl.String for k in rows}, "value": pl.Float64})
    return Dataset(
        frame.with_columns(status=pl.lit(None, pl.String)),
        metadata.get("label", ""), metadata.get("updated"), metadata.get("source"),
        metadata.get("infofile"), {},
    )  # fmt: skip
