"""Deployments of the flows, for `lagesbild serve` (one long-running process, one machine).

`deployments/prefect.yaml` describes the same two deployments for a Prefect server with a
work pool; a test keeps them in step.
"""

from __future__ import annotations

from prefect.schedules import Cron

from flows.nightly import backfill, nightly
from lagesbild.settings import Settings

TIMEZONE = "Europe/Stockholm"


def build_deployments(settings: Settings) -> list:
    hour = settings.nightly_cron.split()[1]
    if hour in ("2", "02"):
        raise ValueError(
            "nightly_cron runs in 02:00-03:00 Europe/Stockholm, the hour that is skipped in "
            "March and repeated in October; choose another hour"
        )
    return [
        nightly.to_deployment(
            name="nightly",
            schedule=Cron(settings.nightly_cron, timezone=TIMEZONE),
            description="Land, clean, validate, build and publish what is new.",
            concurrency_limit=1,
        ),
        backfill.to_deployment(
            name="backfill",
            description="Rebuild a source's periods in a date window; publish once.",
            parameters={"source": "attendance_export"},
            concurrency_limit=1,
        ),
    ]


def serve_deployments(settings: Settings) -> None:
    from prefect import serve

    # limit=1: one flow run at a time in this process (the build lock guards the rest);
    # pause_on_shutdown=False: stopping the server must not pause the nightly schedule.
    serve(*build_deployments(settings), limit=1, pause_on_shutdown=False)
