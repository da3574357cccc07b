"""Deployments of the flows, for `lagesbild serve` (one machine: a local Prefect server and
this process running the flows).

`deployments/prefect.yaml` describes the same two deployments for a Prefect server with a
work pool under other names (`nightly`, `backfill`); the served ones are `nightly-served` and
`backfill-served`, so both kinds can live on one server without overwriting each other (a
test keeps them in step). Every lagesbild deployment shares one global concurrency limit,
`lagesbild-build`: one build at a time, and a run waiting for it shows as
AwaitingConcurrencySlot in Prefect instead of Running. On an installation with several
municipalities (docs/region.md) each municipality's deployments carry the tag
`build-limit:lagesbild-build-<code>` and share that limit instead: one build at a time per
municipality, the municipalities side by side.
"""

from __future__ import annotations

import logging

from prefect.schedules import Cron

from flows.nightly import backfill, nightly
from lagesbild.settings import TIMEZONE, ConfigError, Settings

log = logging.getLogger(__name__)

SERVED_SUFFIX = "-served"
BUILD_LIMIT = "lagesbild-build"
BUILD_LIMIT_TAG = "build-limit:"
FLOW_NAMES = ("nightly", "backfill")


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
    tags = ["lagesbild", f"municipality:{settings.municipality.code}"]
    return [
        nightly.to_deployment(
            name=f"nightly{SERVED_SUFFIX}",
            schedule=Cron(settings.nightly_cron, timezone=TIMEZONE),
            description="Land, clean, validate, build and publish what is new.",
            tags=tags,
            # 1, as the shared limit: re-applying then leaves the link to it alone.
            concurrency_limit=1,
        ),
        backfill.to_deployment(
            name=f"backfill{SERVED_SUFFIX}",
            description="Rebuild a source's periods in a date window; publish once.",
            parameters={"source": "attendance_export"},
            tags=tags,
            concurrency_limit=1,
        ),
    ]


def refuse_overwriting(client, deployments: list) -> None:
    """A served deployment must not replace one made by `prefect deploy` (it would lose the
    pull steps and the worker would crash every run)."""
    from prefect.exceptions import ObjectNotFound

    for deployment in deployments:
        try:
            existing = client.read_deployment_by_name(f"{deployment.flow_name}/{deployment.name}")
        except ObjectNotFound:
            continue
        if existing.work_pool_name or existing.pull_steps:
            raise ConfigError(
                f"the deployment {deployment.flow_name}/{deployment.name} on the Prefect server "
                f"was made by `prefect deploy` (work pool {existing.work_pool_name}); "
                "`lagesbild serve` will not overwrite it. Rename it in deployments/prefect.yaml "
                "or delete it with `prefect deployment delete`."
            )


def build_limit_of(deployment) -> str:
    """The global concurrency limit a deployment's runs share: its `build-limit:` tag, else
    the installation's one `lagesbild-build`."""
    for tag in deployment.tags or []:
        if tag.startswith(BUILD_LIMIT_TAG):
            return tag.removeprefix(BUILD_LIMIT_TAG)
    return BUILD_LIMIT


def share_build_limit(client) -> list[str]:
    """Put every nightly and backfill deployment on the server under its build limit (limit
    1): `lagesbild-build`, or its municipality's (`build_limit_of`); returns the deployments
    linked now."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    limits = {}
    linked = []
    flows = FlowFilter(name=FlowFilterName(any_=list(FLOW_NAMES)))
    for deployment in client.read_deployments(flow_filter=flows):
        name = build_limit_of(deployment)
        if name not in limits:
            client.upsert_global_concurrency_limit_by_name(name, 1)
            limits[name] = client.read_global_concurrency_limit_by_name(name)
        shared = limits[name]
        own = deployment.global_concurrency_limit
        if own and own.id == shared.id:
            continue
        # The client's DeploymentUpdate lacks this field; the REST API takes it.
        response = client._client.patch(
            f"/deployments/{deployment.id}", json={"global_concurrency_limit_id": str(shared.id)}
        )
        response.raise_for_status()
        if own and own.name == f"deployment:{deployment.id}":  # the one Prefect made for it
            client.delete_global_concurrency_limit_by_name(own.name)
        linked.append(deployment.name)
    return linked


def serve_deployments(settings: Settings) -> None:
    """Register the served deployments, link them to the shared limit, and run their flows
    until stopped. The Prefect API (PREFECT_API_URL) must be a server with its scheduler."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.exceptions import TerminationSignal
    from prefect.runner import Runner

    deployments = build_deployments(settings)
    with get_client(sync_client=True) as client:
        refuse_overwriting(client, deployments)
    # limit=2: the shared limit lets one build run; a second run reaches the server and waits
    # there as AwaitingConcurrencySlot (with limit=1 it would sit unseen as Scheduled, then
    # Late). pause_on_shutdown=False: stopping the process must not pause the nightly schedule.
    runner = Runner(limit=2, pause_on_shutdown=False)
    for deployment in deployments:
        runner.add_deployment(deployment)
    with get_client(sync_client=True) as client:
        linked = share_build_limit(client)
    if linked:
        log.info("under the shared limit %s now: %s", BUILD_LIMIT, ", ".join(linked))
    try:
        asyncio.run(runner.start())
    except (KeyboardInterrupt, TerminationSignal):
        log.info("stopped serving")
