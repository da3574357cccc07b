"""The clean layer: landed loads → clean partitions + quarantine + audit, written once for
every dataset (write-audit-publish).

A dataset (`flows/<dataset>/dataset.py`) gives only its rules: which landed loads it reads,
how one load splits into clean rows and rejected rows, and how the rows of a period combine
into clean partitions. This module owns everything else, the same for all datasets:

1. pending loads: landed and not yet cleaned according to the audit, or in a backfill's
   window (derived from landing and the audit, never from local state, so a crashed or
   gate-failed run is simply picked up by the next one);
2. the periods to build: every period a pending load touches (a dataset rebuilt whole has
   one, `all`), one period at a time so memory holds one period's rows;
3. per period: split each load that has rows in it, keep per school-day (or whatever the
   dataset's precedence key is) only the strongest source (`precedence`; the weaker rows are
   counted as the load's `rows_superseded`), combine, gate each partition (Great
   Expectations) and stage it;
4. the loads gate: a load whose rows are mostly rejected blocks the run;
5. only when no critical expectation failed: swap the staged partitions in, write each
   load's quarantine (original values + reason);
6. one audit row per pending load, after checking `received = clean + quarantined +
   duplicates`, with the load's gate status: the worst of the partitions it has rows in and
   of its own quarantine share.

A load whose rules fail (a layout removed, a damaged landed file, an error in the rules) is
not a reason to lose the others' accounting: every load is split, the failed ones get an
audit row `failed` with the reason, nothing is replaced and the run fails naming each file
(`LoadFailed`), until the cause is fixed or the load is retracted. A retracted load
(`lagesbild retract`, audit status `retracting`) is left out of every period it touched;
those periods are rebuilt here without it (a period left with no load is removed), then its
quarantine and landing folder go and the audit says `retracted`. A retraction interrupted at
any point is finished by the next run of this path.
"""

from __future__ import annotations

import calendar
import io
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import polars as pl

from connectors.drop_files import LayoutError
from flows.layers import gate
from flows.layers.audit import append_audit, cleaned_load_ids, failed_loads, retractions
from flows.layers.files import CorruptFile, Staging, check_parquet, write_parquet_atomic
from flows.layers.landing import Load, remove_load
from lagesbild.settings import Paths

ROW_NUMBER = "_source_row"  # 1-based row of a drop-folder export, kept through landing
ALL = "all"  # the one period of a dataset that is rebuilt whole

log = logging.getLogger(__name__)


@dataclass
class LoadResult:
    """One landed load split by its dataset's rules."""

    rows: pl.DataFrame  # clean rows in the dataset's row contract, with `source` and `load_id`
    quarantine: pl.DataFrame  # rejected rows: original values, `reason`, `load_id`
    received: int
    clean: int  # may exceed rows.height: rows valid but not served (e.g. a day re-fetched)
    duplicates: int
    periods: list[str]  # the periods the served rows fall in
    superseded: int = 0  # clean rows a stronger source had

    @property
    def quarantined(self) -> int:
        return self.quarantine.height

    def __setattr__(self, name: str, value: Any) -> None:
        # A load's result is kept until its dataset is cleaned (for the audit), so it must
        # not keep the load's rows: quarantined rows filtered or joined out of a whole export
        # still point into its text (polars' string views) and kept every month's export in
        # memory (+0.2 GB a month at 100,000 pupils). A copy owns only its own rows.
        if name == "quarantine":
            value = _owning_copy(value)
        super().__setattr__(name, value)


def _owning_copy(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` in buffers of its own (an Arrow IPC round trip: cast and rechunk share)."""
    if frame.width == 0:
        return frame
    buffer = io.BytesIO()
    frame.write_ipc(buffer, compression="uncompressed")
    buffer.seek(0)
    return pl.read_ipc(buffer)


@dataclass
class Partition:
    """One clean file a dataset builds, and what the gate checks of it."""

    path: str  # relative to the dataset's clean folder, e.g. "period=2025-09/part-0.parquet"
    frame: pl.DataFrame  # what is written
    parameters: dict[str, Any]  # the suite's expectation parameters
    checked: pl.DataFrame | None = None  # what the suite validates (default: `frame`)
    gated: bool = True  # False: a summary the dataset's suite does not describe

    @property
    def name(self) -> str:
        """'period=2025-09' for a partition folder, 'population' for a single file."""
        return self.path.rsplit("/", 1)[0] if "/" in self.path else self.path.split(".")[0]


@dataclass
class Combined:
    """A period's rows combined: its partitions, and what combining all loads decided."""

    partitions: list[Partition]
    # clean rows rejected only when every load was seen (load_id, _source_row, reason)
    rejected: pl.DataFrame | None = None
    duplicates: dict[str, int] = field(default_factory=dict)  # per load: repeats of another


class CleanFailed(RuntimeError):
    """A load cannot be cleaned as landed; nothing was replaced."""


class LoadFailed(CleanFailed):
    """Loads whose cleaning failed; each is in the audit as `failed` with its reason."""


# Errors whose message is ours (file, fix, no cell value): the failed load's reason quotes it.
_DESCRIBED = (CleanFailed, CorruptFile, LayoutError)


def failure_reason(exc: Exception) -> str:
    """Why a load failed, without a cell value (a library's message may quote one)."""
    if isinstance(exc, _DESCRIBED):
        return str(exc)
    return (
        f"the cleaning rules failed on it ({type(exc).__name__}); no row was cleaned. See how "
        "its file parses with `lagesbild check-layout FILE`"
    )


class Dataset:
    """The rules of one clean dataset; subclasses fill these in."""

    name: ClassVar[str]  # the audit's and quarantine's name: quarantine/<name>/
    folder: ClassVar[str]  # clean/<folder>/
    suite: ClassVar[str]  # expectations/<suite>, run on every partition
    loads_suite: ClassVar[str]  # expectations/<loads_suite>, run on the pending loads
    whole: ClassVar[bool] = False  # rebuilt from every load at once (else period by period)
    precedence_key: ClassVar[tuple[str, ...] | None] = None
    precedence: list[str]  # with a precedence key: the rows' `source` values, strongest first
    row_weight: ClassVar[str | None] = None  # column: how many source rows a clean row stands for

    def loads(self) -> list[Load]:
        """The landed loads this dataset cleans, oldest first."""
        raise NotImplementedError

    def split(self, load: Load) -> LoadResult:
        raise NotImplementedError

    def in_period(self, rows: pl.DataFrame, period: str) -> pl.DataFrame:
        """A load's clean rows that fall in `period` (a load may span several)."""
        return rows

    def combine(self, period: str, rows: pl.DataFrame) -> Combined:
        raise NotImplementedError

    def before_precedence(self, period: str, rows: pl.DataFrame) -> list[Partition]:
        """Partitions of what every source delivered, before precedence decides."""
        return []

    def stale(self) -> bool:
        """Whether the clean files are out of date although no load is pending."""
        return False

    def after_swap(self) -> None:
        """Write what the new partitions were built with (e.g. a register), once served."""


@dataclass
class CleanOutcome:
    """What one run's clean stage did; datasets' outcomes add up with `+=`."""

    loads: list[dict] = field(default_factory=list)  # audit rows of this run
    gates: list[gate.GateResult] = field(default_factory=list)
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    partitions_replaced: list[str] = field(default_factory=list)  # "<folder>/<partition>"

    @property
    def gate_failed(self) -> bool:
        return any(g.critical_failures for g in self.gates)

    def __iadd__(self, other: CleanOutcome) -> CleanOutcome:
        self.loads += other.loads
        self.gates += other.gates
        for reason, count in other.quarantine_reasons.items():
            self.quarantine_reasons[reason] = self.quarantine_reasons.get(reason, 0) + count
        self.partitions_replaced += other.partitions_replaced
        return self


def touches(load: Load, rebuild: frozenset[str]) -> bool:
    """Whether a backfill window (months YYYY-MM) covers one of the load's partitions
    (months, or years: a year is touched by any of its months)."""
    return any(month.startswith(p) for p in load.manifest.partitions for month in rebuild)


def separate(
    typed: pl.DataFrame, original: list[str], values: list[str], key: list[str], load_id: str
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """A load's typed rows (in source order, `reason` null where usable) → its distinct usable
    rows (`_source_row` + `values`), its quarantine (original columns, `reason`, `load_id`)
    and the number of exact repeats. A row repeating another exactly is a duplicate; one with
    the same `key` but other values is a `conflicting_duplicate` (the first one is kept)."""
    # Only the value columns of usable rows go on (a month's export can be millions of rows).
    usable = typed.lazy().filter(pl.col("reason").is_null()).select(ROW_NUMBER, *values).collect()
    exact_first = usable.select(pl.struct(values).is_first_distinct()).to_series()
    distinct = usable.filter(exact_first)
    key_first = distinct.select(pl.struct(key).is_first_distinct()).to_series()
    conflict = pl.col(ROW_NUMBER).is_in(
        distinct.filter(~key_first).get_column(ROW_NUMBER).implode()
    )
    quarantine = typed.filter(pl.col("reason").is_not_null() | conflict).select(
        *original,
        reason=pl.when(conflict).then(pl.lit("conflicting_duplicate")).otherwise("reason"),
        load_id=pl.lit(load_id),
    )
    return distinct.filter(key_first), quarantine, exact_first.len() - exact_first.sum()


def apply_precedence(
    rows: pl.DataFrame, precedence: list[str], key: tuple[str, ...], weight: str | None = None
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Per `key` (e.g. school unit × day) keep only the rows of the strongest source.

    Returns the served rows and, per load, how many of its source rows were superseded (a
    row counts as its `weight` column, e.g. the lessons of a pupil-day, else as one).
    Sources missing from `precedence` rank after every listed one.
    """
    if rows.is_empty():
        return rows, {}
    sources_per_key = rows.group_by(key).agg(pl.col("source").n_unique())
    if sources_per_key.get_column("source").max() == 1:
        return rows, {}  # no key has two sources: nothing to decide (nor to copy)
    rank = pl.col("source").replace_strict(
        {s: i for i, s in enumerate(precedence)}, default=len(precedence), return_dtype=pl.Int32
    )
    ranked = rows.with_columns(_rank=rank)
    best = pl.col("_rank").min().over(key)
    served = ranked.filter(pl.col("_rank") == best)
    counted = pl.len() if weight is None else pl.col(weight).sum().cast(pl.Int64)
    lost = ranked.filter(pl.col("_rank") != best).group_by("load_id").agg(counted)
    return served.drop("_rank"), dict(lost.iter_rows())


def _reject(result: LoadResult, load: Load, rejected: pl.DataFrame) -> None:
    """Move this load's rows that combining rejected from clean to quarantine, with their
    original landed values."""
    mine = rejected.filter(pl.col("load_id") == load.load_id).drop("load_id")
    if mine.is_empty():
        return
    moved = load.read().join(mine, on=ROW_NUMBER).with_columns(load_id=pl.lit(load.load_id))
    columns = result.quarantine.columns
    result.quarantine = pl.concat([result.quarantine, moved.select(columns)]).sort(ROW_NUMBER)
    result.clean -= mine.height


def _worst(statuses: list[str]) -> str:
    return next(s for s in ("failed", "passed_with_warnings", "passed") if s in statuses)


@dataclass
class PeriodResult:
    """One period built: its partitions (each with its gate result, None when not gated) and
    what it decided about its loads; the caller adds these up and stages the partitions."""

    period: str
    splits: dict[str, LoadResult]  # each load with rows in the period, split (rows cleared)
    superseded: dict[str, int]  # per load: rows a stronger source had
    rejected: pl.DataFrame | None
    duplicates: dict[str, int]
    partitions: list[tuple[Partition, gate.GateResult | None]]
    failures: dict[str, str]  # load id → why its rules failed (its rows are left out)


@dataclass
class PeriodBuild:
    """Builds one period of a dataset: split its loads, precedence, combine, gate. Reads
    landing and returns frames, writes nothing but the gate's report: so it can run in
    another process or on another machine (a Dask worker) that sees the same landing folder."""

    dataset: Dataset
    loads: list[Load]
    expectations_dir: Path
    report_dir: Path
    # loads whose rules failed: in-process the caller's own dict, so a load is split (and
    # fails) once; a worker gets a copy and reports its new failures in the result
    failures: dict[str, str] = field(default_factory=dict)

    def __call__(self, period: str) -> PeriodResult:
        dataset, parts, splits, failed = self.dataset, [], {}, {}
        for load in self.loads:
            if period == ALL or period in load.manifest.partitions:
                if load.load_id in self.failures:
                    continue
                try:
                    result = dataset.split(load)
                except Exception as exc:  # recorded in the audit by the caller; the run fails
                    self.failures[load.load_id] = failed[load.load_id] = failure_reason(exc)
                    continue
                parts.append(dataset.in_period(result.rows, period))
                result.rows = result.rows.clear()  # the period's rows are in `parts` now
                splits.setdefault(load.load_id, result)
        # rechunk=False: the period's rows are not copied into one block
        rows = pl.concat(parts, how="vertical", rechunk=False) if parts else pl.DataFrame()
        del parts
        summaries = dataset.before_precedence(period, rows)
        lost: dict[str, int] = {}
        if dataset.precedence_key is not None:
            rows, lost = apply_precedence(
                rows, dataset.precedence, dataset.precedence_key, dataset.row_weight
            )
        combined = dataset.combine(period, rows)
        combined.partitions += summaries
        del rows
        partitions = []
        for partition in combined.partitions:
            result = None
            if partition.gated:
                result = gate.validate_frame(
                    partition.frame if partition.checked is None else partition.checked,
                    self.expectations_dir / dataset.suite,
                    partition.parameters,
                    partition=partition.name,
                    report_dir=self.report_dir,
                )
            partitions.append((partition, result))
        return PeriodResult(
            period,
            splits,
            dict(lost),
            combined.rejected,
            dict(combined.duplicates),
            partitions,
            failed,
        )


def clean_dataset(
    dataset: Dataset,
    paths: Paths,
    expectations_dir: Path,
    run_id: str,
    max_quarantine_share: float,
    rebuild: frozenset[str] = frozenset(),
    map_periods: Callable[[PeriodBuild, list[str]], Iterable[PeriodResult]] | None = None,
) -> CleanOutcome:
    """Clean the pending loads of one dataset (see the module docstring); `rebuild` holds the
    months of a backfill window: the loads touching them are cleaned and accounted again.
    `map_periods(build, periods)` yields `build(period)` for each period in order (default:
    the builtin `map`, in this process)."""
    outcome = CleanOutcome()
    out = retractions(paths.audit)
    status_of = dict(zip(out.get_column("load_id"), out.get_column("status"), strict=True))
    every = dataset.loads()
    # retracted, removal from landing not done: the rows are out already, the folder goes
    for load in every:
        if status_of.get(load.load_id) == "retracted":
            remove_load(load, paths.landing)
    leaving = [load for load in every if status_of.get(load.load_id) == "retracting"]
    loads = [load for load in every if load.load_id not in status_of]
    # a load whose last attempt failed is pending again, even if it was cleaned before
    failed_before = set(failed_loads(paths.audit).get_column("load_id").to_list())
    cleaned = cleaned_load_ids(paths.audit) - failed_before
    pending = [load for load in loads if load.load_id not in cleaned or touches(load, rebuild)]
    emptied: list[str] = []  # periods a retraction leaves without any load
    if dataset.whole:
        periods = [ALL] if pending or leaving or dataset.stale() else []
    else:
        landed = {p for load in loads for p in load.manifest.partitions}
        left = {p for load in leaving for p in load.manifest.partitions}
        asked = {p for load in pending for p in load.manifest.partitions} | rebuild | left
        periods = sorted(asked & landed)
        emptied = sorted(left - landed)
    if not periods and not pending and not leaving:
        log.info("%s: no new loads to clean", dataset.name)
        return outcome
    started, clock = datetime.now(UTC), time.perf_counter()
    report_dir = paths.validation / run_id
    results: dict[str, LoadResult] = {}
    by_id = {load.load_id: load for load in loads}
    gates_of: dict[str, list[str]] = {}  # period → statuses of its partitions' gates
    built: list[str] = []  # names of the partitions staged
    staging = Staging(paths.clean, dataset.folder, dataset.name, run_id)
    for period in emptied:
        staging.remove_period(period)
    failures: dict[str, str] = {}  # load id → why its rules failed

    def split(load: Load) -> LoadResult | None:
        if load.load_id in failures:
            return None
        try:
            return dataset.split(load)
        except Exception as exc:  # recorded in the audit; the run fails below
            failures[load.load_id] = failure_reason(exc)
            log.error("%s could not be cleaned: %s", load.manifest.origin, failures[load.load_id])
            return None

    build = PeriodBuild(dataset, loads, expectations_dir, report_dir, failures)
    # One period at a time, in order: in-process (the default) each period is built only when
    # the one before it is staged, so memory holds one period's rows; `map_periods` may run
    # them elsewhere (flows/layers/fanout.py: a Prefect task per period on a Dask cluster).
    for done in (map_periods or map)(build, periods):
        for load_id, why in done.failures.items():  # each load once (in-process)
            failures.setdefault(load_id, why)
            log.error("%s could not be cleaned: %s", by_id[load_id].manifest.origin, why)
        for load_id, result in done.splits.items():
            results.setdefault(load_id, result)
        for load_id, count in done.superseded.items():
            results[load_id].superseded += count
        if done.superseded:
            log.info(
                "precedence %s: %s rows superseded",
                done.period,
                f"{sum(done.superseded.values()):,}",
            )
        if done.rejected is not None:
            for load_id in done.rejected.get_column("load_id").unique().to_list():
                _reject(results[load_id], by_id[load_id], done.rejected)
        for load_id, count in done.duplicates.items():
            results[load_id].duplicates += count
            results[load_id].clean -= count
        for partition, result in done.partitions:
            staging.stage(partition.path, partition.frame)
            if result is None:  # not gated
                continue
            outcome.gates.append(result)
            gates_of.setdefault(done.period, []).append(result.status)
            built.append(partition.name)
            log.info(
                "gate %s %s: %s (%s rows)",
                dataset.name,
                partition.name,
                result.status,
                f"{partition.frame.height:,}",
            )
        del done
    for load in pending:  # loads with no usable date still need their accounting
        if load.load_id not in results:
            result = split(load)
            if result is None:
                continue
            result.rows = result.rows.clear()
            results[load.load_id] = result
        if not dataset.whole:
            unseen = set(results[load.load_id].periods) - set(periods)
            if unseen:  # only if parsing changed since landing; never drop those rows
                raise CleanFailed(
                    f"{load.manifest.origin} has rows in {sorted(unseen)}, periods not recorded "
                    "when it was landed (did the layout's date_formats change?). Nothing was "
                    "replaced."
                )
    for result in results.values():
        if result.received != result.clean + result.quarantined + result.duplicates:
            raise AssertionError(
                f"row accounting broken in {dataset.name}: received {result.received} != clean "
                f"{result.clean} + quarantined {result.quarantined} + duplicates "
                f"{result.duplicates}"
            )
    if failures:
        staging.discard()
        _fail(dataset, loads, failures, paths, run_id, started)
    loads_gate = None
    if pending:
        loads_gate = gate.validate_loads(
            expectations_dir / dataset.loads_suite,
            [(load.manifest.origin, results[load.load_id]) for load in pending],
            max_quarantine_share,
            report_dir,
        )
        outcome.gates.append(loads_gate)

    if not outcome.gate_failed:
        staging.swap(remove_others=dataset.whole)
        outcome.partitions_replaced = [f"{dataset.folder}/{name}" for name in built]
        dataset.after_swap()
        for load_id, result in results.items():  # a rebuild may release rows quarantined before
            folder = by_id[load_id].manifest.folder_period
            path = paths.quarantine / dataset.name / f"period={folder}" / f"load_id={load_id}"
            if result.quarantined:
                write_parquet_atomic(result.quarantine, path / "quarantine.parquet", "quarantine")
            else:
                (path / "quarantine.parquet").unlink(missing_ok=True)
        if leaving:
            _finish_retractions(dataset, leaving, out, paths, run_id)
    staging.discard()

    finished, seconds = datetime.now(UTC), round(time.perf_counter() - clock, 3)
    for load in pending:
        result = results[load.load_id]
        touched = [ALL] if dataset.whole else result.periods
        statuses = [s for p in touched for s in gates_of.get(p, [])]
        if result.quarantined > max_quarantine_share * max(result.received, 1):
            # this load is what the loads gate failed on, or warned about
            assert loads_gate is not None
            statuses.append("failed" if loads_gate.critical_failures else "passed_with_warnings")
        for reason, count in result.quarantine.group_by("reason").len().iter_rows():
            outcome.quarantine_reasons[reason] = outcome.quarantine_reasons.get(reason, 0) + count
        outcome.loads.append(
            {
                "run_id": run_id,
                "source": load.manifest.source,
                "dataset": load.manifest.dataset,
                "load_id": load.load_id,
                "file": load.manifest.origin,
                "periods": ",".join(result.periods),
                "rows_received": result.received,
                "rows_clean": result.clean,
                "rows_quarantined": result.quarantined,
                "rows_duplicate": result.duplicates,
                "rows_superseded": result.superseded,
                "status": "gate_failed" if outcome.gate_failed else "cleaned",
                "gate": _worst(statuses or ["passed"]),
                "started_at": started,
                "finished_at": finished,
                "seconds": seconds,
            }
        )
    append_audit(paths.audit, outcome.loads)
    return outcome


def _fail(
    dataset: Dataset,
    loads: list[Load],
    failures: dict[str, str],
    paths: Paths,
    run_id: str,
    started: datetime,
) -> None:
    """Record each failed load in the audit (`failed`, its reason) and stop the run naming
    them; nothing of the dataset was replaced."""
    finished = datetime.now(UTC)
    failed = [load for load in loads if load.load_id in failures]
    append_audit(
        paths.audit,
        [
            {
                "run_id": run_id,
                "source": load.manifest.source,
                "dataset": load.manifest.dataset,
                "load_id": load.load_id,
                "file": load.manifest.origin,
                "periods": ",".join(load.manifest.partitions),
                "status": "failed",
                "reason": failures[load.load_id],
                "started_at": started,
                "finished_at": finished,
            }
            for load in failed
        ],
    )
    named = "; ".join(
        f"{load.manifest.origin} (load {load.load_id}): {failures[load.load_id]}" for load in failed
    )
    raise LoadFailed(
        f"{dataset.name}: {len(failed)} landed load(s) could not be cleaned and nothing was "
        f"replaced: {named}. Fix the cause and run again, or take the load out with "
        "`lagesbild retract LOAD_ID --reason ...`."
    )


def _finish_retractions(
    dataset: Dataset, leaving: list[Load], out: pl.DataFrame, paths: Paths, run_id: str
) -> None:
    """The periods are rebuilt without the retracted loads: drop their quarantine, record
    them `retracted` (who, when, why: from the `retracting` row), then remove their landing
    folders. Each step can be repeated after a crash."""
    for load in leaving:
        folder = load.manifest.folder_period
        quarantine = paths.quarantine / dataset.name / f"period={folder}"
        quarantine = quarantine / f"load_id={load.load_id}"
        (quarantine / "quarantine.parquet").unlink(missing_ok=True)
        for empty in (quarantine, quarantine.parent):
            if empty.is_dir() and not any(empty.iterdir()):
                empty.rmdir()
    asked = out.filter(pl.col("load_id").is_in([load.load_id for load in leaving]))
    finished = datetime.now(UTC)
    append_audit(
        paths.audit,
        [
            {**row, "run_id": run_id, "status": "retracted", "finished_at": finished}
            for row in asked.drop("is_current").iter_rows(named=True)
        ],
    )
    for load in leaving:
        remove_load(load, paths.landing)
        log.warning(
            "retracted %s (load %s): its rows are out of %s", load.manifest.origin,
            load.load_id, dataset.name,
        )  # fmt: skip


# The backfill source that rebuilds a clean dataset's partitions (flows/nightly.py).
_REBUILT_BY = {"attendance": "attendance_export", "housing_work_orders": "housing_export"}


def clean_repair(clean_dir: Path, file: Path) -> str:
    """How a damaged clean file is built again from landing."""
    relative = file.relative_to(clean_dir)
    source = _REBUILT_BY.get(relative.parts[0])
    period = next((p[len("period=") :] for p in relative.parts if p.startswith("period=")), None)
    if source and period:
        year, month = int(period[:4]), int(period[5:7]) if len(period) > 4 else None
        first = f"{year}-{month or 1:02d}-01"
        last = (
            f"{year}-{month:02d}-{calendar.monthrange(year, month)[1]:02d}"
            if month
            else f"{year}-12-31"
        )
        return (
            f"Delete it and run `lagesbild backfill --source {source} --from {first} --to "
            f"{last}`: it is built again from landing."
        )
    return "Delete it and run `lagesbild run`: it is built again from landing."


def check_clean_files(clean_dir: Path) -> int:
    """The cheap check of every clean file before dbt reads them (parquet footer): a damaged
    one is named with its repair, not reported by DuckDB half-way through the build."""
    files = sorted(p for p in clean_dir.rglob("*.parquet") if not p.name.startswith("."))
    for file in files:
        check_parquet(file, repair=clean_repair(clean_dir, file))
    return len(files)
