"""The nightly flow: every step of DESIGN.md for one load, in order.

reference → land new exports → clean + gate → dbt build (models + tests) → publish → summary.
A step only starts when the one before succeeded. A failed gate or dbt test raises, so the
flow run ends Failed and the served marts stay exactly as they were. Nothing is retried here:
only network I/O in connectors is retried, and validation or dbt fail the same way twice.

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

from flows import attendance, report, warehouse
from flows.gate import GateFailed
from flows.reference import Reference, load_reference
from lagesbild.settings import Settings


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
def clean_and_gate_attendance(
    settings: Settings, reference: Reference, run_id: str
) -> attendance.CleanOutcome:
    return attendance.clean_pending_loads(settings, reference, run_id, _log)


@task(cache_policy=NO_CACHE)
def build_warehouse(settings: Settings) -> int:
    result = warehouse.dbt_build(settings, log=_log)
    return result.nodes


@task(cache_policy=NO_CACHE)
def publish_marts(settings: Settings) -> list[str]:
    tables = warehouse.publish(settings.paths, settings.served_storage_version)
    _log(f"published {len(tables)} marts to {settings.paths.marts_db}")
    return tables


def _run_id() -> str:
    context = FlowRunContext.get()
    suffix = str(context.flow_run.id)[:8] if context and context.flow_run else "local"
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{suffix}"


@flow(name="nightly", log_prints=True)
def nightly(run_date: date | None = None) -> report.RunSummary:
    """Land, clean, validate, build and publish everything new in the drop folder."""
    settings = Settings()
    settings.require_pseudonym_key()  # fail before any work if the key is missing
    summary = report.RunSummary(_run_id(), run_date or date.today(), status="Running")
    stage = time.perf_counter()

    def done(name: str) -> None:
        nonlocal stage
        summary.stage_seconds[name] = time.perf_counter() - stage
        stage = time.perf_counter()

    try:
        reference = load_reference_data(settings)
        summary.landed = land_attendance_exports(settings)
        done("extract")
        summary.clean = clean_and_gate_attendance(settings, reference, summary.run_id)
        done("clean+gate")
        if summary.clean.gate_failed:
            failures = [
                f"{g.partition}: {o.expectation} on {o.column}"
                for g in summary.clean.gates
                for o in g.critical_failures
            ]
            raise GateFailed("critical expectations failed: " + "; ".join(failures))
        summary.dbt_nodes = build_warehouse(settings)
        done("dbt")
        summary.published = publish_marts(settings)
        done("publish")
        summary.status = "Completed"
    except Exception as exc:
        summary.status, summary.error = "Failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        path = report.write(summary, settings.paths)
        _log(f"run summary: {path}")
        if FlowRunContext.get():
            create_markdown_artifact(
                report.render(summary, settings.paths),
                key="lagesbild-run-summary",
                description=f"lagesbild run {summary.run_id}",
            )
    return summary
