"""Housing companies' work-order exports from a drop folder: find new files, read them.

Yields one `ExportBatch` per file: the rows exactly as the company's system wrote them (all
values as text, original column names, a 1-based `_source_row`), with the `ignore`d columns
(free text, reporters' names) dropped. Nothing here writes to disk or knows about Prefect.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from connectors import drop_files
from connectors.drop_files import Landed
from connectors.housing_export.layouts import HousingLayout

SOURCE = "housing_export"
ROW_NUMBER = "_source_row"


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


def discover(drop_dir: Path, layouts: dict[str, HousingLayout], landed: Landed) -> list[ExportFile]:
    """Files whose content (sha256) is not landed yet; per layout, in file-name order."""
    return [
        ExportFile(layout, path, digest, stat)
        for layout in layouts.values()
        for path, digest, stat in drop_files.new_files(drop_dir, layout.files, landed)
    ]


def read_export(file: ExportFile) -> ExportBatch:
    layout = file.layout
    if layout.format == "csv":
        frame = drop_files.read_csv_text(
            file.path,
            encoding=layout.encoding,
            separator=layout.separator,
            layout_name=layout.name,
            system="housing company's maintenance system",
        )
    else:
        frame = drop_files.read_xlsx_text(file.path, sheet=layout.sheet, layout_name=layout.name)
    frame = frame.rename({c: c.strip() for c in frame.columns})
    drop_files.check_header(
        file.path,
        frame.columns,
        mapped=layout.columns,
        ignore=layout.ignore,
        layout_name=layout.name,
    )
    dropped = [c for c in frame.columns if c in layout.ignore]
    frame = frame.drop(dropped).with_row_index(ROW_NUMBER, offset=1)
    return ExportBatch(file, frame.with_columns(pl.col(ROW_NUMBER).cast(pl.Int64)), dropped)


def read_new_exports(
    drop_dir: Path, layouts: dict[str, HousingLayout], landed: Landed
) -> Iterator[ExportBatch]:
    for file in discover(drop_dir, layouts, landed):
        yield read_export(file)
