"""What a benchmark measured, and the markdown table `benchmarks/results.md` made of it.

Pure data and formatting (no I/O apart from reading /proc for the machine), so the writer is
unit-tested on constructed figures.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

# The pipeline's own work, stage by stage, as the run summary times it. `clean` here is the
# clean stage without the gate; `report` (HTML report, dbt docs) has no counterpart in the
# limit or the peer and is left out of every ratio.
WORK_STAGES = ("extract", "clean", "gate", "dbt", "publish")
# Start-up inside those stages, from the run summary: importing Great Expectations (within
# gate) and starting dbt and parsing the project (within dbt). The targets exclude it.
STARTUP_STAGES = ("gx_startup", "dbt_startup")
# Stages of the floor (benchmarks/limit.sql) and the pipeline stages each one stands for.
LIMIT_STAGES = {"clean": ("clean", "gate"), "marts": ("dbt",), "publish": ("publish",)}
GB = 1_000_000_000
TARGET_RSS = 6 * GB  # a month bounded by its pupil-days
TARGET_PANDAS = 4.0
TARGET_NEW_DAY = 0.03
# Most municipalities are small (about 3,000 pupils): there the fixed work weighs more.
SMALL_MUNICIPALITY_PUPILS = 3_000
TARGET_NEW_DAY_SMALL = 0.15
TARGET_QUIET_NIGHT_SECONDS = 15.0  # a night with nothing new, Prefect included
TARGET_FIXED_SHARE = 0.15  # Prefect + dbt + GX start-up (warm) / the demo nightly
# The fixed cost measured for reference only (in no target): Python's own start.
PYTHON_ALONE = "Python alone (interpreter start, for reference)"
# The pandas peer keeps one export's lessons plus every pupil-day: measured 3.21 GB peak RSS
# (in the marts stage, over all pupil-days; about 1 GB while reading the exports) and 88.6 s wall
# at 10,000 pupils × 3 years (30,000 pupil-years) on a 25 GB machine. Both grow with pupils;
# above 50,000 pupil-years it is not run (not measured: 100,000 × 1 has 3.3 times the
# pupil-days of 10,000 × 3 and a month's export ten times the lessons).
PANDAS_MAX_PUPIL_YEARS = 50_000
# The cost model projects to a year of this many pupils (Stockholm's compulsory school).
PROJECTED_PUPILS = 250_000


@dataclass
class Machine:
    cpu: str
    cores: int
    ram_bytes: int
    python: str
    system: str
    commit: str

    @classmethod
    def here(cls) -> Machine:
        cpu = "unknown"
        cpuinfo = Path("/proc/cpuinfo")
        if cpuinfo.exists():
            for line in cpuinfo.read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        ram = 0
        meminfo = Path("/proc/meminfo")
        if meminfo.exists():
            for line in meminfo.read_text().splitlines():
                if line.startswith("MemTotal:"):
                    ram = int(line.split()[1]) * 1024
        try:
            commit = subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                check=True,
                cwd=Path(__file__).parent,
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            commit = "unknown"
        return cls(
            cpu=cpu,
            cores=os.cpu_count() or 0,
            ram_bytes=ram,
            python=platform.python_version(),
            system=f"{platform.system()} {platform.release()}",
            commit=commit,
        )


@dataclass
class Process:
    """One measured subprocess: wall time and memory of its process tree."""

    seconds: float
    peak_rss: int  # bytes: the largest sum of RSS over the process tree while it ran
    max_process_rss: int  # bytes: the largest single process (wait4's ru_maxrss)


@dataclass
class NightlyRun:
    process: Process
    stages: dict[str, float]  # stage → seconds, as in WORK_STAGES plus `report`
    rows: int  # lesson rows received (landed) by this run
    files: int  # export files landed

    @property
    def work_seconds(self) -> float:
        return sum(self.stages.get(s, 0.0) for s in WORK_STAGES)

    @property
    def startup_seconds(self) -> float:
        """Process start, Prefect's API, shutdown: the wall time outside every stage."""
        return self.process.seconds - sum(self.stages.get(s, 0.0) for s in (*WORK_STAGES, "report"))

    @property
    def startup_in_stages(self) -> float:
        """GX's import and dbt's start-up and parse, counted inside gate and dbt."""
        return sum(self.stages.get(s, 0.0) for s in STARTUP_STAGES)

    @property
    def net_work_seconds(self) -> float:
        """Work with every start-up excluded: what the targets compare."""
        return self.work_seconds - self.startup_in_stages

    def net(self, *stages: str) -> float:
        """Seconds of these work stages without the start-up inside them."""
        seconds = sum(self.stages.get(s, 0.0) for s in stages)
        if "gate" in stages:
            seconds -= self.stages.get("gx_startup", 0.0)
        if "dbt" in stages:
            seconds -= self.stages.get("dbt_startup", 0.0)
        return seconds

    @property
    def rows_per_second(self) -> float | None:
        return self.rows / self.net_work_seconds if self.net_work_seconds else None


@dataclass
class Peer:
    """The limit or the pandas peer: one process, its stages, and the equality check."""

    process: Process
    stages: dict[str, float]
    differences: dict[str, str | None]  # mart → None when equal, else what differs
    rows: dict[str, int] = field(default_factory=dict)  # mart → rows compared

    @property
    def equal(self) -> bool:
        return bool(self.differences) and all(d is None for d in self.differences.values())

    @property
    def work_seconds(self) -> float:
        return sum(self.stages.values())


@dataclass
class ScaleOutRun:
    """The Spark + Dask path at one scale: `lagesbild run` with the clean step fanned out on a
    Dask LocalCluster (benchmarks/dask_cluster.py; the run still builds and publishes on DuckDB
    as well), then `dbt build --target spark` on its clean layer in a process of its own."""

    run: NightlyRun  # the process tree includes the Dask cluster's workers
    spark: Process  # dbt on Spark: its process tree includes the JVM
    spark_execution: float | None  # dbt's elapsed_time (run_results.json): start-up excluded
    differences: dict[str, str | None]  # Spark mart → None when equal to the default path's
    rows: dict[str, int] = field(default_factory=dict)  # mart → rows of the default path's
    cluster_start: float | None = None  # seconds to start the LocalCluster (in start-up)

    @property
    def equal(self) -> bool:
        return bool(self.differences) and all(d is None for d in self.differences.values())

    def stage(self, name: str, startup: bool = True) -> float | None:
        """Seconds of a stage on this path: dbt is the Spark build, the rest the run's."""
        if name == "dbt":
            return self.spark.seconds if startup else self.spark_execution
        return self.run.stages.get(name) if startup else self.run.net(name)

    def marts_seconds(self, startup: bool = True) -> float | None:
        """Exports → marts: extract + clean + gate + dbt on Spark."""
        stages = [self.stage(s, startup) for s in MARTS_STAGES]
        return None if any(s is None for s in stages) else sum(stages)

    @property
    def peak_rss(self) -> int:
        return max(self.run.process.peak_rss, self.spark.peak_rss)


# The stages from the exports to the marts, on both paths (publish is the default path's only:
# on Spark, BI tools read the marts database itself).
MARTS_STAGES = ("extract", "clean", "gate", "dbt")


def default_marts_seconds(run: NightlyRun, startup: bool = True) -> float:
    """Exports → marts on the default path: extract + clean + gate + dbt (DuckDB)."""
    if startup:
        return sum(run.stages.get(s, 0.0) for s in MARTS_STAGES)
    return run.net(*MARTS_STAGES)


@dataclass
class ScaleResult:
    pupils: int
    years: int
    seed: int
    new_day: date
    generation_seconds: float | None  # None when the generated files were reused
    full: NightlyRun
    new_day_run: NightlyRun | None  # None: stopped before it (out of time)
    limit: Peer | None  # None: not run at this scale
    limit_after_new_day: Peer | None = None  # equality only: the incremental run is right
    pandas: Peer | None = None
    extract_floor: Peer | None = None  # benchmarks/extract_floor.py on the same drop folder
    cut: bool = False  # the last school year ends at `new_day` (a shorter scale)
    load: tuple[float, float] | None = None  # 5-minute load average when the scale began, ended
    scale_out: ScaleOutRun | None = None  # the Spark + Dask path's full build (--scale-out)
    scale_out_new_day: ScaleOutRun | None = None
    scale_out_load: tuple[float, float] | None = None  # load average when it began, ended
    quiet_night: NightlyRun | None = None  # the nightly again with nothing new
    quiet_untouched: bool | None = None  # the served marts byte-identical after it

    @property
    def label(self) -> str:
        cut = f" to {self.new_day:%Y-%m}" if self.cut else ""
        return f"{self.pupils:,} × {self.years}{cut}"

    def limit_ratio(self, startup: bool = False) -> float | None:
        """pipeline / limit over the same work: landed files to published marts, start-up
        (GX's import, dbt's start-up and parse) excluded unless `startup`."""
        stages = [s for s in WORK_STAGES if s != "extract"]
        pipeline = (
            sum(self.full.stages.get(s, 0.0) for s in stages) if startup else self.full.net(*stages)
        )
        if self.limit is None or not self.limit.work_seconds:
            return None
        return pipeline / self.limit.work_seconds

    def extract_ratio(self) -> float | None:
        """The pipeline's extract / the extract floor's read of the same exports."""
        read = _stage(self.extract_floor, "read")
        extract = self.full.stages.get("extract")
        return extract / read if read and extract is not None else None

    def pandas_ratio(self, startup: bool = False) -> float | None:
        """pandas wall time / the pipeline's work (report excluded; start-up excluded unless
        `startup`)."""
        work = self.full.work_seconds if startup else self.full.net_work_seconds
        if self.pandas is None or not work:
            return None
        return self.pandas.process.seconds / work

    def new_day_share(self, startup: bool = False) -> float | None:
        """The one-new-day run's work / the full build's (start-up excluded unless `startup`)."""
        new, full = self.new_day_run, self.full
        if new is None:
            return None
        if startup:
            return new.work_seconds / full.work_seconds if full.work_seconds else None
        return new.net_work_seconds / full.net_work_seconds if full.net_work_seconds else None


@dataclass
class Results:
    machine: Machine
    started: datetime
    scales: list[ScaleResult]
    fixed_costs: dict[str, float]  # component → seconds, first start (fresh folder)
    label: str = ""  # e.g. "small smoke run on a busy machine"
    command: str = "make bench"
    engines: dict[str, str] = field(default_factory=dict)  # the Spark + Dask path's settings
    # component → seconds of a second start in the same folder: Prefect's database migrated
    # and dbt's partial parse saved, as on every night after the first
    fixed_costs_warm: dict[str, float] = field(default_factory=dict)

    def fixed_warm_seconds(self) -> float:
        """The warm start-up of Prefect, dbt and GX together (each with Python's start)."""
        return sum(s for c, s in self.fixed_costs_warm.items() if c != PYTHON_ALONE)

    def fixed_share(self) -> float | None:
        """The warm start-up of Prefect, dbt and GX together / the demo nightly's wall."""
        demo = _find(self, 1500, 1)
        if demo is None or not self.fixed_warm_seconds():
            return None
        return self.fixed_warm_seconds() / demo.full.process.seconds

    @property
    def all_equal(self) -> bool:
        """Every limit, peer and Spark + Dask run produced exactly the published marts."""
        peers = [p for s in self.scales for p in (s.limit, s.limit_after_new_day, s.pandas)]
        peers += [r for s in self.scales for r in (s.scale_out, s.scale_out_new_day)]
        return all(p.equal for p in peers if p is not None)


# -- formatting --------------------------------------------------------------------------------


def _s(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds:,.1f}"


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:,.2f}×"


def _gb(size: int) -> str:
    return f"{size / GB:,.2f} GB"


def _find(results: Results, pupils: int, years: int) -> ScaleResult | None:
    return next((s for s in results.scales if (s.pupils, s.years) == (pupils, years)), None)


def _equality(peer: Peer | None) -> str:
    if peer is None:
        return "not run"
    if peer.equal:
        return (
            "equal (" + ", ".join(f"{peer.rows.get(m, 0):,}" for m in peer.differences) + " rows)"
        )
    return "DIFFERENT: " + "; ".join(f"{m}: {d}" for m, d in peer.differences.items() if d)


def _largest(results: Results, pupils: int) -> ScaleResult | None:
    """The scale with this many pupils that ran the most lesson rows (a year may be cut)."""
    found = [s for s in results.scales if s.pupils == pupils]
    return max(found, key=lambda s: s.full.rows, default=None)


def targets(results: Results) -> list[tuple[str, str, str, str]]:
    """(target, scale, figure, met | missed | not measured) for the targets that
    `lagesbild bench` measures."""
    rows = []
    stockholm = _largest(results, 100_000)
    # every nightly of the scale counts: a new day's dbt can peak above the full build
    runs = (
        [] if stockholm is None else [stockholm.full, stockholm.new_day_run, stockholm.quiet_night]
    )
    rss = max((r.process.peak_rss for r in runs if r is not None), default=None)
    rows.append(
        (
            f"peak RSS of the process tree ≤ {TARGET_RSS // GB} GB, every nightly run",
            stockholm.label if stockholm else "100,000 × 1",
            "–"
            if rss is None
            else f"{_gb(rss)} (full build {_gb(stockholm.full.process.peak_rss)})",
            "not measured" if rss is None else "met" if rss <= TARGET_RSS else "missed",
        )
    )
    floored = [s for s in results.scales if s.limit is not None and s.extract_floor is not None]
    rows.append(
        (
            "pipeline / floor measured at every scale (extract and landing → marts)",
            ", ".join(s.label for s in results.scales) or "–",
            ", ".join(
                f"{s.label}: {_ratio(s.limit_ratio())} landing → marts, "
                f"{_ratio(s.extract_ratio())} extract"
                for s in floored
            )
            or "–",
            "not measured"
            if not floored
            else "met"
            if len(floored) == len(results.scales)
            else "missed",
        )
    )
    big = _find(results, 10_000, 3)
    speedup = big.pandas_ratio() if big else None
    rows.append(
        (
            f"at least {TARGET_PANDAS:.0f}× faster than pandas",
            "10,000 × 3",
            "–"
            if speedup is None
            else f"pandas takes {speedup:,.1f}× the pipeline "
            f"({big.pandas_ratio(startup=True):,.1f}× with the pipeline's start-up)",
            "not measured" if speedup is None else "met" if speedup >= TARGET_PANDAS else "missed",
        )
    )
    small = [s for s in results.scales if s.pupils <= SMALL_MUNICIPALITY_PUPILS]
    for scale, goal in [(s, TARGET_NEW_DAY) for s in (big, stockholm) if s is not None] + [
        (s, TARGET_NEW_DAY_SMALL) for s in small
    ]:
        share = scale.new_day_share()
        rows.append(
            (
                f"a nightly with one new day ≤ {100 * goal:.0f} % of a full build",
                scale.label,
                "–"
                if share is None
                else f"{100 * share:,.1f} % ({100 * scale.new_day_share(startup=True):,.1f} % "
                "with start-up)",
                "not measured" if share is None else "met" if share <= goal else "missed",
            )
        )
    for scale in results.scales:
        quiet = scale.quiet_night
        rows.append(
            (
                f"a night with nothing new ≤ {TARGET_QUIET_NIGHT_SECONDS:.0f} s (Prefect "
                "included), the served marts untouched",
                scale.label,
                "–"
                if quiet is None
                else f"{quiet.process.seconds:,.1f} s wall, served marts "
                + ("untouched" if scale.quiet_untouched else "REWRITTEN"),
                "not measured"
                if quiet is None
                else "met"
                if quiet.process.seconds <= TARGET_QUIET_NIGHT_SECONDS and scale.quiet_untouched
                else "missed",
            )
        )
    share = results.fixed_share()
    rows.append(
        (
            f"fixed start-up (Prefect, dbt, GX; warm) ≤ {100 * TARGET_FIXED_SHARE:.0f} % of the "
            "demo nightly",
            "1,500 × 1",
            "–"
            if share is None
            else f"{100 * share:,.1f} % ({results.fixed_warm_seconds():,.1f} s, "
            "Python's own start counted in each)",
            "not measured" if share is None else "met" if share <= TARGET_FIXED_SHARE else "missed",
        )
    )
    return rows


def fit_exponent(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """(a, b) of seconds = a × rows^b, least squares on the logs; None under two points."""
    points = [(x, y) for x, y in points if x > 0 and y > 0]
    if len({x for x, _ in points}) < 2:
        return None
    logs = [(math.log(x), math.log(y)) for x, y in points]
    mean_x = sum(x for x, _ in logs) / len(logs)
    mean_y = sum(y for _, y in logs) / len(logs)
    b = sum((x - mean_x) * (y - mean_y) for x, y in logs) / sum((x - mean_x) ** 2 for x, _ in logs)
    return math.exp(mean_y - b * mean_x), b


def projected_rows(results: Results, pupils: int = PROJECTED_PUPILS) -> int | None:
    """Lesson rows of a whole school year of `pupils`, from the rows per pupil-year of the
    scales that ran whole years (a cut year has fewer months)."""
    whole = [s for s in results.scales if not s.cut and s.full.rows]
    if not whole:
        return None
    per_pupil_year = sum(s.full.rows / (s.pupils * s.years) for s in whole) / len(whole)
    return round(per_pupil_year * pupils)


def cost_model(results: Results) -> list[list[str]]:
    """Per stage: seconds (or GB) at each scale, the exponent of rows, the projection."""
    scales = results.scales
    target = projected_rows(results)
    series: list[tuple[str, Callable[[ScaleResult], float | None], bool]] = [
        ("extract", lambda s: s.full.stages.get("extract"), False),
        ("clean (without the gate)", lambda s: s.full.stages.get("clean"), False),
        ("gate (GX import excluded)", lambda s: s.full.net("gate"), False),
        ("dbt (start-up excluded)", lambda s: s.full.net("dbt"), False),
        ("publish", lambda s: s.full.stages.get("publish"), False),
        ("**work** (start-up excluded)", lambda s: s.full.net_work_seconds, False),
        ("floor: read every export", lambda s: _stage(s.extract_floor, "read"), False),
        ("floor: landing → marts", lambda s: s.limit.work_seconds if s.limit else None, False),
        ("peak RSS of the tree (GB), not fitted", lambda s: s.full.process.peak_rss / GB, True),
        ("largest process (GB), not fitted", lambda s: s.full.process.max_process_rss / GB, True),
    ]
    rows = []
    for name, measure, is_memory in series:
        values = [measure(s) for s in scales]
        # Memory is bounded by the largest month and dbt's cap, not by the rows of all years:
        # no power of the rows describes it (see the text under the table).
        points = [(s.full.rows, v) for s, v in zip(scales, values, strict=True) if v]
        fit = None if is_memory else fit_exponent(points)
        projected = None if fit is None or target is None else fit[0] * target ** fit[1]
        rows.append(
            [
                name,
                *[("–" if v is None else f"{v:,.2f}" if is_memory else _s(v)) for v in values],
                "–" if fit is None else f"{fit[1]:.2f}",
                "–" if projected is None else f"{projected:,.0f} s ({projected / 60:,.1f} min)",
            ]
        )
    return rows


def _stage(peer: Peer | None, stage: str) -> float | None:
    return None if peer is None else peer.stages.get(stage)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render(results: Results) -> str:
    m = results.machine
    out = ["# lagesbild benchmarks", ""]
    if results.label:
        out += [f"> **{results.label}**", ""]
    out += [
        f"Written by `{results.command}` on {results.started:%Y-%m-%d %H:%M} UTC "
        f"(commit {m.commit}).",
        "",
        f"Machine: {m.cpu}, {m.cores} cores, {m.ram_bytes / GB:,.1f} GB RAM, {m.system}, "
        f"Python {m.python}.",
        "",
        "## Targets measured here",
        "",
    ]
    out += _table(["target", "scale", "measured", "status"], [list(t) for t in targets(results)])

    out += ["", "## Nightly runs: wall seconds per stage", ""]
    header = ["scale", "run", "lesson rows", "files", "start-up + shutdown"]
    header += [
        *WORK_STAGES,
        "of which start-up (GX import in gate, dbt start + parse in dbt)",
        "report",
        "wall",
        "rows/s (work)",
        "peak RSS (tree)",
        "largest process",
    ]
    rows = []
    for scale in results.scales:
        runs = [("full build", scale.full), ("one new day", scale.new_day_run)]
        if scale.quiet_night is not None:
            runs.append(("nothing new (the same run date again)", scale.quiet_night))
        for name, run in runs:
            if run is None:
                rows.append([scale.label, f"{name}: not run (out of time)", *["–"] * 14])
                continue
            rate = run.rows_per_second
            rows.append(
                [
                    scale.label,
                    name,
                    f"{run.rows:,}",
                    str(run.files),
                    _s(run.startup_seconds),
                    *[_s(run.stages.get(s)) for s in WORK_STAGES],
                    f"{_s(run.stages.get('gx_startup'))} + {_s(run.stages.get('dbt_startup'))}",
                    _s(run.stages.get("report")),
                    _s(run.process.seconds),
                    "–" if rate is None else f"{rate:,.0f}",
                    _gb(run.process.peak_rss),
                    _gb(run.process.max_process_rss),
                ]
            )
    out += _table(header, rows)
    generated = [
        f"{s.label}: {_s(s.generation_seconds)} s"
        if s.generation_seconds is not None
        else f"{s.label}: reused"
        for s in results.scales
    ]
    out += ["", "Generating the exports (not part of any ratio): " + "; ".join(generated) + "."]
    loads = [f"{s.label}: {s.load[0]:,.1f} → {s.load[1]:,.1f}" for s in results.scales if s.load]
    if loads:
        out += [
            f"Machine load (5-minute load average, {m.cores} cores) when each scale began → "
            "ended: " + "; ".join(loads) + ". Above the number of cores, other work shared "
            "them and every time here is stretched by it."
        ]
    out += [
        "New day: the exports of the month of "
        + ", ".join(f"{s.new_day}" for s in results.scales)
        + " (one school day) are held back from the full build and dropped before the second run."
    ]

    out += ["", "## The pipeline against the floor (same run)", ""]
    rows = []
    for scale in results.scales:
        if scale.extract_floor is not None:
            read = scale.extract_floor.stages.get("read")
            rows.append(
                [
                    scale.label,
                    "extract (exports → landing) / read every export",
                    _s(scale.full.stages.get("extract")),
                    "–",
                    _s(read),
                    _ratio(scale.extract_ratio()),
                    _ratio(scale.extract_ratio()),
                ]
            )
        if scale.limit is None:
            continue
        for stage, covers in LIMIT_STAGES.items():
            gross = sum(scale.full.stages.get(s, 0.0) for s in covers)
            net = scale.full.net(*covers)
            limit = scale.limit.stages.get(stage)
            rows.append(
                [
                    scale.label,
                    f"{' + '.join(covers)} / {stage}",
                    _s(net),
                    _s(gross - net),
                    _s(limit),
                    _ratio(net / limit if limit else None),
                    _ratio(gross / limit if limit else None),
                ]
            )
        stages = [s for s in WORK_STAGES if s != "extract"]
        net = scale.full.net(*stages)
        rows.append(
            [
                scale.label,
                "**total** (landing → published marts)",
                _s(net),
                _s(sum(scale.full.stages.get(s, 0.0) for s in stages) - net),
                _s(scale.limit.work_seconds),
                "**" + _ratio(scale.limit_ratio()) + "**",
                _ratio(scale.limit_ratio(startup=True)),
            ]
        )
    header = ["scale", "pipeline stage / floor stage", "pipeline s (start-up excluded)"]
    header += ["start-up s", "floor s", "ratio", "ratio with start-up"]
    out += _table(header, rows)
    out += [""]
    for scale in results.scales:
        if scale.limit is None:
            out.append(f"- {scale.label}: the floor was not run.")
            continue
        limit = scale.limit.process
        floor = scale.extract_floor.process if scale.extract_floor else None
        out.append(
            f"- {scale.label}: floor marts vs published marts: {_equality(scale.limit)}; after "
            f"the one-new-day run: {_equality(scale.limit_after_new_day)}. Floor process "
            f"{_s(limit.seconds)} s wall, peak RSS {_gb(limit.peak_rss)}"
            + (
                ""
                if floor is None
                else f"; extract floor {_s(floor.seconds)} s wall, peak RSS {_gb(floor.peak_rss)}"
            )
            + "."
        )

    out += scale_out_section(results)

    target = projected_rows(results)
    out += ["", "## Cost model: how each stage grows with the lesson rows", ""]
    header = ["stage (full build)", *[f"{s.label} ({s.full.rows:,} rows)" for s in results.scales]]
    header += ["exponent b (s = a × rows^b)", f"projected: {PROJECTED_PUPILS:,} pupils × 1 year"]
    out += _table(header, cost_model(results))
    out += [
        "",
        "Seconds per stage of the full build at each scale, fitted as a power of the lesson rows "
        "received (least squares on the logarithms; b = 1 is linear). The projection is for "
        + (
            f"{target:,} lesson rows"
            if target is not None
            else "– (no scale ran a whole school year)"
        )
        + f": {PROJECTED_PUPILS:,} pupils × the lesson rows per pupil-year of the scales that "
        "ran whole years, on this machine, with the same exponent. A fit through three noisy "
        "points on a shared machine: read the exponents to ±0.1. Memory is not fitted: it is "
        "bounded by the largest month's loads (which grow with pupils, not years) and by dbt's "
        "`warehouse_memory_limit`.",
    ]

    out += ["", "## The pandas peer", ""]
    rows = []
    for scale in results.scales:
        peer = scale.pandas
        if peer is None:
            big = scale.pupils * scale.years > PANDAS_MAX_PUPIL_YEARS
            why = "not run (above the size its memory was measured at)" if big else "not run"
            rows.append([scale.label, why, "–", "–", "–", "–", "–", "not run"])
            continue
        rows.append(
            [
                scale.label,
                _s(peer.process.seconds),
                ", ".join(f"{k} {v:,.1f}" for k, v in peer.stages.items()),
                _s(scale.full.net_work_seconds),
                _ratio(scale.pandas_ratio()),
                _ratio(scale.pandas_ratio(startup=True)),
                _gb(peer.process.peak_rss),
                _equality(peer),
            ]
        )
    out += _table(
        [
            "scale",
            "pandas wall s",
            "pandas stages s",
            "pipeline work s (start-up excluded)",
            "pandas / pipeline",
            "… with the pipeline's start-up",
            "pandas peak RSS",
            "marts",
        ],
        rows,
    )

    out += ["", "## Fixed cost (start-up), each measured alone in a fresh process", ""]
    demo = _find(results, 1500, 1)
    rows = []
    for component, seconds in results.fixed_costs.items():
        warm = results.fixed_costs_warm.get(component)
        share = (
            f"{100 * warm / demo.full.process.seconds:,.0f} %"
            if demo and warm is not None
            else "not measured"
        )
        rows.append([component, _s(seconds), _s(warm), share])
    out += _table(
        [
            "component",
            "first start s (fresh folder)",
            "every later start s (same folder)",
            "share of the default demo nightly (1,500 × 1, full build wall), later starts",
        ],
        rows,
    )
    out += [
        "",
        "A later start finds Prefect's database migrated and dbt's partial-parse file saved, "
        "as every night after the first does (a data folder keeps both).",
    ]
    out += ["", "## What is compared", "", *NOTES]
    return "\n".join(out) + "\n"


def _scale_out_equality(run: ScaleOutRun) -> str:
    if run.equal:
        return f"equal ({len(run.differences)} marts, {sum(run.rows.values()):,} rows)"
    return "DIFFERENT: " + "; ".join(f"{m}: {d}" for m, d in run.differences.items() if d)


def scale_out_rows(scale: ScaleResult) -> list[list[str]]:
    """Side by side, per run of the scale: each stage on the default path and on Spark + Dask."""
    rows = []
    runs = (
        ("full build", scale.full, scale.scale_out),
        ("one new day", scale.new_day_run, scale.scale_out_new_day),
    )
    for name, default, out in runs:
        if out is None:
            continue
        if default is None:
            rows.append([scale.label, name, "the default path's run: not run", "–", "–", "–"])
            continue
        gx = default.stages.get("gx_startup")
        seconds = [
            ("start-up + shutdown of `lagesbild run`", default.startup_seconds,
             out.run.startup_seconds),
            ("extract", default.stages.get("extract"), out.stage("extract")),
            ("clean (without the gate)", default.stages.get("clean"), out.stage("clean")),
            ("gate", default.stages.get("gate"), out.stage("gate")),
            ("… of which the GX import", gx, out.run.stages.get("gx_startup")),
            ("dbt (DuckDB within the run / Spark, own process)", default.stages.get("dbt"),
             out.stage("dbt")),
            ("… of which start-up and parse", default.stages.get("dbt_startup"),
             None if out.spark_execution is None else out.spark.seconds - out.spark_execution),
            ("**exports → marts** (extract + clean + gate + dbt)",
             default_marts_seconds(default), out.marts_seconds()),
            ("exports → marts, start-up excluded", default_marts_seconds(default, False),
             out.marts_seconds(False)),
        ]  # fmt: skip
        for stage, left, right in seconds:
            ratio = right / left if left and right is not None else None
            rows.append([scale.label, name, stage, _s(left), _s(right), _ratio(ratio)])
        rows.append(
            [
                scale.label,
                name,
                "peak RSS (process tree)",
                _gb(default.process.peak_rss),
                f"{_gb(out.run.process.peak_rss)} run with the Dask workers, "
                f"{_gb(out.spark.peak_rss)} dbt on Spark (JVM included)",
                _ratio(out.peak_rss / default.process.peak_rss),
            ]
        )
        rows.append([scale.label, name, "marts", "–", _scale_out_equality(out), "–"])
    return rows


def scale_out_exponents(results: Results) -> list[list[str]]:
    """Per stage: its seconds on both paths at each scale and the exponent of each path."""
    scales = [s for s in results.scales if s.scale_out is not None]
    series: list[tuple[str, Callable[[NightlyRun], float | None], Callable]] = [
        ("extract", lambda r: r.stages.get("extract"), lambda o: o.stage("extract")),
        ("clean (without the gate)", lambda r: r.stages.get("clean"), lambda o: o.stage("clean")),
        ("gate (GX import excluded)", lambda r: r.net("gate"), lambda o: o.stage("gate", False)),
        ("dbt (start-up excluded)", lambda r: r.net("dbt"), lambda o: o.stage("dbt", False)),
        ("dbt (with start-up)", lambda r: r.stages.get("dbt"), lambda o: o.stage("dbt")),
        (
            "**exports → marts** (start-up excluded)",
            lambda r: default_marts_seconds(r, False),
            lambda o: o.marts_seconds(False),
        ),
    ]
    rows = []
    for name, default, scaled in series:
        pairs = [(s.full.rows, default(s.full), scaled(s.scale_out)) for s in scales]
        fits = [fit_exponent([(rows, p[i]) for rows, *p in pairs if p[i]]) for i in (0, 1)]
        rows.append(
            [
                name,
                *[f"{_s(d)} / {_s(o)}" for _, d, o in pairs],
                *["–" if fit is None else f"{fit[1]:.2f}" for fit in fits],
            ]
        )
    return rows


def scale_out_section(results: Results) -> list[str]:
    """The default path against the Spark + Dask path, for the scales that ran both."""
    scales = [s for s in results.scales if s.scale_out is not None]
    if not scales:
        return []
    out = ["", "## The default path against Spark + Dask (same exports, same run date)", ""]
    header = ["scale", "run", "stage", "default path s", "Spark + Dask s", "Spark + Dask / default"]
    out += _table(header, [row for s in scales for row in scale_out_rows(s)])
    engines = "; ".join(f"{k}: {v}" for k, v in results.engines.items())
    out += ["", f"Engine settings of the Spark + Dask path: {engines}." if engines else ""]
    for scale in scales:
        runs = (("full build", scale.scale_out), ("one new day", scale.scale_out_new_day))
        for name, run in runs:
            if run is None:
                out.append(f"- {scale.label}, {name} on Spark + Dask: not run (out of time).")
                continue
            also = run.run.stages
            out.append(
                f"- {scale.label}, {name} on Spark + Dask: the LocalCluster started in "
                f"{_s(run.cluster_start)} s (within start-up); the run also built the warehouse "
                f"on DuckDB ({_s(also.get('dbt'))} s), published it ({_s(also.get('publish'))} s) "
                f"and wrote the report ({_s(also.get('report'))} s), which are not in the path's "
                "figures (the nightly flow builds on DuckDB; the Spark build is its own dbt "
                f"command). Run {_s(run.run.process.seconds)} s wall, dbt on Spark "
                f"{_s(run.spark.seconds)} s wall."
            )
        if scale.scale_out_load:
            before, after = scale.scale_out_load
            out.append(
                f"- {scale.label}: 5-minute load average when the Spark + Dask path began → "
                f"ended: {before:,.1f} → {after:,.1f} ({results.machine.cores} cores)."
            )
    if len({s.full.rows for s in scales}) >= 2:
        out += ["", "How each stage grows with the lesson rows on both paths (full builds):", ""]
        header = ["stage", *[f"{s.label}: default / Spark + Dask s" for s in scales]]
        header += ["b, default path", "b, Spark + Dask"]
        out += _table(header, scale_out_exponents(results))
        out += [
            "",
            "b as in the cost model below: s = a × rows^b, least squares on the logarithms of "
            "the scales that ran both paths.",
        ]
    out += [
        "",
        "Marts: every mart the Spark build wrote against the default path's DuckDB marts "
        "(work warehouse of the same scale and run), cell by cell as "
        "`tests/scale/test_spark_warehouse.py` compares them (benchmarks/spark.py: same columns "
        "in the same order, same rows, every value equal after casting Spark's types to "
        "DuckDB's; the vandalism cost per apartment may differ by 0.01, docs/scale.md).",
        "",
        "On Dask the gates run in the worker processes, in parallel: the run summary's gate "
        "seconds (and the Great Expectations import, paid once in each worker) are summed over "
        "the tasks, so on that path `clean` is the clean stage's wall time minus that sum and "
        "only clean + gate together is wall time.",
    ]
    return out


NOTES = [
    "- **Stages.** Wall seconds from the run summary (`data/reports/runs/<run>.md`) of "
    "`lagesbild run`, run as a subprocess on a fresh data folder. `clean` is the clean stage "
    "without the Great Expectations gate, `gate` the time spent validating (the first "
    "validation includes importing GX). *Start-up + shutdown* is the process wall time outside "
    "every stage: Python imports, Prefect's ephemeral API (a fresh one: its database is created "
    "on the first run), the build lock and shutdown. `report` (HTML report, dbt docs) has no "
    "counterpart elsewhere and is in no ratio. *Work* = extract + clean + gate + dbt + publish.",
    "- **Start-up excluded.** Two start-ups sit inside the stages, and the run summary states "
    "both: importing Great Expectations and making its context (the first validation, within "
    "`gate`) and dbt's own start-up (Python, dbt, parsing the project: the dbt stage minus "
    "`elapsed_time` in dbt's run_results.json). The targets compare the work without them (and "
    "without the start-up outside the stages), as the issue asks; every table also shows the "
    "figure with them.",
    "- **Rows/s** = lesson rows received (landed, dirty rows included) / work seconds "
    "(start-up excluded).",
    "- **Peak RSS (tree)** = the largest sum of resident memory over the process and all its "
    "children (dbt, Prefect's API server, workers), polled from /proc every 0.2 s; shared pages "
    "count once per process, so this overstates a little. *Largest process* = ru_maxrss of "
    "the run's process from wait4, which on Linux is the largest single process of its tree "
    "(the flow process, or dbt with DuckDB inside it).",
    "- **The floor** (`benchmarks/limit.sql`, DuckDB, one in-memory connection, "
    "`preserve_insertion_order = false`, `memory_limit = 4GB`, every core) starts from the "
    "pipeline's LANDED parquet (exports already read and pseudonymised): one load at a time, "
    "each distinct text value parsed once, duplicates and the latest-load rule as GROUP BY "
    "(arg_min / arg_max), lessons summed to pupil-days per load at once. The total compares "
    "clean + gate + dbt + publish with the floor's clean + marts + publish. The floor applies "
    "the pipeline's cleaning and suppression rules but validates nothing, writes no quarantine, "
    "audit, clean partitions, work warehouse or report, and publishes the three attendance marts "
    "as parquet only. Its marts are compared with the published "
    "`data/warehouse/marts/<mart>.parquet`: same columns and types, same rows (sorted), exact "
    "values, NULLs equal.",
    "- **The extract floor** (`benchmarks/extract_floor.py`) parses every raw export of the "
    "full build's drop folder once and does nothing else: CSV decoded from cp1252 and parsed "
    "by polars (multi-threaded), XLSX by fastexcel (calamine), every value as text, one file "
    "per core at a time. The pipeline's extract also finds the header, checks the layout, "
    "pseudonymises, hashes and writes the landing parquet.",
    "- **The pandas peer** (`benchmarks/pandas_peer.py`) does the whole job from the raw exports "
    "in the drop folder, like a municipality's own script: read the CSV (pandas) and XLSX "
    "(fastexcel to pandas; pandas' default openpyxl would be slower and is not installed), "
    "pseudonymise (HMAC per distinct id), the same row rules, aggregate and suppress, write "
    "parquet. It is compared with the pipeline's work (start-up excluded), its own wall time "
    "includes its imports. Its marts are compared like the limit's, after casting its columns "
    "to the published types. It reads one export at a time and keeps pupil-days, not lessons; "
    "it is left out above "
    f"{PANDAS_MAX_PUPIL_YEARS:,} pupil-years.",
    "- The one-new-day run lands one new export per system (the first school day of a month), "
    "then rebuilds that month's clean partition; dbt builds only what depends on attendance "
    "(`--select` from the partitions replaced), the two pupil-level tables for that month and "
    "its term only (incremental models), without dbt's unit tests (they ran on the full "
    "build, and the code has not changed); its share is work / full build work. The goal is "
    f"{100 * TARGET_NEW_DAY:.0f} % at 10,000 × 3 and 100,000 × 1, "
    f"{100 * TARGET_NEW_DAY_SMALL:.0f} % at a small municipality (at most "
    f"{SMALL_MUNICIPALITY_PUPILS:,} pupils).",
    "- **Nothing new** is the nightly once more on the new day's run date with no new export: "
    "the whole `lagesbild run` process, Prefect's temporary API included (its database "
    "already made by the two runs before), against "
    f"{TARGET_QUIET_NIGHT_SECONDS:.0f} s; *untouched* means `marts.duckdb` and every parquet "
    "file of the export kept their bytes and modification times.",
]
