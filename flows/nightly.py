"""The flows: `nightly` and `backfill`, every stage of docs/design.md in order.

reference → land new exports → clean + gate → dbt build (models + tests) → publish → summary.
A step only starts when the one before succeeded. A failed gate or dbt test raises, so the
flow run ends Failed and the served marts stay exactly as they were. Nothing is retried here:
only network I/O is retried, and validation or dbt fail the same way twice. One build at a
time: a run holds the data folder's build lock from start to publish, and first removes what
interrupted runs left. Its record in `audit/runs.parquet` is written when it starts, gets the
publish time at publish and is completed in the end, whatever happened (docs/fault-matrix.md).

Secrets: `LAGESBILD_PSEUDONYM_KEY` (environment) — see .env.example.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from pydantic import Field

from connectors.attendance_export.resources import SOURCE as ATTENDANCE_EXPORT
from connectors.housing_export.resources import SOURCE as HOUSING_EXPORT
from flows.attendance import exports as attendance_exports
from flows.attendance import retention, ss12000
from flows.attendance.dataset import Attendance
from flows.housing import exports as housing_exports
from flows.housing.dataset import HousingWorkOrders
from flows.layers import files, keys
from flows.layers.audit import run_lock, start_run, update_run
from flows.layers.clean import CleanOutcome, Dataset, clean_dataset
from flows.layers.files import sweep_leftovers
from flows.layers.gate import GateFailed
from flows.layers.reference import Reference, load_reference
from flows.reports import lagesbild as lagesbild_report
from flows.reports import run_summary
from flows.reports.notify import label_run, notify_failure
from flows.statistics import landing as statistics_landing
from flows.statistics.dataset import IndicatorValues, Population
from flows.warehouse import dbt, publish
from lagesbild import runtime
from lagesbild.settings import ConfigError, Settings, today

log = logging.getLogger(__name__)

# Sources a backfill can re-run: the clean dataset it rebuilds, and what it does.
BACKFILL_SOURCES = {
    ATTENDANCE_EXPORT: (
        Attendance.name,
        "lands new files, then rebuilds every month in the window from landing",
    ),
    ss12000.SOURCE: (
        Attendance.name,
        "fetches every school day in the window again, then rebuilds those months",
    ),
    HOUSING_EXPORT: (
        HousingWorkOrders.name,
        "lands new files, then rebuilds all work orders from landing if the window touches a "
        "year with orders",
    ),
}
# The backfill flow's `source` parameter: Prefect shows a choice and refuses other values
# when a run is created.
BackfillSource = StrEnum("BackfillSource", {name: name for name in BACKFILL_SOURCES})


# Prefect checks a deployment run's parameters against their schema when the run is
# created, but not a string's "format": this pattern refuses a month 13 or a day 32 there.
# (A 30 February passes it and fails as the run starts.)
DATE_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"
IsoDate = Annotated[date, Field(json_schema_extra={"pattern": DATE_PATTERN})]


def municipality_tag() -> str:
    return f"municipality:{Settings().municipality.code}"


# A run that hangs must not hold the build lock (and the shared concurrency slot) forever.
NIGHTLY_TIMEOUT_SECONDS = 4 * 3600
BACKFILL_TIMEOUT_SECONDS = 8 * 3600  # an SS 12000 re-fetch asks for one day at a time
DBT_TIMEOUT_SECONDS = 2 * 3600


@task(cache_policy=NO_CACHE)
def load_reference_data(settings: Settings) -> Reference:
    reference = load_reference(settings.paths.drop, settings.paths.clean, settings.remap_areas)
    log.info(
        "reference: %d schools, %d areas, %d school days",
        reference.schools.height,
        reference.areas.height,
        len(reference.school_days),
    )
    return reference


@task(cache_policy=NO_CACHE)
def land_attendance_exports(settings: Settings) -> list[str]:
    manifests = attendance_exports.land_new_exports(settings, settings.require_pseudonym_key())
    return [m.origin for m in manifests]


@task(cache_policy=NO_CACHE)
def land_ss12000(
    settings: Settings, reference: Reference, run_date: date, refetch: tuple[date, date] | None
) -> list[str]:
    key = settings.require_pseudonym_key()
    manifests = ss12000.land_delta(settings, key, reference.school_days, run_date, refetch)
    return [m.origin for m in manifests]


@task(cache_policy=NO_CACHE)
def land_housing_exports(settings: Settings) -> list[str]:
    return [m.origin for m in housing_exports.land_new_exports(settings)]


@task(cache_policy=NO_CACHE)
def land_statistics(settings: Settings) -> list[str]:
    return [m.origin for m in statistics_landing.land_statistics(settings)]


@task(cache_policy=NO_CACHE, task_run_name="clean-and-gate-{dataset.name}")
def clean_and_gate(
    settings: Settings, dataset: Dataset, run_id: str, rebuild: frozenset[str]
) -> CleanOutcome:
    map_periods = None
    if settings.dask_scheduler_address:  # optional: the extra `spark` (docs/scale.md)
        from flows.layers.fanout import on_dask

        map_periods = on_dask(settings.dask_scheduler_address)
    return clean_dataset(
        dataset,
        settings.paths,
        settings.expectations_dir,
        run_id,
        settings.max_quarantine_share,
        rebuild,
        map_periods,
    )


@task(cache_policy=NO_CACHE, timeout_seconds=DBT_TIMEOUT_SECONDS)
def build_warehouse(settings: Settings, as_of: date, full_refresh: bool) -> dbt.DbtBuild:
    return dbt.dbt_build(settings, as_of=as_of, full_refresh=full_refresh)


@task(cache_policy=NO_CACHE)
def publish_marts(settings: Settings) -> list[str]:
    tables = publish.publish(
        settings.paths,
        settings.served_storage_version,
        settings.postgres,
        settings.suppression.min_persons,
    )
    log.info("published %d marts to %s", len(tables), settings.paths.marts_db)
    if settings.postgres:
        log.info("and to PostgreSQL schema %s", settings.postgres.schema_name)
    return tables


@task(cache_policy=NO_CACHE)
def write_dbt_docs(settings: Settings, as_of: date):
    return dbt.dbt_docs(settings, as_of=as_of)


@task(cache_policy=NO_CACHE)
def write_lagesbild_report(settings: Settings, run_date: date):
    path = lagesbild_report.build(settings.paths, settings.municipality.name, run_date)
    log.info("lägesbild report: %s", path)
    return path


def clean_datasets(settings: Settings, reference: Reference, run_date: date) -> list[Dataset]:
    """The clean datasets, in the order a run cleans them (also `lagesbild retract`)."""
    return [
        Attendance(settings, reference, run_date),
        HousingWorkOrders(settings, reference, run_date),
        IndicatorValues(settings),
        Population(settings),
    ]


def _run_id() -> str:
    context = FlowRunContext.get()
    suffix = str(context.flow_run.id)[:8] if context and context.flow_run else "local"
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{suffix}"


def months(date_from: date, date_to: date) -> frozenset[str]:
    """The YYYY-MM periods a date window touches."""
    first, last = date_from.year * 12 + date_from.month - 1, date_to.year * 12 + date_to.month - 1
    return frozenset(f"{m // 12}-{m % 12 + 1:02d}" for m in range(first, last + 1))


def _pipeline(
    flow_name: str,
    run_date: date | None,
    rebuild: dict[str, frozenset[str]] | None = None,
    backfill: str | None = None,
    refetch: tuple[date, date] | None = None,
    full_refresh: bool = False,
) -> run_summary.RunSummary:
    """Every stage in order. A backfill gives `rebuild` (clean dataset → the months it
    rebuilds), `backfill` (its label in the runs table: source and window) and, for SS 12000,
    `refetch` (the days fetched again)."""
    runtime.route_logs_to_prefect()
    files.private_files()  # pupil-level layers owner-only; the publish opens the marts
    settings = Settings()  # once per run; everything below is handed these settings
    # fail before any work if the key is missing or is not the landed data's
    keys.check_landed_key(settings.paths.landing, settings.require_pseudonym_key())
    rebuild = rebuild or {}
    summary = run_summary.RunSummary(_run_id(), run_date or today(), status="Running")
    started = datetime.now(UTC)
    stage_started = time.perf_counter()

    def stage(name: str) -> None:
        """Time the running stage and log the next one (operators and tests follow these)."""
        nonlocal stage_started
        if summary.stage_seconds:  # the last key is the stage that is running
            running = next(reversed(summary.stage_seconds))
            summary.stage_seconds[running] = time.perf_counter() - stage_started
        stage_started = time.perf_counter()
        if name != "done":
            summary.stage_seconds[name] = 0.0
            log.info("stage %s: start", name)

    # The run's record exists from its start: a run killed at any point shows as 'Crashed'.
    start_run(
        settings.paths.audit,
        {
            "run_id": summary.run_id,
            "flow": flow_name,
            "window": backfill,
            "run_date": summary.run_date,
            "started_at": started,
            "loads": 0,
            "published": False,
        },
    )
    try:
        with run_lock(settings.data_dir, settings.run_lock_timeout):
            sweep_leftovers(settings.paths)  # logs each path it removes
            stage("extract")
            reference = load_reference_data(settings)
            summary.landed += land_attendance_exports(settings)
            if ss12000.enabled(settings):
                summary.landed += land_ss12000(settings, reference, summary.run_date, refetch)
            summary.landed += land_housing_exports(settings)
            summary.landed += land_statistics(settings)
            stage("clean")
            for dataset in clean_datasets(settings, reference, summary.run_date):
                months = rebuild.get(dataset.name, frozenset())
                summary.clean += clean_and_gate(settings, dataset, summary.run_id, months)
            if summary.clean.gate_failed:
                failures = [
                    f"{g.partition}: {o.expectation} on {o.column}"
                    for g in summary.clean.gates
                    for o in g.critical_failures
                ]
                raise GateFailed("critical expectations failed: " + "; ".join(failures))
            if not full_refresh and _quiet(settings, summary):
                summary.skipped = ["dbt", "publish", "report"]
                summary.note = f"nothing new: stages skipped ({', '.join(summary.skipped)})"
                log.info(
                    "%s: nothing landed or changed since the last completed run on this run "
                    "date; the served marts and the report stay as they are",
                    summary.note,
                )
                summary.status = "Completed"
                return summary
            stage("dbt")
            build = build_warehouse(settings, summary.run_date, full_refresh)
            summary.dbt_nodes, summary.dbt_mode = build.nodes, build.reason
            if build.selected != []:  # dbt ran: its results are this run's
                summary.dbt_execution_seconds = dbt.execution_seconds(settings.paths)
            stage("publish")
            summary.published = publish_marts(settings)
            # recorded at once: `status` compares it with the loads cleaned
            update_run(
                settings.paths.audit,
                summary.run_id,
                published=True,
                published_at=datetime.now(UTC),
            )
            stage("report")
            summary.lagesbild_path = write_lagesbild_report(settings, summary.run_date)
            if settings.dbt_docs:
                summary.docs_path = write_dbt_docs(settings, summary.run_date)
            # what a quiet night compares with (only a run that got this far)
            dbt.record_served(settings, build.inputs)
            # after a publish: the months it deletes are in the served marts
            retention.apply_retention(settings, summary.run_date, summary.run_id)
            summary.status = "Completed"
    except Exception as exc:
        summary.status, summary.error = "Failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        stage("done")  # also times the stage a failure stopped
        if summary.status == "Running":  # a BaseException: Ctrl-C, a cancelled flow run
            summary.status, summary.error = "Failed", "interrupted (cancelled or Ctrl-C)"
        _record_end(summary, settings, flow_name)
    return summary


def _quiet(settings: Settings, summary: run_summary.RunSummary) -> bool:
    """A quiet night: the clean stage found nothing to clean, and every dbt input, the run
    date, the publish settings and the served files are those of the last completed run.
    dbt, publish and report would then write the same files again: they are skipped."""
    clean = summary.clean
    if clean.loads or clean.partitions_replaced or clean.gates:
        return False
    return dbt.nothing_new(settings, summary.run_date)


def _record_end(summary: run_summary.RunSummary, settings: Settings, flow_name: str) -> None:
    """Write the run summary, complete the run record, add the Prefect artifact. Each step
    is attempted even if one before failed; none hides the run's own error (it is logged
    instead). A run that succeeded but whose record cannot be written fails with that error."""
    problems: list[Exception] = []
    succeeded = summary.status == "Completed"

    def attempt(what: str, step) -> None:
        try:
            step()
        except Exception as exc:
            log.exception("could not %s (the run's own outcome: %s)", what, summary.status)
            problems.append(exc)

    def write_summary() -> None:
        log.info("run summary: %s", run_summary.write(summary, settings.paths))

    attempt("write the run summary", write_summary)
    if problems and summary.status == "Completed":
        exc = problems[0]
        summary.status, summary.error = "Failed", f"{type(exc).__name__}: {exc}"
    attempt(
        "complete the run record in audit/runs.parquet",
        lambda: update_run(
            settings.paths.audit,
            summary.run_id,
            finished_at=datetime.now(UTC),
            status=summary.status,
            error=summary.error,
            loads=len(summary.clean.loads),
            note=summary.note,
        ),
    )
    if FlowRunContext.get():
        attempt(
            "add the run summary artifact",
            lambda: create_markdown_artifact(
                run_summary.render(summary, settings.paths),
                key="lagesbild-run-summary",
                description=f"lagesbild {flow_name} run {summary.run_id}",
            ),
        )
    if problems and succeeded:
        raise problems[0]


def _nightly_run_name() -> str:
    run_date = flow_run_parameters().get("run_date")
    return f"nightly-{run_date or today()}"


def _backfill_run_name() -> str:
    p = flow_run_parameters()
    return f"backfill-{p.get('source')}-{p.get('date_from')}..{p.get('date_to')}"


def flow_run_parameters() -> dict:
    from prefect.runtime import flow_run

    return flow_run.parameters


# both flows: prints into the run's logs, a failed or crashed run notifies
_FLOW_OPTIONS = {"log_prints": True, "on_failure": [notify_failure], "on_crashed": [notify_failure]}


@flow(
    name="nightly",
    flow_run_name=_nightly_run_name,
    timeout_seconds=NIGHTLY_TIMEOUT_SECONDS,
    **_FLOW_OPTIONS,
)
def nightly(run_date: IsoDate | None = None, full_refresh: bool = False) -> run_summary.RunSummary:
    """Land, clean, validate, build and publish everything new in the drop folder.

    dbt rebuilds only the months whose clean files changed; `full_refresh` rebuilds every
    table from scratch (done by itself after a change of the dbt project).

    Args:
        run_date: The day the run is for (YYYY-MM-DD); empty means today in Sweden.
        full_refresh: Rebuild every dbt table from scratch instead of only the changed months.
    """
    label_run(log, municipality_tag())
    return _pipeline("nightly", run_date, full_refresh=full_refresh)


@flow(
    name="backfill",
    flow_run_name=_backfill_run_name,
    timeout_seconds=BACKFILL_TIMEOUT_SECONDS,
    **_FLOW_OPTIONS,
)
def backfill(
    source: BackfillSource,
    date_from: IsoDate,
    date_to: IsoDate,
    run_date: IsoDate | None = None,
) -> run_summary.RunSummary:
    """Re-run a source over a date window: rebuild exactly those periods, publish once.

    Args:
        source: The source to re-run: attendance_export, ss12000 or housing_export.
        date_from: First day of the window (YYYY-MM-DD); widened to its month.
        date_to: Last day of the window (YYYY-MM-DD), on or after date_from.
        run_date: The day the run is for (YYYY-MM-DD); empty means today in Sweden.
    """
    label_run(log, municipality_tag(), f"source:{source}")
    if source not in BACKFILL_SOURCES:
        raise ConfigError(
            f"unknown source '{source}' for backfill; known: {', '.join(BACKFILL_SOURCES)}"
        )
    if date_from > date_to:
        raise ConfigError(f"backfill window is empty: --from {date_from} is after --to {date_to}")
    periods = months(date_from, date_to)
    log.info(
        "backfill %s %s..%s: rebuilding %s", source, date_from, date_to, ", ".join(sorted(periods))
    )
    refetch = (date_from, date_to) if source == ss12000.SOURCE else None
    rebuild = {BACKFILL_SOURCES[source][0]: periods}
    return _pipeline("backfill", run_date, rebuild, f"{source} {date_from}..{date_to}", refetch)
