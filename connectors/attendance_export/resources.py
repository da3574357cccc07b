"""Attendance exports from a drop folder: find new files, read them, pseudonymise them.

Yields one `ExportBatch` per file: the rows exactly as the source wrote them (all values as
text, original column names), except that the personal id column is already replaced by
`pupil_key` (HMAC) and `pupil_id_kind`, and `ignore`d columns (names) are dropped. Nothing
here writes to disk or knows about Prefect.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from connectors import drop_files
from connectors.attendance_export.layouts import Layout
from connectors.drop_files import Landed
from connectors.personal_ids import pseudonymise_column

SOURCE = "attendance_export"
ROW_NUMBER = "_source_row"


@dataclass
class ExportFile:
    layout: Layout
    path: Path
    sha256: str
    stat: tuple[int, int] | None = None  # (size, mtime ns) when discovered: landed with it


@dataclass
class ExportBatch:
    file: ExportFile
    rows: pl.DataFrame  # pseudonymised, all source values as text
    dropped_columns: list[str] = field(default_factory=list)


def discover(drop_dir: Path, layouts: dict[str, Layout], landed: Landed) -> list[ExportFile]:
    """Files in the drop folder whose content (sha256) is not landed yet, sorted by name."""
    return [
        ExportFile(layout, path, digest, stat)
        for layout in layouts.values()
        for path, digest, stat in drop_files.new_files(drop_dir, layout.files, landed)
    ]


def check_header(file: ExportFile, columns: Iterable[str]) -> None:
    layout = file.layout
    drop_files.check_header(
        file.path,
        columns,
        mapped=layout.columns,
        ignore=layout.ignore,
        layout_name=layout.name,
        guard_personal_ids=True,
    )


def _read(file: ExportFile) -> pl.DataFrame:
    layout = file.layout
    if layout.format == "csv":
        return drop_files.read_csv_text(
            file.path,
            encoding=layout.encoding,
            separator=layout.separator,
            layout_name=layout.name,
            system="attendance system",
        )
    return drop_files.read_xlsx_text(file.path, sheet=layout.sheet, layout_name=layout.name)


def read_export(file: ExportFile, key: bytes) -> ExportBatch:
    frame = _read(file)
    frame = frame.rename({c: c.strip() for c in frame.columns})
    check_header(file, frame.columns)
    dropped = [c for c in frame.columns if c in file.layout.ignore]
    frame = frame.drop(dropped).with_row_index(ROW_NUMBER, offset=1)
    frame = frame.with_columns(pl.col(ROW_NUMBER).cast(pl.Int64))
    id_column = file.layout.source_column("personal_id")
    frame = pseudonymise_column(frame, id_column, key)
    return ExportBatch(file, frame, dropped)


def read_new_exports(
    drop_dir: Path, layouts: dict[str, Layout], landed: Landed, key: bytes
) -> Iterator[ExportBatch]:
    for file in discover(drop_dir, layouts, landed):
        yield read_export(file, key)
