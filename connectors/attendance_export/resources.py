"""Attendance exports from a drop folder: find new files, read them, pseudonymise them.

Yields one `ExportBatch` per file: the rows exactly as the source wrote them (all values as
text, original column names), except that the personal id column is already replaced by
`pupil_key` (HMAC) and `pupil_id_kind`, and `ignore`d columns (names) are dropped. Nothing
here writes to disk or knows about Prefect.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from connectors.attendance_export.layouts import Layout, LayoutError
from connectors.personal_ids import pseudonymise_column

SOURCE = "attendance_export"
ROW_NUMBER = "_source_row"
_BOM = b"\xef\xbb\xbf"


@dataclass
class ExportFile:
    layout: Layout
    path: Path
    sha256: str


@dataclass
class ExportBatch:
    file: ExportFile
    rows: pl.DataFrame  # pseudonymised, all source values as text
    dropped_columns: list[str] = field(default_factory=list)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def discover(drop_dir: Path, layouts: dict[str, Layout], landed: set[str]) -> list[ExportFile]:
    """Files in the drop folder whose content (sha256) is not landed yet, sorted by name."""
    found = []
    for layout in layouts.values():
        for path in sorted(drop_dir.glob(layout.files)):
            if path.is_file():
                digest = sha256_of(path)
                if digest not in landed:
                    found.append(ExportFile(layout, path, digest))
    return found


def _read_csv(file: ExportFile) -> pl.DataFrame:
    layout = file.layout
    with file.path.open("rb") as handle:
        has_bom = handle.read(3) == _BOM
    encoding = "utf8" if has_bom or layout.encoding == "utf-8" else layout.encoding
    try:
        frame = pl.read_csv(
            file.path, separator=layout.separator, encoding=encoding, infer_schema=False
        )
    except (pl.exceptions.ComputeError, UnicodeDecodeError) as exc:
        raise LayoutError(
            f"{file.path.name}: cannot be read as {layout.format} ({encoding}, separator "
            f"'{layout.separator}') for layout '{layout.name}' ({type(exc).__name__}; the "
            "parser's own message is left out because it quotes file content, i.e. personal "
            "data). Check the export settings "
            "of the attendance system or the layout's encoding/separator."
        ) from None  # the cause's message would quote the file
    return frame.with_columns(pl.all().fill_null(""))


def _read_xlsx(file: ExportFile) -> pl.DataFrame:
    try:
        frame = pl.read_excel(file.path, sheet_name=file.layout.sheet, infer_schema_length=0)
    except Exception as exc:  # fastexcel raises its own error types
        raise LayoutError(
            f"{file.path.name}: cannot read sheet '{file.layout.sheet}' for layout "
            f"'{file.layout.name}' ({type(exc).__name__}; details left out: they may quote "
            "personal data)"
        ) from None  # the cause's message would quote the file
    return frame.with_columns(pl.all().fill_null(""))


def check_header(file: ExportFile, columns: Iterable[str]) -> None:
    layout = file.layout
    present = list(columns)
    if any(re.search(r"\d{6}", c) for c in present if c not in layout.columns):
        # Never echo these "column names": they are a data row, with a personnummer in it.
        raise LayoutError(
            f"{file.path.name}: the first row looks like data (it holds a personal id), not a "
            f"header row as layout '{layout.name}' expects. Export the file with its header."
        )
    missing = [c for c in layout.columns if c not in present]
    unknown = [c for c in present if c not in layout.columns and c not in layout.ignore]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing columns {missing}")
        if unknown:
            parts.append(f"unknown columns {unknown}")
        raise LayoutError(
            f"{file.path.name} does not match layout '{layout.name}': {'; '.join(parts)}. "
            "If the system's export changed, update the layout's `columns`/`ignore` in "
            "layouts.yml; if the file belongs to another system, move it to that folder."
        )


def read_export(file: ExportFile, key: bytes) -> ExportBatch:
    frame = _read_csv(file) if file.layout.format == "csv" else _read_xlsx(file)
    frame = frame.rename({c: c.strip() for c in frame.columns})
    check_header(file, frame.columns)
    dropped = [c for c in frame.columns if c in file.layout.ignore]
    frame = frame.drop(dropped).with_row_index(ROW_NUMBER, offset=1)
    frame = frame.with_columns(pl.col(ROW_NUMBER).cast(pl.Int64))
    id_column = file.layout.source_column("personal_id")
    frame = pseudonymise_column(frame, id_column, key)
    return ExportBatch(file, frame, dropped)


def read_new_exports(
    drop_dir: Path, layouts: dict[str, Layout], landed: set[str], key: bytes
) -> Iterator[ExportBatch]:
    for file in discover(drop_dir, layouts, landed):
        yield read_export(file, key)
