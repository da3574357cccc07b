"""`lagesbild retract LOAD_ID|FILE --reason …`: take a landed load out of the data.

A retraction removes what the load brought: its rows from every clean period it touched
(those periods are rebuilt from the other loads through the one clean path,
`flows.layers.clean`; a period left without any load is removed), its quarantine and its
landing folder. The audit keeps who (the user in the environment), when and why; the file,
if it is still in the drop folder, is not landed again. The served marts change with the next
run (`lagesbild run` or the nightly), which publishes the rebuilt periods.

Crash-safe by order: the audit first says `retracting` (nothing else changed yet), then the
periods are rebuilt and swapped, then the quarantine goes, the audit says `retracted`, and
the landing folder goes last. A retraction killed at any point is finished by running it
again, or by the next run, which never cleans a `retracting` load again.
"""

from __future__ import annotations

import getpass
import logging
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath

import polars as pl

from flows.layers.audit import append_audit, retractions, run_lock
from flows.layers.clean import CleanOutcome, clean_dataset
from flows.layers.files import sweep_leftovers
from flows.layers.landing import Load, every_load
from flows.layers.reference import load_reference
from lagesbild.settings import Settings, today

log = logging.getLogger(__name__)


class RetractError(ValueError):
    """The load to retract cannot be found, or the name fits more than one."""


@dataclass
class Retracted:
    load_id: str
    file: str
    dataset: str  # the clean dataset rebuilt without it
    periods: list[str]
    partitions_replaced: list[str]


def current_user() -> str:
    """Who retracts: `LAGESBILD_USER` if set (a service account acting for someone), else
    the login of the process."""
    named = os.environ.get("LAGESBILD_USER")
    if named:
        return named
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return f"uid {os.getuid()}"


def find_load(loads: list[Load], target: str) -> Load:
    """The one landed load with this id, or whose drop-folder file is this path or name."""
    by_id = [load for load in loads if load.load_id == target]
    if by_id:
        return by_id[0]
    wanted = target.replace("\\", "/")
    by_file = [
        load
        for load in loads
        if load.manifest.file is not None
        and wanted in (load.manifest.file, PurePosixPath(load.manifest.file).name)
    ]
    if len(by_file) == 1:
        return by_file[0]
    if by_file:
        ids = ", ".join(f"{load.load_id} ({load.manifest.file})" for load in by_file)
        raise RetractError(
            f"'{target}' names {len(by_file)} landed loads: {ids}. Retract one by its load id."
        )
    raise RetractError(
        f"no landed load has the id or file '{target}'. Load ids and files are in "
        "audit/loads.parquet and the run summaries (`lagesbild status` shows the last ones)."
    )


def retract(
    settings: Settings,
    target: str,
    reason: str,
    by: str | None = None,
    run_date: date | None = None,
) -> Retracted:
    """Retract one landed load (see the module docstring). Holds the build lock."""
    from flows.nightly import clean_datasets  # the datasets a run cleans, in its order

    if not reason.strip():
        raise RetractError("say why the load is retracted: --reason '…' (kept in the audit)")
    paths = settings.paths
    with run_lock(settings.data_dir, settings.run_lock_timeout):
        sweep_leftovers(paths)
        loads = every_load(paths.landing)
        done = retractions(paths.audit)
        finished = done.filter(
            (pl.col("status") == "retracted")
            & ((pl.col("load_id") == target) | (pl.col("file") == target))
        )
        try:
            load = find_load(loads, target)
        except RetractError:
            if finished.height:  # asked again once it is done: say so, change nothing
                row = finished.row(-1, named=True)
                log.info("load %s (%s) is retracted already", row["load_id"], row["file"])
                return Retracted(row["load_id"], row["file"], "", [], [])
            raise
        reference = load_reference(paths.drop, paths.clean, settings.remap_areas)
        owners = [
            dataset
            for dataset in clean_datasets(settings, reference, run_date or today())
            if any(mine.load_id == load.load_id for mine in dataset.loads())
        ]
        if not owners:  # e.g. SS 12000 persons: a lookup, no clean rows of its own
            raise RetractError(
                f"load {load.load_id} ({load.manifest.origin}) has no clean rows of its own "
                "(no dataset cleans it), so it cannot be retracted; a damaged one is moved out "
                "of landing and fetched again (`lagesbild verify` names the command)"
            )
        run_id = f"retract-{datetime.now(UTC):%Y%m%dT%H%M%S}"
        if load.load_id not in set(done.get_column("load_id").to_list()):
            begin(paths.audit, load, reason, by or current_user(), run_id)
        outcome = CleanOutcome()
        for dataset in owners:  # one, unless a load were read by two datasets
            outcome += clean_dataset(
                dataset,
                paths,
                settings.expectations_dir,
                run_id,
                settings.max_quarantine_share,
            )
        if outcome.gate_failed:
            failures = [
                f"{g.partition}: {o.expectation} on {o.column}"
                for g in outcome.gates
                for o in g.critical_failures
            ]
            raise RetractError(
                f"the periods of {load.manifest.origin} rebuilt without it fail the gate "
                f"({'; '.join(failures)}): nothing was replaced and the retraction is not "
                "finished; the next run tries again"
            )
        return Retracted(
            load.load_id,
            load.manifest.origin,
            ", ".join(dataset.name for dataset in owners),
            load.manifest.partitions,
            outcome.partitions_replaced,
        )


def begin(audit_dir: Path, load: Load, reason: str, by: str, run_id: str) -> None:
    """The first step: the audit says `retracting` (who, when, why); nothing else changed."""
    now = datetime.now(UTC)
    manifest = load.manifest
    append_audit(
        audit_dir,
        [
            {
                "run_id": run_id,
                "source": manifest.source,
                "dataset": manifest.dataset,
                "load_id": load.load_id,
                "file": manifest.origin,
                "periods": ",".join(manifest.partitions),
                "status": "retracting",
                "reason": reason.strip(),
                "by": by,
                "sha256": manifest.sha256,
                "started_at": now,
                "finished_at": now,
            }
        ],
    )
    log.info("retracting %s (load %s): %s", manifest.origin, load.load_id, reason.strip())
