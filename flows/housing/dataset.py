"""Housing companies' work-order exports through the layers: drop folder → landing → clean.

`land_new_exports` lands every new file (by sha256) under
`landing/housing_export/<layout>/period=<first year>/load_id=<id>/`.

`clean_pending_loads` runs when a load is pending (landed, not yet cleaned according to the
audit), the property register changed (a property's area decides its orders' area) or a
backfill asks for one of the dataset's years. It rebuilds the whole clean dataset
from every landed load: an order's latest version may come from any load, and a re-export may
move an order to another year, so "latest version wins" is decided over all loads at once.
That is cheap: a housing company has a few thousand work orders a year. Each year partition
(`clean/housing_work_orders/period=<year of reported_date>/`) is gated first; only when no
critical expectation failed are the partitions swapped in (years that no longer hold orders
are removed) and the quarantine written. The audit gets one row per pending load.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from connectors.drop_files import Landed, LayoutError
from connectors.housing_export.layouts import HousingLayout, load_layouts
from connectors.housing_export.resources import ROW_NUMBER, SOURCE, read_new_exports
from flows import gate
from flows.clean_attendance import parse_date
from flows.clean_housing import DATASET, LoadResult, split_load, work_orders, years_of
from flows.reference import Reference, ReferenceError
from flows.storage import (
    DATA_FILE,
    CleanOutcome,
    Manifest,
    append_audit,
    land_export,
    landed_loads,
    read_audit,
    write_parquet_atomic,
)
from lagesbild.settings import Settings

SUITE = "housing_work_orders.json"
LOADS_SUITE = "housing_loads.json"
PROPERTIES_FILE = "properties.csv"


def land_new_exports(settings: Settings, log: Callable[[str], None]) -> list[Manifest]:
    paths = settings.paths
    layouts = load_layouts(settings.housing_layouts)
    landed = Landed.of(m for m, _ in landed_loads(paths.landing, SOURCE))
    matched = {p for layout in layouts.values() for p in paths.drop.glob(layout.files)}
    for stray in sorted(set((paths.drop / "housing").rglob("*")) - matched):
        if stray.is_file():
            log(
                f"WARNING {stray.relative_to(paths.drop)} matches no housing layout's "
                "`files` pattern and was not loaded"
            )
    manifests = []
    for batch in read_new_exports(paths.drop, layouts, landed):
        layout = batch.file.layout
        column = layout.source_column("reported_date")
        dates = batch.rows.select(
            parse_date(pl.col(column).str.strip_chars(), layout.date_formats)
        ).to_series()
        periods = years_of(dates) or ["unknown"]
        manifest = land_export(paths.landing, paths.drop, SOURCE, batch, periods)
        manifests.append(manifest)
        log(f"landed {manifest.file}: {manifest.rows:,} rows, years {', '.join(periods)}")
    return manifests


def load_properties(drop_dir: Path, areas: pl.DataFrame, companies: dict[str, str]) -> pl.DataFrame:
    """The property register (company, property_id → area_code, apartments), checked.

    `companies` maps each company with landed exports to one of its layouts (for messages).
    """
    path = drop_dir / "reference" / PROPERTIES_FILE
    if not path.exists():
        raise ReferenceError(
            f"{path} is missing: housing exports of {sorted(companies)} need the property "
            "register (company,property_id,property_name,area_code,apartments); see README "
            "'Housing companies'"
        )
    frame = pl.read_csv(path, infer_schema=False).with_columns(pl.all().fill_null(""))
    columns = ["company", "property_id", "area_code", "apartments"]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ReferenceError(f"{PROPERTIES_FILE}: missing columns {missing}")
    frame = frame.select(pl.col(columns).str.strip_chars()).with_row_index("line", offset=2)
    bad = frame.filter(
        (pl.col("company") == "")
        | (pl.col("property_id") == "")
        | ~pl.col("apartments").str.contains(r"^\d+$")
    )
    if bad.height:
        raise ReferenceError(
            f"{PROPERTIES_FILE}: empty company/property_id or apartments not a whole number "
            f"on lines {bad['line'].head(5).to_list()}"
        )
    repeated = frame.filter(pl.struct("company", "property_id").is_duplicated())
    if repeated.height:
        raise ReferenceError(
            f"{PROPERTIES_FILE}: company + property_id repeated on lines "
            f"{repeated['line'].head(5).to_list()}"
        )
    unknown = frame.join(areas.select("area_code"), on="area_code", how="anti")
    if unknown.height:
        raise ReferenceError(
            f"{PROPERTIES_FILE}: area codes missing in areas.csv on lines "
            f"{unknown['line'].head(5).to_list()}"
        )
    registered = set(frame["company"].to_list())
    for company, layout in sorted(companies.items()):
        if company not in registered:
            raise ReferenceError(
                f"{PROPERTIES_FILE} has no properties of company '{company}' (layout "
                f"'{layout}'): add the company's property register, one row per property "
                "with its area code and number of apartments"
            )
    properties = frame.drop("line").with_columns(pl.col("apartments").cast(pl.Int64))
    return properties.sort("company", "property_id")


def _split(manifest: Manifest, folder: Path, layouts: dict[str, HousingLayout], properties):
    layout = layouts.get(manifest.dataset)
    if layout is None:
        raise LayoutError(
            f"landed load {manifest.load_id} uses housing layout '{manifest.dataset}', which "
            "is no longer in the layout file; restore it (landed data is never rewritten)"
        )
    return split_load(pl.read_parquet(folder / DATA_FILE), layout, properties, manifest.load_id)


def _reject(result: LoadResult, folder: Path, load_id: str, rejected: pl.DataFrame) -> LoadResult:
    """Move this load's credit-note rows rejected over all loads from clean to quarantine."""
    mine = rejected.filter(pl.col("load_id") == load_id).drop("load_id")
    if mine.is_empty():
        return result
    moved = (
        pl.read_parquet(folder / DATA_FILE)
        .join(mine, on=ROW_NUMBER)
        .with_columns(load_id=pl.lit(load_id))
    )
    return LoadResult(
        result.versions.join(mine, on=ROW_NUMBER, how="anti"),
        pl.concat([result.quarantine, moved.select(result.quarantine.columns)]).sort(ROW_NUMBER),
        result.received,
        result.duplicates,
    )


def clean_pending_loads(
    settings: Settings,
    reference: Reference,
    run_id: str,
    log: Callable[[str], None],
    rebuild_periods: frozenset[str] = frozenset(),
) -> CleanOutcome:
    """Rebuild the clean work orders when a load is new, the property register changed or
    a backfill touches their years; account the new loads."""
    paths = settings.paths
    outcome = CleanOutcome()
    loads = landed_loads(paths.landing, SOURCE)
    audit = read_audit(paths.audit)
    cleaned = set(audit.filter(pl.col("status") == "cleaned").get_column("load_id").to_list())
    pending = [(m, f) for m, f in loads if m.load_id not in cleaned]
    landed_years = {p for m, _ in loads for p in m.periods}
    asked = {p[:4] for p in rebuild_periods} & landed_years
    if not loads:
        log("housing: no work-order exports landed")
        return outcome
    layouts = load_layouts(settings.housing_layouts)
    companies = {layouts[m.dataset].company: m.dataset for m, _ in loads if m.dataset in layouts}
    properties = load_properties(paths.drop, reference.areas, companies)
    register = paths.clean / "reference" / "properties.parquet"
    register_changed = not register.exists() or not pl.read_parquet(register).equals(properties)
    if not pending and not asked and not register_changed:
        log("housing: no new loads to clean")
        return outcome
    started, clock = datetime.now(UTC), time.perf_counter()

    results = {m.load_id: _split(m, f, layouts, properties) for m, f in loads}
    built = work_orders(pl.concat([r.versions for r in results.values()]))
    for manifest, folder in loads:
        results[manifest.load_id] = _reject(
            results[manifest.load_id], folder, manifest.load_id, built.rejected
        )
    orders = built.orders.with_columns(period=pl.col("reported_date").dt.year().cast(pl.String))

    root = paths.clean / DATASET
    for leftover in root.parent.glob(f".{DATASET}-staging-*"):  # from a crashed run
        shutil.rmtree(leftover, ignore_errors=True)
    staging = root.parent / f".{DATASET}-staging-{run_id}"
    years = sorted(orders["period"].unique().to_list())
    parameters = {
        "known_area_codes": sorted(reference.areas["area_code"].to_list()),
        "known_companies": sorted({layout.company for layout in layouts.values()}),
    }
    for year in years:
        partition = orders.filter(pl.col("period") == year).drop("period")
        result = gate.validate_frame(
            housing_frame(partition, year),
            settings.expectations_dir / SUITE,
            parameters,
            partition=f"period={year}",
            report_dir=paths.validation / run_id,
        )
        outcome.gates.append(result)
        write_parquet_atomic(partition, staging / f"period={year}" / "part-0.parquet")
        log(f"gate {DATASET} period={year}: {result.status} ({partition.height:,} work orders)")
    if pending:
        outcome.gates.append(
            gate.validate_loads(
                settings.expectations_dir / LOADS_SUITE,
                pending,
                results,
                settings.max_quarantine_share,
                paths.validation / run_id,
            )
        )

    if not outcome.gate_failed:
        for year in years:  # each file swap is atomic; a year is never missing
            target = root / f"period={year}" / "part-0.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / f"period={year}" / "part-0.parquet", target)
        for gone in root.glob("period=*"):  # every order of that year moved elsewhere
            if gone.name.removeprefix("period=") not in years:
                shutil.rmtree(gone)
        outcome.partitions_replaced = [f"{DATASET}/period={y}" for y in years]
        write_parquet_atomic(properties, register)  # the areas these orders were given
        for manifest, _ in loads:  # rejections may change with later loads: write all
            _write_quarantine(paths.quarantine, manifest, results[manifest.load_id])
    shutil.rmtree(staging, ignore_errors=True)

    finished = datetime.now(UTC)
    for manifest, _ in pending:
        result = results[manifest.load_id]
        too_many = result.quarantined > settings.max_quarantine_share * max(result.received, 1)
        for reason, count in result.quarantine.group_by("reason").len().iter_rows():
            outcome.quarantine_reasons[reason] = outcome.quarantine_reasons.get(reason, 0) + count
        outcome.loads.append(
            {
                "run_id": run_id,
                "source": SOURCE,
                "dataset": manifest.dataset,
                "load_id": manifest.load_id,
                "file": manifest.file,
                "periods": ",".join(manifest.periods),
                "rows_received": result.received,
                "rows_clean": result.clean,
                "rows_quarantined": result.quarantined,
                "rows_duplicate": result.duplicates,
                "status": "gate_failed" if outcome.gate_failed else "cleaned",
                "gate": "failed"
                if too_many or outcome.gate_failed
                else ("passed_with_warnings" if _warned(outcome) else "passed"),
                "started_at": started,
                "finished_at": finished,
                "seconds": round(time.perf_counter() - clock, 3),
            }
        )
    append_audit(paths.audit, outcome.loads)
    return outcome


def _warned(outcome: CleanOutcome) -> bool:
    return any(g.warnings for g in outcome.gates)


def _write_quarantine(root: Path, manifest: Manifest, result: LoadResult) -> None:
    path = (
        root
        / DATASET
        / f"period={manifest.period}"
        / f"load_id={manifest.load_id}"
        / "quarantine.parquet"
    )
    if result.quarantined:
        write_parquet_atomic(result.quarantine, path)
    else:
        path.unlink(missing_ok=True)


def housing_frame(orders: pl.DataFrame, year: str) -> pl.DataFrame:
    """The clean frame plus the derived columns the suite checks."""
    return orders.with_columns(
        reported_year=pl.col("reported_date").dt.year().cast(pl.String),
        partition_year=pl.lit(year),
        cost_excl_vat_sek=pl.col("cost_excl_vat_ore") / 100,
        days_to_complete=(pl.col("completed_date") - pl.col("reported_date")).dt.total_days(),
    )
