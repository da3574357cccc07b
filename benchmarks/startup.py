"""The fixed start-up costs of a run, each cold and warm, and a quiet night:
`uv run python -m benchmarks.startup --data DATA --drop DROP`.

DATA/DROP: the data and drop folder of a completed nightly (e.g. of `lagesbild demo`); the
script works in copies under a temporary folder and never changes them. Every figure is a
fresh process: wall seconds and CPU seconds (user + system, the process and its children;
on a busy machine the CPU seconds are the steadier figure). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flows.layers.audit import read_runs

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def measure(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall and CPU seconds of one command (its children included), and its output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}{done.stderr}")
    return wall, cpu, done.stdout + done.stderr


# The temporary Prefect API a run without PREFECT_API_URL starts, from start to healthy.
PREFECT_SERVER = (
    "from prefect.server.api.server import SubprocessASGIServer\n"
    "server = SubprocessASGIServer()\n"
    "server.start()\n"
    "server.stop()\n"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--drop", type=Path, required=True)
    parser.add_argument(
        "--run-date", default=None, help="the run date of that nightly (default: its last run's)"
    )
    arguments = parser.parse_args()
    rows: list[tuple[str, float, float, str]] = []

    def row(what: str, command: list[str], env: dict[str, str], note: str = "") -> str:
        wall, cpu, output = measure(command, env)
        rows.append((what, wall, cpu, note))
        print(f"{what}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
        return output

    with tempfile.TemporaryDirectory(prefix="lagesbild-startup-") as tmp:
        work = Path(tmp)
        base = {
            **os.environ,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "600",
            "PREFECT_HOME": str(work / "prefect"),
        }
        # 1. Prefect: a new database (created and migrated) and the same one again.
        server = [PYTHON, "-c", PREFECT_SERVER]
        row("Prefect temporary API, new database", server, base, "creates and migrates it")
        row("Prefect temporary API, warm database", server, base, "checks the migrations")
        row(
            "Prefect temporary API, warm, no migration check",
            server,
            {**base, "PREFECT_API_DATABASE_MIGRATE_ON_START": "false"},
            "PREFECT_API_DATABASE_MIGRATE_ON_START=false",
        )
        # 2. Great Expectations: what it costs, and what a run that validates nothing imports.
        row("import great_expectations", [PYTHON, "-c", "import great_expectations"], base)
        row(
            "import the nightly flow (GX not imported)",
            [
                PYTHON,
                "-c",
                "import sys, flows.nightly; assert 'great_expectations' not in sys.modules",
            ],
            base,
        )
        # 3. dbt: parse cold (no target folder), warm, on a new run date, after a move.
        data = work / "data"
        shutil.copytree(arguments.data, data, symlinks=True)
        shutil.rmtree(data / "warehouse" / "dbt_target", ignore_errors=True)

        def parse(folder: Path) -> list[str]:
            return [
                str(Path(PYTHON).with_name("dbt")),
                "parse",
                "--project-dir",
                str(ROOT / "dbt_project"),
                "--profiles-dir",
                str(ROOT / "dbt_project"),
                "--target-path",
                str(folder / "warehouse" / "dbt_target"),
                "--log-path",
                str(folder / "warehouse" / "dbt_logs"),
                "--no-use-colors",
            ]

        def dbt_env(folder: Path, day: str) -> dict[str, str]:
            return {
                **base,
                "LAGESBILD_CLEAN_DIR": str(folder / "clean"),
                "LAGESBILD_WORK_DB": str(folder / "warehouse" / "work.duckdb"),
                "LAGESBILD_AS_OF_DATE": day,
                "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            }

        row("dbt parse, no saved manifest", parse(data), dbt_env(data, "2025-11-03"))
        row("dbt parse, warm (partial parse)", parse(data), dbt_env(data, "2025-11-03"))
        row("dbt parse, new run date", parse(data), dbt_env(data, "2025-11-04"))
        moved = work / "moved"
        data.rename(moved)
        row("dbt parse, data folder moved", parse(moved), dbt_env(moved, "2025-11-04"))
        row("dbt parse, moved, again", parse(moved), dbt_env(moved, "2025-11-04"))
        moved.rename(data)
        # 4. A quiet night: the nightly again on the same run date (warm Prefect database).
        drop = work / "drop"
        shutil.copytree(arguments.drop, drop, symlinks=True)
        run_env = {
            **base,
            "LAGESBILD_DATA_DIR": str(data),
            "LAGESBILD_DROP_DIR": str(drop),
            "LAGESBILD_MIN_FILE_AGE_SECONDS": "0",
        }
        day = arguments.run_date or read_runs(data / "audit")["run_date"][-1].isoformat()
        nightly = [str(Path(PYTHON).with_name("lagesbild")), "run", "--run-date", day]
        row("nightly, nothing new (quiet night)", nightly, run_env, "warm Prefect database")
        row("nightly, nothing new, again", nightly, run_env, "warm Prefect database")
    print("\n| what | wall s | CPU s | note |\n|---|---|---|---|")
    for what, wall, cpu, note in rows:
        print(f"| {what} | {wall:.1f} | {cpu:.1f} | {note} |")


if __name__ == "__main__":
    main()
