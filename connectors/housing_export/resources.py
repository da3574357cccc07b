"""Housing companies' work-order exports from a drop folder: find new files, read them.

Yields one `ExportBatch` per file: the rows exactly as the company's system wrote them (all
values as text, original column names, `_source_row` 1 = the first row below the header),
with the `ignore`d columns (free text, reporters' names) dropped. Title rows, blank rows and a
totals row or footer are left out (counted in `skipped`). A file without data rows gives a
batch with no rows and `empty` saying why: landing skips it with a warning. Nothing here
writes to disk or knows about Prefect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from connectors import drop_files
from connectors.drop_files import ROW_NUMBER, Landed
from connectors.housing_export.layouts import HousingLayout

SOURCE = "housing_export"
__all__ = ["ROW_NUMBER", "SOURCE", "ExportBatch", "ExportFile", "discover", "read_export"]


@dataclass
class ExportFile:
    layout: HousingLayout
    path: Path
    sha256: str
    stat: tuple[int, int] | None = None  # (size, mtime ns) when discovered: landed with it


@dataclass
class ExportBatch:
    file: ExportFile
    rows: pl.DataFrame  # all source values as text
    dropped_columns: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # above_header / blank / footer rows
    header_row: int = 1  # row of the header in the file (1 = first)
    empty: str | None = None  # why the file has no rows: land nothing, warn with this


def discover(
    drop_dir: Path,
    layouts: dict[str, HousingLayout],
    landed: Landed,
    *,
    min_age_seconds: float = 0.0,
    on_skip: Callable[[Path, str], None] | None = None,
) -> list[ExportFile]:
    """Files whose content (sha256) is not landed yet; per layout, in file-name order; files
    younger than `min_age_seconds` or still changing are left out (`on_skip`)."""
    drop_files.check_drop_dir(drop_dir)
    return [
        ExportFile(layout, path, digest, stat)
        for layout in layouts.values()
        for path, digest, stat in drop_files.new_files(
            drop_dir, layout.files, landed, min_age_seconds=min_age_seconds, on_skip=on_skip
        )
    ]


def read_export(file: ExportFile) -> ExportBatch:
    layout = file.layout
    table = drop_files.read_table(file.path, layout)
    if table.empty is not None and not table.rows.columns:
        return ExportBatch(file, pl.DataFrame(), empty=table.empty)
    frame = table.rows
    drop_files.check_header(
        file.path,
        frame.columns,
        mapped=layout.columns,
        ignore=layout.ignore,
        layout_name=layout.name,
        header_row=table.header_row,
        layouts_file=layout.source_file,
    )
    dropped = [c for c in frame.columns if c in layout.ignore]
    frame = frame.drop(dropped).select(ROW_NUMBER, pl.exclude(ROW_NUMBER))
    return ExportBatch(file, frame, dropped, table.skipped, table.header_row, table.empty)


def read_new_exports(
    drop_dir: Path,
    layouts: dict[str, HousingLayout],
    landed: Landed,
    *,
    min_age_seconds: float = 0.0,
    on_skip: Callable[[Path, str], None] | None = None,
) -> Iterator[ExportBatch]:
    """Every new file's batch; a file without data rows (0 bytes, header only, an empty
    sheet) is not yielded but reported with `on_skip(path, why)`: it lands nothing, and stays
    in the drop folder (its name in a warning each run) until replaced or removed."""
    files = discover(drop_dir, layouts, landed, min_age_seconds=min_age_seconds, on_skip=on_skip)
    for file in files:
        batch = read_export(file)
        if batch.empty is not None:
            if on_skip:
                on_skip(file.path, batch.empty)
            continue
        yield batch
