"""The clean step fanned out: each period of a dataset built as a Prefect task on a Dask
cluster (prefect-dask's DaskTaskRunner), instead of one after the other in this process.

Used when the setting `dask_scheduler_address` is set (docs/scale.md): a scheduler's address
(`tcp://host:8786`) runs the periods on that cluster's workers, `local` on a LocalCluster
started for the run. A worker builds a period (split, precedence, combine, gate: `PeriodBuild`)
and returns its frames; this process adds up the accounting and stages and swaps the
partitions exactly as the in-process path does, so the results are the same. The workers need
this package installed, the expectations at the same path, and the landing layer at the same
place: the same path (a shared mount), or an object store (`layers_url`) with its credentials
in the workers' environment.
Needs the optional extra `spark` (prefect-dask, dask, distributed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.layers.clean import PeriodBuild, PeriodResult
from lagesbild.errors import ConfigError

log = logging.getLogger(__name__)


@task(cache_policy=NO_CACHE, task_run_name="clean-{build.dataset.name}-{period}")
def clean_period(build: PeriodBuild, period: str) -> PeriodResult:
    return build(period)


def on_dask(address: str) -> Callable[[PeriodBuild, list[str]], list[PeriodResult]]:
    """A `map_periods` for clean_dataset that runs each period as a task on Dask."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:  # the extra is optional
        raise ConfigError(
            "dask_scheduler_address is set but prefect-dask is not installed: install the "
            "optional extra (uv sync --extra spark) or unset LAGESBILD_DASK_SCHEDULER_ADDRESS"
        ) from exc

    def map_periods(build: PeriodBuild, periods: list[str]) -> list[PeriodResult]:
        if not periods:
            return []
        runner = (
            DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1})
            if address == "local"
            else DaskTaskRunner(address=address)
        )

        @flow(name=f"clean-{build.dataset.name}", task_runner=runner, log_prints=False)
        def clean_periods() -> list[PeriodResult]:
            futures = [clean_period.submit(build, period) for period in periods]
            return [future.result() for future in futures]  # in period order

        log.info("%s: %d periods on Dask (%s)", build.dataset.name, len(periods), address)
        return clean_periods()

    return map_periods
