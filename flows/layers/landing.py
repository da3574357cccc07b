"""Landing: immutable loads, exactly as the source said, pseudonymised.

One folder per load, `landing/<source>/<dataset>/period=<first partition>/load_id=<id>/`, with
the rows as parquet and `_manifest.json`. The folder is written under a temporary name and
renamed, so it appears complete or not at all. Nothing in landing is ever rewritten.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from connectors.drop_files import Landed
from flows.layers.manifest import Manifest, PartitionKind

MANIFEST = "_manifest.json"
DATA_FILE = "data.parquet"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Load:
    """A landed load: its manifest and its folder."""

    manifest: Manifest
    folder: Path

    @property
    def load_id(self) -> str:
        return self.manifest.load_id

    def read(self, columns: list[str] | None = None) -> pl.DataFrame:
        return pl.read_parquet(self.folder / DATA_FILE, columns=columns)


def new_load_id(sha256: str, now: datetime | None = None) -> str:
    """Sortable by time, unique by content."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S%f}-{sha256[:10]}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def land(root: Path, manifest: Manifest, rows: pl.DataFrame) -> Load:
    """Write one landing load; the folder appears complete or not at all."""
    final = (
        root
        / manifest.source
        / manifest.dataset
        / f"period={manifest.folder_period}"
        / f"load_id={manifest.load_id}"
    )
    staged = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    rows.write_parquet(staged / DATA_FILE)
    (staged / MANIFEST).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    os.replace(staged, final)
    return Load(manifest, final)


def landed_loads(root: Path, source: str, dataset: str | None = None) -> list[Load]:
    """Every landed load of a source (of one dataset, if given), oldest first."""
    loads = []
    for path in (root / source).glob(f"{dataset or '*'}/period=*/load_id=*/{MANIFEST}"):
        manifest = Manifest.model_validate_json(path.read_text(encoding="utf-8"))
        loads.append(Load(manifest, path.parent))
    return sorted(loads, key=lambda load: load.load_id)


def land_drop_files(
    root: Path,
    drop: Path,
    source: str,
    batches: Callable[[Landed], Iterable],
    partitions_of: Callable[[object], list[str]],
    kind: PartitionKind,
    pseudonymised: Callable[[object], dict[str, str]] = lambda batch: {},
) -> list[Manifest]:
    """Land every new file of a drop-folder source.

    `batches(landed)` yields the connector's batches of the files not landed yet (each with
    `.file` (layout, path, sha256, stat), `.rows` and `.dropped_columns`); `partitions_of`
    gives the periods a batch's rows cover, `pseudonymised` which columns were pseudonymised.
    """
    landed = Landed.of(load.manifest for load in landed_loads(root, source))
    manifests = []
    for batch in batches(landed):
        partitions = partitions_of(batch)
        size, mtime_ns = batch.file.stat if batch.file.stat is not None else (None, None)
        manifest = Manifest(
            source=source,
            dataset=batch.file.layout.name,
            load_id=new_load_id(batch.file.sha256),
            file=batch.file.path.relative_to(drop).as_posix(),
            partition_kind=kind,
            partitions=partitions,
            sha256=batch.file.sha256,
            rows=batch.rows.height,
            extracted_at=now_iso(),
            columns=batch.rows.columns,
            dropped_columns=batch.dropped_columns,
            pseudonymised=pseudonymised(batch),
            size=size,
            mtime_ns=mtime_ns,
        )
        land(root, manifest, batch.rows)
        manifests.append(manifest)
        covered = ", ".join(partitions) or "none (no usable date)"
        log.info("landed %s: %s rows, %ss %s", manifest.file, f"{manifest.rows:,}", kind, covered)
    return manifests


def warn_unmatched(drop: Path, folder: str, patterns: Iterable[str], kind: str) -> None:
    """Name each file in a source's drop folder that no layout's `files` pattern matches
    (e.g. 'Frånvaro.CSV' or an .xls) instead of ignoring it silently."""
    matched = {path for pattern in patterns for path in drop.glob(pattern)}
    for stray in sorted(set((drop / folder).rglob("*")) - matched):
        if stray.is_file():
            log.warning(
                "%s matches no %s layout's `files` pattern and was not loaded",
                stray.relative_to(drop),
                kind,
            )
