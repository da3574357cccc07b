"""The housing work orders' rules for the clean layer (`flows.layers.clean`).

Loads: every landed work-order export (`housing_export`, one layout per company system).
The dataset is rebuilt whole whenever a load is pending, the property register changed (a
property's area decides its orders' area) or a backfill touches its years: an order's latest
version may come from any load and a re-export may move an order to another year, so "latest
version wins" is decided over all loads at once. That is cheap: a housing company has a few
thousand work orders a year. Partitions: one per year of the reported date,
`clean/housing_work_orders/period=YYYY/part-0.parquet`, one row per company × order; years
that no longer hold orders are removed.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from connectors.drop_files import LayoutError
from connectors.housing_export.layouts import load_layouts
from connectors.housing_export.resources import SOURCE
from flows.housing.properties import load_properties
from flows.housing.rules import CLEAN_SCHEMA, split_load, work_orders
from flows.layers.clean import Combined, Dataset, LoadResult, Partition
from flows.layers.files import write_parquet_atomic
from flows.layers.landing import Load, landed_loads
from flows.layers.reference import Reference
from flows.layers.storage import read_parquet
from lagesbild.settings import Settings


class HousingWorkOrders(Dataset):
    name = folder = "housing_work_orders"
    suite = "housing_work_orders.json"
    loads_suite = "housing_loads.json"
    whole = True

    def __init__(self, settings: Settings, reference: Reference, run_date: date):
        self.reference = reference
        self.run_date = run_date  # orders reported or completed after it are quarantined
        self.layouts = load_layouts(settings.housing_layouts)
        self._loads = landed_loads(settings.paths.landing, SOURCE)
        self.register = settings.paths.clean / "reference" / "properties.parquet"
        companies = {
            self.layouts[load.manifest.dataset].company: load.manifest.dataset
            for load in self._loads
            if load.manifest.dataset in self.layouts
        }
        # no exports, no register needed yet
        self.properties = (
            load_properties(settings.paths.drop, reference.areas, companies)
            if self._loads
            else None
        )

    def loads(self) -> list[Load]:
        return self._loads

    def stale(self) -> bool:
        """The register changed since the clean orders were built."""
        if self.properties is None:
            return False
        return not self.register.exists() or not read_parquet(self.register).equals(self.properties)

    def split(self, load: Load) -> LoadResult:
        layout = self.layouts.get(load.manifest.dataset)
        if layout is None:
            raise LayoutError(
                f"landed load {load.load_id} uses housing layout '{load.manifest.dataset}', "
                "which is no longer in the layout file; restore it (landed data is never "
                "rewritten)"
            )
        return split_load(load.read(), layout, self.properties, load.load_id, self.run_date)

    def combine(self, period: str, rows: pl.DataFrame) -> Combined:
        built = work_orders(rows)
        orders = built.orders.with_columns(period=pl.col("reported_date").dt.year().cast(pl.String))
        parameters = {
            "known_area_codes": sorted(self.reference.areas["area_code"].to_list()),
            "known_companies": sorted({layout.company for layout in self.layouts.values()}),
        }
        partitions = []
        for year in sorted(orders["period"].unique().to_list()):
            partition = orders.filter(pl.col("period") == year).drop("period")
            partitions.append(
                Partition(
                    f"period={year}/part-0.parquet",
                    partition.select(list(CLEAN_SCHEMA)),
                    parameters,
                    checked=checked_frame(partition, year),
                )
            )
        return Combined(partitions, rejected=built.rejected)

    def after_swap(self) -> None:
        write_parquet_atomic(self.properties, self.register)  # the areas orders were given


def checked_frame(orders: pl.DataFrame, year: str) -> pl.DataFrame:
    """The clean frame plus the derived columns the suite checks."""
    return orders.with_columns(
        reported_year=pl.col("reported_date").dt.year().cast(pl.String),
        partition_year=pl.lit(year),
        cost_excl_vat_sek=pl.col("cost_excl_vat_ore") / 100,
        days_to_complete=(pl.col("completed_date") - pl.col("reported_date")).dt.total_days(),
    )
