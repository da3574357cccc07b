"""Attendance exports from a drop folder: find new files, read them, pseudonymise them.

Yields one `ExportBatch` per file: the rows exactly as the source wrote them (all values as
text, original column names, `_source_row` 1 = the first row below the header), except that
the personal id column is already replaced by `pupil_key` (HMAC) and `pupil_id_kind`, and
`ignore`d columns (names) are dropped. Title rows above the header, blank rows and a totals
row or footer below the data are left out (counted in `skipped`). A file without data rows (0
bytes, header only) gives a batch with no rows and `empty` saying why; `read_new_exports`
skips it with `on_skip`. Nothing here writes to disk or knows about Prefect.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from connectors import drop_files
from connectors.attendance_export.layouts import Layout
from connectors.drop_files import ROW_NUMBER, Landed
from connectors.personal_ids import pseudonymise_column

SOURCE = "attendance_export"
__all__ = ["ROW_NUMBER", "SOURCE", "ExportBatch", "ExportFile", "discover", "read_export"]


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
    skipped: dict[str, int] = field(default_factory=dict)  # above_header / blank / footer rows
    header_row: int = 1  # row of the header in the file (1 = first)
    empty: str | None = None  # why the file has no rows: land nothing, warn with this


def discover(
    drop_dir: Path,
    layouts: dict[str, Layout],
    landed: Landed,
    *,
    min_age_seconds: float = 0.0,
    on_skip: Callable[[Path, str], None] | None = None,
) -> list[ExportFile]:
    """Files in the drop folder whose content (sha256) is not landed yet, sorted by name;
    files younger than `min_age_seconds` or still changing are left out (`on_skip`)."""
    drop_files.check_drop_dir(drop_dir)
    return [
        ExportFile(layout, path, digest, stat)
        for layout in layouts.values()
        for path, digest, stat in drop_files.new_files(
            drop_dir, layout.files, landed, min_age_seconds=min_age_seconds, on_skip=on_skip
        )
    ]


def check_header(file: ExportFile, columns: Iterable[str], header_row: int | None = None) -> None:
    layout = file.layout
    drop_files.check_header(
        file.path,
        columns,
        mapped=layout.columns,
        ignore=layout.ignore,
        layout_name=layout.name,
        guard_personal_ids=True,
        header_row=header_row,
        layouts_file=layout.source_file,
    )


def read_export(file: ExportFile, key: bytes, pseudonyms: dict | None = None) -> ExportBatch:
    table = drop_files.read_table(file.path, file.layout, guard_ids=True)
    if table.empty is not None and not table.rows.columns:
        return ExportBatch(file, pl.DataFrame(), empty=table.empty)
    frame = table.rows
    check_header(file, frame.columns, table.header_row)
    dropped = [c for c in frame.columns if c in file.layout.ignore]
    frame = frame.drop(dropped).select(ROW_NUMBER, pl.exclude(ROW_NUMBER))
    id_column = file.layout.source_column("personal_id")
    frame = pseudonymise_column(frame, id_column, key, cache=pseudonyms)
    return ExportBatch(file, frame, dropped, table.skipped, table.header_row, table.empty)


# Memory while reading one file, per byte of it, on the safe side: a workbook is zipped XML
# (its cells, then its text columns, take up to ~25× the file); a CSV is decoded, parsed and
# joined to its pseudonyms (~8×).
MEMORY_PER_BYTE = {".xlsx": 25, ".csv": 8}
# Files read at once never take more than this (nor half the available memory): the extract
# stays within what the clean stage needs, so a run's peak is set by one stage, not two files.
MAX_READ_MEMORY = 4 << 30


def available_memory() -> int:
    """Bytes the system can still give (MemAvailable), or 4 GB where /proc is not there."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def _memory_of(file: ExportFile) -> int:
    size = file.stat[0] if file.stat else file.path.stat().st_size
    return size * MEMORY_PER_BYTE.get(file.path.suffix.lower(), 3)


def read_new_exports(
    drop_dir: Path,
    layouts: dict[str, Layout],
    landed: Landed,
    key: bytes,
    *,
    min_age_seconds: float = 0.0,
    on_skip: Callable[[Path, str], None] | None = None,
    workers: int | None = None,
    memory_budget: int | None = None,
) -> Iterator[ExportBatch]:
    """Every new file's batch, in the order of `discover`; a file without data rows (0 bytes,
    header only, an empty sheet) is not yielded but reported with `on_skip(path, why)`: it
    lands nothing, and stays in the drop folder (its name in a warning each run) until
    replaced or removed.

    Files are read concurrently (the parsers release the GIL), at most `workers` (default:
    the cores) at a time and only while their estimated memory fits `memory_budget`
    (default: half the available memory, at most MAX_READ_MEMORY); one file is always read,
    however large. A pupil's
    id is pseudonymised once per run, not once per file."""
    files = discover(drop_dir, layouts, landed, min_age_seconds=min_age_seconds, on_skip=on_skip)
    workers = max(1, workers or os.cpu_count() or 1)
    if memory_budget is None:
        memory_budget = min(available_memory() // 2, MAX_READ_MEMORY)
    pseudonyms: dict = {}  # raw id → (pupil_key, pupil_id_kind), shared by the files
    pending = deque(files)
    running: deque[tuple[ExportFile, int, Future]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="read-export") as pool:
        try:
            while pending or running:
                in_use = sum(memory for _, memory, _ in running)
                while pending and len(running) < workers:
                    memory = _memory_of(pending[0])
                    if running and in_use + memory > memory_budget:
                        break
                    file = pending.popleft()
                    running.append((file, memory, pool.submit(read_export, file, key, pseudonyms)))
                    in_use += memory
                file, _, future = running.popleft()
                batch = future.result()
                if batch.empty is not None:
                    if on_skip:
                        on_skip(file.path, batch.empty)
                    continue
                yield batch
                del batch
        finally:  # an error or a consumer that stops early: do not start what is left
            for _, _, future in running:
                future.cancel()
