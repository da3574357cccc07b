"""The floor of the extract: read every raw attendance export of a drop folder once, with the
fastest parser we have for it, on every core; nothing else.

    python -m benchmarks.extract_floor --drop data/drop [--timings timings.json]

The pipeline's extract also finds the header, checks the layout, pseudonymises, hashes and
writes landing; the floor only parses. CSV: decoded from its layout's encoding and parsed by
polars (multi-threaded); XLSX: every sheet by fastexcel (calamine), every value as text.
Files are read concurrently, one per core (the parsers release the GIL).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fastexcel
import polars as pl

from connectors.attendance_export.layouts import load_layouts
from lagesbild.settings import Settings


def read_one(path: Path, encoding: str | None, separator: str) -> int:
    """Rows of one export, every value as text."""
    if path.suffix.lower() == ".xlsx":
        reader = fastexcel.read_excel(str(path))
        return sum(
            reader.load_sheet(name, header_row=None, dtypes="string").height
            for name in reader.sheet_names
        )
    data = path.read_bytes()
    if encoding and encoding.lower().replace("-", "") not in ("utf8", "utf8sig"):
        data = data.decode(encoding).encode("utf-8")
    frame = pl.read_csv(data, separator=separator, has_header=True, infer_schema=False)
    return frame.height


def run_floor(drop: Path, workers: int | None = None) -> dict[str, float]:
    """Seconds to read every export of the drop folder's attendance layouts, and the rows."""
    layouts = load_layouts(Settings().attendance_layouts)
    jobs = [
        (path, getattr(layout, "encoding", None), getattr(layout, "separator", ";"))
        for layout in layouts.values()
        for path in sorted(drop.glob(layout.files))
    ]
    jobs.sort(key=lambda job: -job[0].stat().st_size)  # largest first: the cores end together
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        rows = sum(pool.map(lambda job: read_one(*job), jobs))
    return {"read": time.perf_counter() - started, "files": len(jobs), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--drop", type=Path, required=True)
    parser.add_argument("--timings", type=Path, help="write the seconds here (JSON)")
    args = parser.parse_args()
    timings = run_floor(args.drop)
    if args.timings:
        args.timings.write_text(json.dumps(timings))
    print(f"read {timings['files']} files, {timings['rows']:,} rows in {timings['read']:.2f} s")


if __name__ == "__main__":
    main()
