"""`lagesbild bench`: the pipeline at given scales, against the limit and the pandas peer.

Per scale (pupils × school years), under `data/bench/<scale>/`:

1. generate the demo municipality through the first school day of the last month of the last
   school year (`lagesbild generate`; reused when the same arguments generated it before);
2. assemble a drop folder with every generated file except that month's attendance exports
   (one school day each);
3. run the full nightly (`lagesbild run`) on a fresh data folder, as a subprocess whose
   process tree is polled for memory; stage times come from the run summary;
4. run the extract floor (benchmarks/extract_floor.py) on the drop folder, the floor
   (benchmarks/limit.sql) on the landed files and the pandas peer on the drop folder, each as
   a subprocess, and compare their marts with the published ones;
5. drop the held-back exports (the new day) and run the nightly again; check the limit on
   the new landing still equals the published marts.

Then the fixed costs (Prefect, dbt, Great Expectations start-up), each alone in a fresh
process, and `benchmarks/results.md` (benchmarks/results.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from benchmarks.compare import compare_folders, row_counts
from benchmarks.results import (
    PANDAS_MAX_PUPIL_YEARS,
    PYTHON_ALONE,
    Machine,
    NightlyRun,
    Peer,
    Process,
    Results,
    ScaleOutRun,
    ScaleResult,
    render,
)
from benchmarks.spark import (
    DASK_THREADS,
    DASK_WORKERS,
    SPARK_DRIVER_MEMORY,
    SPARK_MASTER,
    duckdb_marts,
    mart_differences,
    spark_build,
    spark_marts,
)
from demo.school_calendar import school_year_calendar
from lagesbild.settings import DEMO_PSEUDONYM_KEY, PROJECT_ROOT, Settings

LAST_SCHOOL_YEAR = 2025  # the generator's default: 2025/26
POLL_SECONDS = 0.2


# -- measuring a subprocess -----------------------------------------------------------------


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:  # the process ended between listing and reading
        pass
    return 0


def _tree(pid: int) -> list[int]:
    """The process and its descendants, from /proc/<pid>/task/<tid>/children."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):  # ended meanwhile
                pending += [int(c) for c in children.read_text().split()]
    return found


def measure(
    command: list[str], env: dict[str, str], log: Path, cwd: Path = PROJECT_ROOT
) -> Process:
    """Run `command` to its end; wall time, peak RSS of its process tree, its own max RSS."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, cwd=cwd
        )
        peak = 0
        while True:
            # wait4 rather than Popen.wait: it also returns the child's own ru_maxrss.
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, sum(_rss(p) for p in _tree(process.pid)))
            time.sleep(POLL_SECONDS)
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise BenchFailed(f"{' '.join(command[1:4])} … failed (log {log}):\n{tail}")
    return Process(seconds, max(peak, usage.ru_maxrss * 1024), usage.ru_maxrss * 1024)


class BenchFailed(RuntimeError):
    """A step of the benchmark failed; the message names its log."""


# -- the run summary ----------------------------------------------------------------------------


def parse_summary(text: str) -> tuple[dict[str, float], int, int]:
    """(seconds per stage with the gate split out of clean, rows received, files landed)."""
    stages = {}
    match = re.search(r"^- seconds per stage: (.+)$", text, re.MULTILINE)
    if match:
        for part in match.group(1).split(", "):
            name, seconds = part.rsplit(" ", 1)
            stages[name] = float(seconds)
    gate = re.search(r"^- gate seconds \(within clean\): ([\d.]+)$", text, re.MULTILINE)
    if gate:
        stages["gate"] = float(gate.group(1))
        stages["clean"] = stages.get("clean", 0.0) - stages["gate"]
    # Start-up inside the stages (importing GX; starting dbt and parsing the project).
    gx = re.search(r"^- gate start-up seconds [^:]*: ([\d.]+)$", text, re.MULTILINE)
    if gx:
        stages["gx_startup"] = float(gx.group(1))
    dbt = re.search(r"^- dbt execution seconds [^:]*: ([\d.]+)$", text, re.MULTILINE)
    if dbt and "dbt" in stages:
        stages["dbt_startup"] = max(stages["dbt"] - float(dbt.group(1)), 0.0)
    rows = re.search(r"^Totals: rows_received ([\d,]+)", text, re.MULTILINE)
    files = re.search(r"^- loads landed by this run: (\d+) ", text, re.MULTILINE)
    return (
        stages,
        int(rows.group(1).replace(",", "")) if rows else 0,
        int(files.group(1)) if files else 0,
    )


# -- one scale ------------------------------------------------------------------------------


def new_school_day(last_school_year: int = LAST_SCHOOL_YEAR) -> date:
    """The first school day of the last month with school days: the 'new day'."""
    days = [d.date for d in school_year_calendar(last_school_year) if d.is_school_day]
    last = days[-1]
    return min(d for d in days if (d.year, d.month) == (last.year, last.month))


@dataclass
class Bench:
    root: Path  # data/bench
    settings: Settings
    log: Callable[[str], None]
    skip_pandas: bool = False
    stop_at: datetime | None = None  # no one-new-day run is started after this (UTC)
    scale_out: bool = False  # also the Spark + Dask path (benchmarks/spark.py)
    skip_floors: bool = False  # leave out the extract floor and the floor (limit.sql)

    def env(self, data: Path, drop: Path) -> dict[str, str]:
        env = {
            **os.environ,
            "LAGESBILD_DATA_DIR": str(data),
            "LAGESBILD_DROP_DIR": str(drop),
            "LAGESBILD_PSEUDONYM_KEY": os.environ.get("LAGESBILD_PSEUDONYM_KEY")
            or DEMO_PSEUDONYM_KEY,
            # the generated exports are complete: a scale started within a minute of its
            # generation must land them all (the default leaves files younger than 60 s)
            "LAGESBILD_MIN_FILE_AGE_SECONDS": "0",
        }
        if "PREFECT_API_URL" not in os.environ:  # a fresh local API per data folder
            env["PREFECT_HOME"] = str(data / "prefect")
        return env

    def python(self, *arguments: str) -> list[str]:
        return [sys.executable, *arguments]

    def generate(self, folder: Path, pupils: int, years: int, seed: int, through: date):
        """The exports, generated once per arguments; None seconds when reused."""
        arguments = {"pupils": pupils, "years": years, "seed": seed, "through": str(through)}
        marker = folder / "bench-arguments.json"
        if marker.exists() and json.loads(marker.read_text()) == arguments:
            self.log(f"reusing the exports generated in {folder}")
            return None
        shutil.rmtree(folder, ignore_errors=True)
        self.log(f"generating {pupils:,} pupils × {years} through {through} into {folder}")
        command = self.python("-m", "lagesbild.cli", "generate", "--out", str(folder / "drop"))
        for name in ("pupils", "years", "seed", "through"):
            command += [f"--{name}", str(arguments[name])]
        process = measure(command, self.env(folder, folder / "drop"), folder / "generate.log")
        marker.write_text(json.dumps(arguments))
        return process.seconds

    def nightly(
        self, data: Path, drop: Path, run_date: date, name: str, prefix: list[str] | None = None
    ) -> NightlyRun:
        """`lagesbild run` as a measured subprocess (after `prefix`: a launcher)."""
        runs = data / "reports" / "runs"
        before = set(runs.glob("*.md")) if runs.exists() else set()
        self.log(f"nightly ({name}) on {data}")
        command = self.python("-m", "lagesbild.cli", "run", "--run-date", run_date.isoformat())
        log = data.parent / f"{name}.log"
        process = measure((prefix or []) + command, self.env(data, drop), log)
        (summary,) = set(runs.glob("*.md")) - before
        stages, rows, files = parse_summary(summary.read_text(encoding="utf-8"))
        self.log(f"  {process.seconds:.1f} s wall, stages {stages}")
        return NightlyRun(process, stages, rows, files)

    def scale_out_run(
        self, data: Path, drop: Path, run_date: date, name: str, expected: dict
    ) -> ScaleOutRun:
        """The Spark + Dask path: the nightly with its clean step on a Dask LocalCluster, then
        dbt on Spark on its clean layer; the Spark marts compared with `expected` (the default
        path's DuckDB marts of the same run)."""
        timings = data.parent / f"{name}-dask.json"
        launcher = self.python(
            "-m", "benchmarks.dask_cluster", "--workers", str(DASK_WORKERS),
            "--threads", str(DASK_THREADS), "--timings", str(timings), "--",
        )  # fmt: skip
        run = self.nightly(data, drop, run_date, name, prefix=launcher)
        # the dbt variables of the run's DuckDB build (the run date goes in the environment)
        results = json.loads((data / "warehouse" / "dbt_target" / "run_results.json").read_text())
        warehouse = data.parent / "spark"
        warehouse.mkdir(parents=True, exist_ok=True)
        command, env = spark_build(data / "clean", results["args"]["vars"], warehouse, run_date)
        env |= {"LAGESBILD_SPARK_MASTER": SPARK_MASTER}
        env |= {"LAGESBILD_SPARK_DRIVER_MEMORY": SPARK_DRIVER_MEMORY}
        self.log(f"dbt on Spark ({name})")
        spark = measure(command, env, data.parent / f"{name}-spark.log", cwd=warehouse)
        execution = json.loads((warehouse / "dbt_target" / "run_results.json").read_text())
        differences = mart_differences(expected, spark_marts(warehouse / "tables"))
        self.log(f"  {spark.seconds:.1f} s wall, differences {differences}")
        return ScaleOutRun(
            run,
            spark,
            float(execution["elapsed_time"]),
            differences,
            {n: f.height for n, f in expected.items()},
            json.loads(timings.read_text())["cluster_start"],
        )

    def limit(self, data: Path, drop: Path, out: Path, name: str) -> Peer:
        self.log(f"limit ({name})")
        shutil.rmtree(out, ignore_errors=True)
        timings = out.parent / f"{out.name}-timings.json"
        command = self.python(
            "-m", "benchmarks.limit", "--landing", str(data / "landing"),
            "--reference", str(drop / "reference"), "--out", str(out), "--timings", str(timings),
        )  # fmt: skip
        process = measure(command, self.env(data, drop), out.parent / f"{name}.log")
        published = data / "warehouse" / "marts"
        differences = compare_folders(published, out)
        self.log(f"  {process.seconds:.1f} s wall, differences {differences}")
        return Peer(process, json.loads(timings.read_text()), differences, row_counts(published))

    def extract_floor(self, drop: Path, folder: Path) -> Peer:
        """benchmarks/extract_floor.py: every export of the full build's drop folder parsed
        once, on every core (no marts: nothing to compare)."""
        self.log("extract floor")
        timings = folder / "extract-floor-timings.json"
        command = self.python(
            "-m", "benchmarks.extract_floor", "--drop", str(drop), "--timings", str(timings)
        )  # fmt: skip
        process = measure(command, self.env(folder, drop), folder / "extract-floor.log")
        stages = json.loads(timings.read_text())
        self.log(f"  {process.seconds:.1f} s wall, read {stages['read']:.1f} s")
        return Peer(process, {"read": stages["read"]}, {})

    def pandas(self, data: Path, drop: Path, out: Path) -> Peer:
        self.log("pandas peer")
        shutil.rmtree(out, ignore_errors=True)
        timings = out.parent / "pandas-timings.json"
        s = self.settings
        command = self.python(
            str(PROJECT_ROOT / "benchmarks" / "pandas_peer.py"),
            "--drop", str(drop), "--out", str(out), "--timings", str(timings),
            "--thresholds", str(s.dbt_project_dir / "seeds" / "absence_thresholds.csv"),
            "--municipality-code", s.municipality.code,
            "--municipality-name", s.municipality.name,
            "--min-persons", str(s.suppression.min_persons),
            "--min-denominator", str(s.suppression.min_denominator),
        )  # fmt: skip
        process = measure(command, self.env(data, drop), out.parent / "pandas.log")
        published = data / "warehouse" / "marts"
        differences = compare_folders(published, out, cast=True)
        self.log(f"  {process.seconds:.1f} s wall, differences {differences}")
        return Peer(process, json.loads(timings.read_text()), differences, row_counts(published))

    def scale(self, pupils: int, years: int, seed: int, through: date | None = None) -> ScaleResult:
        """One scale; with `through` (the first school day of a month) the last school year is
        cut there: a shorter year when the whole one would take too long to generate."""
        folder = self.root / f"{pupils}x{years}-seed{seed}"
        if through is not None:
            folder = folder.with_name(f"{folder.name}-through{through}")
        day = through or new_school_day()
        generated = folder / "generated"
        generation = self.generate(generated, pupils, years, seed, day)
        month_tag = f"_{day:%Y-%m}"  # also the parts of a split month (`_del2`)
        exports = sorted((generated / "drop" / "attendance").rglob("*.*"))
        held_back = [p for p in exports if month_tag in p.name]
        if not held_back:
            raise BenchFailed(f"no export of {day:%Y-%m} was generated in {generated}")

        data, drop = folder / "run" / "data", folder / "run" / "drop"
        shutil.rmtree(folder / "run", ignore_errors=True)
        load_before = os.getloadavg()[1]  # other work on the machine: noise in every figure
        for path in sorted((generated / "drop").rglob("*")):  # every source the demo has
            if path.is_file() and path not in held_back:
                _link(path, drop / path.relative_to(generated / "drop"))
        full = self.nightly(data, drop, day, "nightly-full")
        # the default path's marts, for the Spark + Dask path's (before the new day changes them)
        marts = duckdb_marts(data / "warehouse" / "work.duckdb") if self.scale_out else {}
        extract_floor = limit = None
        if not self.skip_floors:
            extract_floor = self.extract_floor(drop, folder / "run")
            limit = self.limit(data, drop, folder / "run" / "limit", "limit-full")
        with_pandas = not self.skip_pandas and pupils * years <= PANDAS_MAX_PUPIL_YEARS
        if not self.skip_pandas and not with_pandas:
            self.log(f"pandas peer left out above {PANDAS_MAX_PUPIL_YEARS:,} pupil-years")
        peer = self.pandas(data, drop, folder / "run" / "pandas") if with_pandas else None
        result = ScaleResult(
            pupils, years, seed, day, generation, full, None, limit, None, peer,
            extract_floor=extract_floor, cut=through is not None,
        )  # fmt: skip
        # the Spark + Dask path's full build before either one-new-day run: the comparison of
        # the two paths matters more than the new days when time runs out (--stop-at)
        scaled = folder / "scale-out"
        if self.scale_out:
            shutil.rmtree(scaled, ignore_errors=True)
            scale_out_before = os.getloadavg()[1]
            for path in sorted((generated / "drop").rglob("*")):
                if path.is_file() and path not in held_back:
                    _link(path, scaled / "drop" / path.relative_to(generated / "drop"))
            result.scale_out = self.scale_out_run(
                scaled / "data", scaled / "drop", day, "scale-out-full", marts
            )

        if self.stop_at is not None and datetime.now(UTC) > self.stop_at:
            self.log(f"past {self.stop_at:%H:%M} UTC: the one-new-day runs are left out")
        else:
            for path in held_back:  # the new school day's exports arrive
                _link(path, drop / path.relative_to(generated / "drop"))
            result.new_day_run = self.nightly(
                data, drop, day + timedelta(days=1), "nightly-new-day"
            )
            if not self.skip_floors:
                result.limit_after_new_day = self.limit(
                    data, drop, folder / "run" / "limit-new-day", "limit-new-day"
                )
            # a night with nothing new: the same run date again, nothing may be rewritten
            served = _served_bytes(data)
            result.quiet_night = self.nightly(
                data, drop, day + timedelta(days=1), "nightly-nothing-new"
            )
            result.quiet_untouched = _served_bytes(data) == served
        if self.scale_out and result.new_day_run is not None:
            if self.stop_at is not None and datetime.now(UTC) > self.stop_at:
                self.log(f"past {self.stop_at:%H:%M} UTC: Spark + Dask's new day is left out")
            else:
                expected = duckdb_marts(data / "warehouse" / "work.duckdb")
                for path in held_back:
                    _link(path, scaled / "drop" / path.relative_to(generated / "drop"))
                result.scale_out_new_day = self.scale_out_run(
                    scaled / "data",
                    scaled / "drop",
                    day + timedelta(days=1),
                    "scale-out-new-day",
                    expected,
                )
        result.load = (load_before, os.getloadavg()[1])
        if self.scale_out:
            result.scale_out_load = (scale_out_before, os.getloadavg()[1])
        return result

    def fixed_costs(self) -> tuple[dict[str, float], dict[str, float]]:
        """Start-up of Prefect, dbt and GX, each alone in a fresh process: first on an empty
        folder, then again on the same folder (Prefect's database and dbt's partial parse
        kept, as on every later night)."""
        costs, warm = {}, {}
        with tempfile.TemporaryDirectory(dir=self.root) as scratch:
            data = Path(scratch) / "data"
            env = self.env(data, data / "drop")
            snippets = {
                "Python + Prefect (import, ephemeral API on a fresh database, one empty flow)": (
                    "from lagesbild import runtime; runtime.configure(__import__('pathlib')"
                    ".Path(r'{data}'))\n"
                    "from prefect import flow\n"
                    "def noop():\n    pass\n"
                    "flow(name='bench-noop')(noop)()"
                ),
                "Python + dbt (start, parse the project, build nothing)": (
                    "from flows.warehouse import dbt; from lagesbild.settings import Settings\n"
                    "code, lines = dbt._run_dbt(Settings(), "
                    "['build', '--select', 'tag:bench-selects-nothing'], None)\n"
                    "assert code == 0, lines"
                ),
                "Python + Great Expectations (import, context, one tiny validation)": (
                    "import polars as pl; from flows.layers import gate; "
                    "from lagesbild.settings import Settings\n"
                    "gate.validate_frame(pl.DataFrame({{'file': ['f'], 'rows_received': [1], "
                    "'rows_quarantined': [0], 'quarantine_share': [0.0]}}), "
                    "Settings().expectations_dir / 'attendance_loads.json', "
                    "{{'max_quarantine_share': 0.2}}, partition='bench')"
                ),
                PYTHON_ALONE: "pass",
            }
            for number, (component, code) in enumerate(snippets.items()):
                self.log(f"fixed cost: {component}")
                command = self.python("-c", code.format(data=data))
                for measured, start in ((costs, "first"), (warm, "later")):
                    log = self.root / f"fixed-{number}-{start}.log"
                    measured[component] = measure(command, env, log).seconds
        return costs, warm


# What the Spark + Dask path ran with (named in the results).
ENGINES = {
    "Dask": f"LocalCluster of {DASK_WORKERS} worker processes × {DASK_THREADS} thread, memory "
    "limit Dask's default (RAM / workers), one cluster for the whole run "
    "(benchmarks/dask_cluster.py, setting dask_scheduler_address)",
    "Spark": f"dbt-spark session method, spark.master {SPARK_MASTER}, spark.driver.memory "
    f"{SPARK_DRIVER_MEMORY}, spark.sql.shuffle.partitions 2, parquet tables with a Derby "
    "metastore (dbt_project/profiles.yml, target spark); seeds and models, dbt's tests run in "
    "the DuckDB build only",
}


def _served_bytes(data: Path) -> dict[str, tuple[int, str]]:
    """Each served file (marts.duckdb, the parquet export): modification time and sha256."""
    marts = data / "warehouse"
    files = [marts / "marts.duckdb", *sorted((marts / "marts").resolve().glob("*"))]
    return {
        str(f): (f.stat().st_mtime_ns, hashlib.sha256(f.read_bytes()).hexdigest())
        for f in files
        if f.is_file()
    }


def _link(source: Path, target: Path) -> None:
    """Hard-link a file (copy where links are not possible)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def run_bench(
    scales: list[tuple[int, int, date | None]],
    out: Path,
    *,
    seed: int = 2026,
    skip_pandas: bool = False,
    scale_out: bool = False,
    stop_at: datetime | None = None,
    fixed_costs: bool = True,
    skip_floors: bool = False,
    label: str = "",
    log: Callable[[str], None] = print,
) -> Results:
    """Every scale, then the fixed costs; writes `out`. With `scale_out`, each scale also runs
    on the Spark + Dask path (check `benchmarks.spark.missing_for_spark()` first)."""
    settings = Settings()
    root = settings.paths.data / "bench"
    root.mkdir(parents=True, exist_ok=True)
    bench = Bench(root, settings, log, skip_pandas, stop_at, scale_out, skip_floors)
    started = datetime.now(UTC)
    measured = [bench.scale(pupils, years, seed, through) for pupils, years, through in scales]
    first, later = bench.fixed_costs() if fixed_costs else ({}, {})
    results = Results(
        machine=Machine.here(),
        started=started,
        scales=measured,
        fixed_costs=first,
        fixed_costs_warm=later,
        label=label,
        command="lagesbild bench "
        + " ".join(
            f"--pupils {p} --years {y}" + (f" --through {t}" if t else "") for p, y, t in scales
        )
        + (" --skip-pandas" if skip_pandas else "")
        + (" --skip-floors" if skip_floors else "")
        + (" --scale-out" if scale_out else ""),
        engines=ENGINES if scale_out else {},
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(results), encoding="utf-8")
    # the figures themselves, to render runs of several processes together (render())
    (root / f"results-{started:%Y%m%dT%H%M%S}.pickle").write_bytes(pickle.dumps(results))
    return results
