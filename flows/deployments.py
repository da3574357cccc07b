"""Deployments of the flows, for `lagesbild serve` (one long-running process, one machine).

`deployments/prefect.yaml` describes the same two deployments for a Prefect server with a
work pool; a test keeps them in step.
"""

from __future__ import annotations

from prefect.schedules import Cron

from flows.nightly import backfill, nightly
from lagesbild.settings import Settings

TIMEZONE = "Europe/Stockholm"


def cron_hours(cron: str) -> set[int]:
    """The hours a cron expression's hour field selects ('*', '1-3', '*/2', '4,5', '1-9/2')."""
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(f"'{cron}' is not a five-field cron expression")
    hours: set[int] = set()
    for part in fields[1].split(","):
        span, _, step = part.partition("/")
        if span == "*":
            low, high = 0, 23
        elif "-" in span:
            low, high = (int(x) for x in span.split("-"))
        else:
            low = int(span)
            high = 23 if step else low
        hours |= set(range(low, high + 1, int(step or 1)))
    return hours


def build_deployments(settings: Settings) -> list:
    if 2 in cron_hours(settings.nightly_cron):
        raise ValueError(
            f"nightly_cron '{settings.nightly_cron}' runs in 02:00-03:00 Europe/Stockholm, the "
            "hour that is skipped in March and repeated in October; choose another hour"
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
