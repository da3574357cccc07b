"""Landing: immutable loads, exactly as the source said, pseudonymised.

One folder per load, `landing/<source>/<dataset>/period=<first partition>/load_id=<id>/`, with
the rows as parquet and `_manifest.json`. The folder is written under a temporary name and
renamed, so it appears complete or not at all. Nothing in landing is ever rewritten.
On an object store (setting `layers_url`), which has no rename, the rows are uploaded in
place and the manifest last: a load is read only through its manifest, so it appears
complete or not at all there too (one cut short is swept away by the next run).
"""

from __future__ import annotations

import calendar
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from connectors.drop_files import Landed
from flows.layers import keys, storage
from flows.layers.audit import DELETED_BY_RETENTION, read_audit, retractions
from flows.layers.files import CorruptFile, check_parquet, replace, sha256_of
from flows.layers.manifest import Manifest, PartitionKind, partitions_of
from flows.layers.parsing import parse_date
from lagesbild.settings import Settings

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

    @property
    def data_file(self) -> Path:
        return self.folder / DATA_FILE

    def repair(self) -> str:
        """What to do when this load's file is damaged: land it again."""
        manifest = self.manifest
        again = f"Move {self.folder} out of landing, then run"
        if manifest.file is not None:
            return f"{again} `lagesbild run`: {manifest.file} is landed again from the drop folder."
        if manifest.source == "ss12000" and manifest.partitions:
            first, last = manifest.partitions[0], manifest.partitions[-1]
            days = calendar.monthrange(int(last[:4]), int(last[5:7]))[1]
            return (
                f"{again} `lagesbild backfill --source ss12000 --from {first}-01 --to "
                f"{last}-{days:02d}`: those days are fetched again."
            )
        return f"{again} `lagesbild run`: {manifest.source} is asked for it again."

    def check(self) -> None:
        """The cheap check before reading: size (when recorded) and the parquet footer."""
        check_parquet(self.data_file, self.manifest.data_size, self.repair())

    def verify(self) -> None:
        """The full check (`lagesbild verify`): the sha256 recorded when it was landed."""
        self.check()
        if self.manifest.data_sha256 and sha256_of(self.data_file) != self.manifest.data_sha256:
            raise CorruptFile(
                f"{self.data_file} differs from what was landed (sha256). {self.repair()}"
            )

    def scan(self) -> pl.LazyFrame:
        """The rows, lazily (read in slices by a reader that batches); checked like `read`."""
        self.check()
        return storage.scan_parquet(self.data_file)

    def read(self, columns: list[str] | None = None) -> pl.DataFrame:
        self.check()
        try:
            return storage.read_parquet(self.data_file, columns=columns)
        except Exception as exc:  # a damaged file: name it and its repair
            raise CorruptFile(f"{self.data_file} cannot be read ({exc}). {self.repair()}") from exc


def new_load_id(sha256: str, now: datetime | None = None) -> str:
    """Sortable by time, unique by content."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S%f}-{sha256[:10]}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def land(root: Path, manifest: Manifest, rows: pl.DataFrame) -> Load:
    """Write one landing load; the folder appears complete or not at all. The manifest gets
    the size and sha256 of the rows' file (checked by every read and `lagesbild verify`)."""
    final = (
        root
        / manifest.source
        / manifest.dataset
        / f"period={manifest.folder_period}"
        / f"load_id={manifest.load_id}"
    )
    remote = not storage.is_local(root)
    staged = final if remote else final.with_name(f".{final.name}.tmp")
    if not remote:  # an object store has no folders to make
        storage.remove(staged)
        staged.mkdir(parents=True)
    data = staged / DATA_FILE
    if remote:  # one upload; the manifest below makes the load visible
        storage.put(data, rows.write_parquet)
    else:
        rows.write_parquet(data)
    manifest = manifest.model_copy(
        update={"data_sha256": sha256_of(data), "data_size": data.stat().st_size}
    )
    (staged / MANIFEST).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    if not remote:
        replace(staged, final, "landing")
    return Load(manifest, final)


def landed_loads(root: Path, source: str, dataset: str | None = None) -> list[Load]:
    """Every landed load of a source (of one dataset, if given), oldest first."""
    loads = []
    for path in (root / source).glob(f"{dataset or '*'}/period=*/load_id=*/{MANIFEST}"):
        try:
            manifest = Manifest.model_validate_json(path.read_text(encoding="utf-8"))
        except ValueError as exc:  # pydantic's ValidationError, bad UTF-8
            raise CorruptFile(
                f"{path} is not a readable manifest ({str(exc).splitlines()[0]}). Move "
                f"{path.parent} out of landing and run `lagesbild run` to land it again."
            ) from exc
        loads.append(Load(manifest, path.parent))
    return sorted(loads, key=lambda load: load.load_id)


def remove_load(load: Load, root: Path) -> None:
    """Take a load out of landing (a retraction): renamed to a temporary name first, so a
    crash leaves it whole or as a leftover the next run sweeps away, never half of it."""
    if not load.folder.exists():
        return
    if not storage.is_local(root):  # no rename: without its manifest the load is gone,
        (load.folder / MANIFEST).unlink(missing_ok=True)  # the rest is swept if cut short
        storage.remove(load.folder)
        return
    hidden = load.folder.with_name(f".{load.folder.name}.retracted.tmp")
    replace(load.folder, hidden, "retract-landing")
    storage.remove(hidden)
    for parent in (load.folder.parent, load.folder.parent.parent):  # period=…, <dataset>
        if parent != root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()


def every_load(root: Path) -> list[Load]:
    """Every landed load of every source, oldest first."""
    sources = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []
    return sorted(
        (load for source in sources for load in landed_loads(root, source)),
        key=lambda load: load.load_id,
    )


def land_exports(
    settings: Settings,
    source: str,
    layouts: dict,
    read_new_exports: Callable[..., Iterable],
    date_field: str,
    kind: PartitionKind,
    pseudonymised: str | None = None,
) -> list[Manifest]:
    """Land every new file of a drop-folder source (`<drop>/<folder>/…`, one layout each).

    `read_new_exports(drop, layouts, landed, min_age_seconds=…, on_skip=…)`, the connector's
    reader, yields the batches of the files not landed yet
    (each with `.file` (layout, path, sha256, stat), `.rows`, `.dropped_columns`, `.header_row`
    and `.skipped`); a file it leaves out (still uploading, no data rows) is named in a
    warning through `on_skip`, every run until it is replaced or removed. A load covers the
    months or years (`kind`) of its `date_field`; `pseudonymised` is the field whose source
    column the connector replaced by `pupil_key`. Files that no layout's pattern matches are
    named in a warning, never loaded by guess.
    """
    paths = settings.paths
    folders = {layout.files.split("/")[0] for layout in layouts.values()}
    matched = {path for layout in layouts.values() for path in paths.drop.glob(layout.files)}
    for folder in sorted(folders):
        for stray in sorted(set((paths.drop / folder).rglob("*")) - matched):
            if stray.is_file():  # e.g. 'Frånvaro.CSV' or an .xls
                log.warning(
                    "%s matches no %s layout's `files` pattern and was not loaded",
                    stray.relative_to(paths.drop),
                    source,
                )
    root = paths.landing
    landed = Landed.of(load.manifest for load in landed_loads(root, source))
    landed = _without_retracted(landed, settings, source)
    manifests = []

    def skipped(path: Path, why: str) -> None:
        log.warning("%s was not landed: %s", path.relative_to(paths.drop), why)

    batches = read_new_exports(
        paths.drop,
        layouts,
        landed,
        min_age_seconds=settings.min_file_age_seconds,
        on_skip=skipped,
    )
    for batch in batches:
        layout = batch.file.layout
        if batch.skipped:  # title rows, blank rows, a totals row: counted, never data
            left_out = ", ".join(f"{n} {kind}" for kind, n in sorted(batch.skipped.items()))
            log.info("%s: rows left out around the table: %s", batch.file.path.name, left_out)
        text = pl.col(layout.source_column(date_field)).str.strip_chars()
        dates = batch.rows.select(parse_date(text, layout.date_formats)).to_series()
        partitions = partitions_of(dates, kind)
        size, mtime_ns = batch.file.stat if batch.file.stat is not None else (None, None)
        column = layout.source_column(pseudonymised) if pseudonymised else None
        manifest = Manifest(
            source=source,
            dataset=layout.name,
            load_id=new_load_id(batch.file.sha256),
            file=batch.file.path.relative_to(paths.drop).as_posix(),
            partition_kind=kind,
            partitions=partitions,
            sha256=batch.file.sha256,
            rows=batch.rows.height,
            extracted_at=now_iso(),
            columns=batch.rows.columns,
            dropped_columns=batch.dropped_columns,
            header_row=batch.header_row,
            pseudonymised={column: "pupil_key"} if column else {},
            key_fingerprint=(
                keys.fingerprint(settings.require_pseudonym_key()) if column else None
            ),
            size=size,
            mtime_ns=mtime_ns,
        )
        manifest = land(root, manifest, batch.rows).manifest
        manifests.append(manifest)
        covered = ", ".join(partitions) or "none (no usable date)"
        log.info("landed %s: %s rows, %ss %s", manifest.file, f"{manifest.rows:,}", kind, covered)
    return manifests


def _without_retracted(landed: Landed, settings: Settings, source: str) -> Landed:
    """A retracted file is not landed again while it stays in the drop folder (a corrected
    file, other content, is): said in a warning every run, as a skipped file is."""
    gone = retractions(settings.paths.audit).filter(pl.col("source") == source)
    hashes = frozenset(gone.get_column("sha256").drop_nulls().to_list())
    for row in gone.iter_rows(named=True):
        path = settings.paths.drop / (row["file"] or "")
        if row["file"] and path.is_file() and sha256_of(path) == row["sha256"]:
            log.warning(
                "%s was retracted (load %s, %s by %s: %s) and is not landed again; remove it "
                "from the drop folder, or replace it with a corrected file",
                row["file"], row["load_id"], f"{row['finished_at']:%Y-%m-%d}", row["by"],
                row["reason"],
            )  # fmt: skip
    # a file whose load retention deleted is not landed again either (it is still published)
    deleted = read_audit(settings.paths.audit).filter(
        (pl.col("status") == DELETED_BY_RETENTION) & (pl.col("source") == source)
    )
    hashes |= frozenset(deleted.get_column("sha256").drop_nulls().to_list())
    return Landed(landed.sha256 | hashes, landed.files)


def land_request(
    root: Path,
    source: str,
    dataset: str,
    rows: pl.DataFrame,
    sha256: str,
    request: dict[str, Any],
    partitions: list[str],
    kind: PartitionKind,
    now: datetime | None = None,
    **fields: Any,
) -> Manifest:
    """Land what an API answered: `request` says what was asked (`described`: in words)."""
    now = now or datetime.now(UTC)
    manifest = Manifest(
        source=source,
        dataset=dataset,
        load_id=new_load_id(sha256, now),
        request=request,
        partition_kind=kind,
        partitions=partitions,
        sha256=sha256,
        rows=rows.height,
        extracted_at=now.isoformat(timespec="seconds"),
        columns=rows.columns,
        **fields,
    )
    return land(root, manifest, rows).manifest
