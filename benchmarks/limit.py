"""Run the DuckDB floor (limit.sql) stage by stage, timing each stage.

    python -m benchmarks.limit --landing data/landing --reference data/drop/reference \
        --out data/bench/limit [--timings timings.json] [--memory-limit 4GB]

The `load <layout>` stages run once per landed load of that layout (one file at a time, so
memory holds one load's lessons); setup, the loads and `days` are timed together as `clean`.
Settings (municipality, suppression thresholds) come from lagesbild's settings, as the
pipeline's dbt vars do.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from pathlib import Path

import duckdb

from lagesbild.settings import Settings

LIMIT_SQL = Path(__file__).with_name("limit.sql")
_STAGE = re.compile(r"^-- stage: (\w+(?: \w+)?)\s*$", re.MULTILINE)
LOADS = "attendance_export/{layout}/period=*/load_id=*/data.parquet"
MEMORY_LIMIT = "4GB"  # DuckDB's own cap; it spills beyond it (the pipeline's dbt uses the same)


def stages(sql: str) -> dict[str, str]:
    """The script's parts, by the `-- stage: <name>` line that starts each."""
    parts = _STAGE.split(sql)
    return {name: body for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def variables(reference: Path, out: Path, settings: Settings) -> dict:
    return {
        "reference_dir": str(reference.resolve()),
        "out_dir": str(out.resolve()),
        "thresholds_csv": str(settings.dbt_project_dir / "seeds" / "absence_thresholds.csv"),
        "municipality_code": settings.municipality.code,
        "municipality_name": settings.municipality.name,
        "min_persons": settings.suppression.min_persons,
        "min_denominator": settings.suppression.min_denominator,
    }


def run_limit(
    landing: Path, reference: Path, out: Path, settings: Settings, memory_limit: str = MEMORY_LIMIT
) -> dict[str, float]:
    """Build the marts into `out/<mart>.parquet`; return seconds per stage."""
    out.mkdir(parents=True, exist_ok=True)
    spill = out.parent / f".{out.name}.spill"  # DuckDB spills here when memory runs short
    con = duckdb.connect()  # in memory: nothing but the marts is written
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute("SET preserve_insertion_order = false")
        con.execute("SET memory_limit = ?", [memory_limit])
        con.execute("SET temp_directory = ?", [str(spill)])
        for name, value in variables(reference, out, settings).items():
            con.execute(f"SET VARIABLE {name} = ?", [value])
        seconds: dict[str, float] = {}
        for name, sql in stages(LIMIT_SQL.read_text(encoding="utf-8")).items():
            kind, _, layout = name.partition(" ")
            started = time.perf_counter()
            if kind == "load":
                for file in sorted(landing.glob(LOADS.format(layout=layout))):
                    con.execute("SET VARIABLE load_file = ?", [str(file)])
                    con.execute("SET VARIABLE load_id = ?", [file.parent.name[len("load_id=") :]])
                    con.execute(sql)
            else:
                con.execute(sql)
            timed = "clean" if kind in ("setup", "load", "days") else name
            seconds[timed] = seconds.get(timed, 0.0) + time.perf_counter() - started
        return seconds
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--landing", type=Path, required=True)
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timings", type=Path, help="write seconds per stage here (JSON)")
    parser.add_argument("--memory-limit", default=MEMORY_LIMIT, help="DuckDB's memory_limit")
    args = parser.parse_args()
    seconds = run_limit(args.landing, args.reference, args.out, Settings(), args.memory_limit)
    if args.timings:
        args.timings.write_text(json.dumps(seconds))
    print(", ".join(f"{k} {v:.2f} s" for k, v in seconds.items()))


if __name__ == "__main__":
    main()
