"""The flows: `nightly` and `backfill`, every step of DESIGN.md in order.

reference → land new exports → clean + gate → dbt build (models + tests) → publish → summary.
A step only starts when the one before succeeded. A failed gate or dbt test raises, so the
flow run ends Failed and the served marts stay exactly as they were. Nothing is retried here:
only network I/O is retried, and validation or dbt fail the same way twice. One build at a
time: a run holds the data folder's build lock from start to publish.

Secrets: `LAGESBILD_PSEUDONYM_KEY` (environment) — see .env.example.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, date, datetime

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.exceptions import MissingContextError

from connectors.attendance_export.resources import SOURCE as ATTENDANCE_EXPORT
from connectors.housing_export.resources import SOURCE as HOUSING_EXPORT
from flows import attendance, housing, lagesbild_report, report, ss12000, statistics, warehouse
from flows.gate import GateFailed
from flows.notify import notify_failure
from flows.reference import Reference, load_reference
from flows.storage import CleanOutcome, append_run, run_lock
from lagesbild.settings import ConfigError, Settings

# Sources a backfill can re-run, and what that means for each (README: rerun safety).
BACKFILL_SOURCES = {
    ATTENDANCE_EXPORT: "lands new files, then rebuilds every month in the window from landing",
    ss12000.SOURCE: "fetches every school day in the window again, then rebuilds those months",
    HOUSING_EXPORT: "lands new files, then rebuilds all work orders from landing if the window "
    "touches a year with orders",
}


def _log(message: str) -> None:
    try:
        get_run_logger().info(message)
    except MissingContextError:
        logging.getLogger("lagesbild").info(message)


@task(cache_policy=NO_CACHE)
def load_reference_data(settings: Settings) -> Reference:
    reference = load_reference(settings.paths.drop, settings.paths.clean)
    _log(
        f"reference: {reference.schools.height} schools, {reference.areas.height} areas, "
        f"{len(reference.school_days)} school days"
    )
    return reference


@task(cache_policy=NO_CACHE)
def land_attendance_exports(settings: Settings) -> list[str]:
    manifests = attendance.land_new_exports(settings, settings.require_pseudonym_key(), _log)
    return [m.file for m in manifests]


@task(cache_policy=NO_CACHE)
def land_ss12000(
    settings: Settings, reference: Reference, run_date: date, window: tuple[date, date] | None
) -> list[str]:
    key = settings.require_pseudonym_key()
    manifests = ss12000.land_delta(settings, key, reference.school_days, run_date, _log, window)
    return [m.file for m in manifests]


@task(cache_policy=NO_CACHE)
def clean_and_gate_attendance(
    settings: Settings, reference: Reference, run_id: str, rebuild_periods: frozenset[str]
) -> CleanOutcome:
    return attendance.clean_pending_loads(settings, reference, run_id, _log, rebuild_periods)


@task(cache_policy=NO_CACHE)
def land_housing_exports(settings: Settings) -> list[str]:
    return [m.file for m in housing.land_new_exports(settings, _log)]


@task(cache_policy=NO_CACHE)
def clean_and_gate_housing(
    settings: Settings, reference: Reference, run_id: str, rebuild_periods: frozenset[str]
) -> CleanOutcome:
    return housing.clean_pending_loads(settings, reference, run_id, _log, rebuild_periods)


@task(cache_policy=NO_CACHE)
def land_statistics(settings: Settings) -> list[str]:
    return [m.file for m in statistics.land_statistics(settings, _log)]


@task(cache_policy=NO_CACHE)
def clean_and_gate_statistics(settings: Settings, run_id: str) -> CleanOutcome:
    return statistics.clean_statistics(settings, run_id, _log)


@task(cache_policy=NO_CACHE)
def build_warehouse(settings: Settings, as_of: date, full_refresh: bool) -> warehouse.DbtBuild:
    return warehouse.dbt_build(settings, log=_log, as_of=as_of, full_refresh=full_refresh)


@task(cache_policy=NO_CACHE)
def publish_marts(settings: Settings) -> list[str]:
    tables = warehouse.publish(settings.paths, settings.served_storage_version, settings.postgres)
    _log(f"published {len(tables)} marts to {settings.paths.marts_db}")
    if settings.postgres:
        _log(f"and to PostgreSQL schema {settings.postgres.schema_name}")
    return tables


@task(cache_policy=NO_CACHE)
def write_dbt_docs(settings: Settings, as_of: date):
    return warehouse.dbt_docs(settings, log=_log, as_of=as_of)


@task(cache_policy=NO_CACHE)
def write_lagesbild_report(settings: Settings, run_date: date):
    path = lagesbild_report.build(settings.paths, settings.municipality.name, run_date)
    _log(f"lägesbild report: {path}")
    return path


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
    rebuild_periods: frozenset[str] = frozenset(),
    window: str | None = None,
    api_window: tuple[date, date] | None = None,
    full_refresh: bool = False,
) -> report.RunSummary:
    settings = Settings()
    settings.require_pseudonym_key()  # fail before any work if the key is missing
    summary = report.RunSummary(_run_id(), run_date or date.today(), status="Running")
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
            _log(f"stage {name}: start")

    with run_lock(settings.data_dir, settings.run_lock_timeout, _log):
        try:
            stage("extract")
            reference = load_reference_data(settings)
            summary.landed += land_attendance_exports(settings)
            if ss12000.enabled(settings):
                summary.landed += land_ss12000(settings, reference, summary.run_date, api_window)
            summary.landed += land_housing_exports(settings)
            summary.landed += land_statistics(settings)
            stage("clean")
            summary.clean += clean_and_gate_attendance(
                settings, reference, summary.run_id, rebuild_periods
            )
            summary.clean += clean_and_gate_housing(
                settings, reference, summary.run_id, rebuild_periods
            )
            summary.clean += clean_and_gate_statistics(settings, summary.run_id)
            if summary.clean.gate_failed:
                failures = [
                    f"{g.partition}: {o.expectation} on {o.column}"
                    for g in summary.clean.gates
                    for o in g.critical_failures
                ]
                raise GateFailed("critical expectations failed: " + "; ".join(failures))
            stage("dbt")
            build = build_warehouse(settings, summary.run_date, full_refresh)
            summary.dbt_nodes, summary.dbt_mode = build.nodes, build.reason
            summary.dbt_execution_seconds = warehouse.execution_seconds(settings.paths)
            stage("publish")
            summary.published = publish_marts(settings)
            stage("report")
            summary.lagesbild_path = write_lagesbild_report(settings, summary.run_date)
            if settings.dbt_docs:
                summary.docs_path = write_dbt_docs(settings, summary.run_date)
            summary.status = "Completed"
        except Exception as exc:
            summary.status, summary.error = "Failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            stage("done")  # also times the stage a failure stopped
            path = report.write(summary, settings.paths)
            append_run(
                settings.paths.audit,
                {
                    "run_id": summary.run_id,
                    "flow": flow_name,
                    "window": window,
                    "run_date": summary.run_date,
                    "started_at": started,
                    "finished_at": datetime.now(UTC),
                    "status": summary.status,
                    "error": summary.error,
                    "loads": len(summary.clean.loads),
                    "published": bool(summary.published),
                },
            )
            _log(f"run summary: {path}")
            if FlowRunContext.get():
                create_markdown_artifact(
                    report.render(summary, settings.paths),
                    key="lagesbild-run-summary",
                    description=f"lagesbild {flow_name} run {summary.run_id}",
                )
    return summary


@flow(name="nightly", log_prints=True, on_failure=[notify_failure], on_crashed=[notify_failure])
def nightly(run_date: date | None = None, full_refresh: bool = False) -> report.RunSummary:
    """Land, clean, validate, build and publish everything new in the drop folder.

    dbt rebuilds only the months whose clean files changed; `full_refresh` rebuilds every
    table from scratch (done by itself after a change of the dbt project).
    """
    return _pipeline("nightly", run_date, full_refresh=full_refresh)


@flow(name="backfill", log_prints=True, on_failure=[notify_failure], on_crashed=[notify_failure])
def backfill(
    source: str, date_from: date, date_to: date, run_date: date | None = None
) -> report.RunSummary:
    """Re-run a source over a date window: rebuild exactly those periods, publish once."""
    if source not in BACKFILL_SOURCES:
        raise ConfigError(
            f"unknown source '{source}' for backfill; known: {', '.join(BACKFILL_SOURCES)}"
        )
    if date_from > date_to:
        raise ConfigError(f"backfill window is empty: --from {date_from} is after --to {date_to}")
    periods = months(date_from, date_to)
    _log(f"backfill {source} {date_from}..{date_to}: rebuilding {', '.join(sorted(periods))}")
    api_window = (date_from, date_to) if source == ss12000.SOURCE else None
    return _pipeline("backfill", run_date, periods, f"{source} {date_from}..{date_to}", api_window)
