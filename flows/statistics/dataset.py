"""The statistics datasets' rules for the clean layer (`flows.layers.clean`).

Two datasets, each rebuilt whole from every landed release (they are small: thousands of
rows; a release may revise any period): `indicator_values` (Kolada, PxWeb indicator tables
and survey files → `clean/statistics/indicator_values.parquet`) and `population` (the SCB
population table → `clean/statistics/population.parquet`). Every release stays (the
history, `release_id` = the load); a value a release repeats unchanged is a duplicate.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from flows.layers.clean import Combined, Dataset, LoadResult, Partition
from flows.layers.landing import Load, landed_loads
from flows.statistics.landing import CLEAN_DIR, catalogue_of
from flows.statistics.rules import (
    KEY,
    POPULATION_SCHEMA,
    VALUES_SCHEMA,
    ReleaseRows,
    history,
    kolada_release,
    population_release,
    pxweb_release,
    survey_release,
)
from lagesbild.settings import Settings, today

SOURCES = ("kolada", "pxweb", "survey")
POPULATION_KEY = ["area_code", "age", "sex", "year"]


def _fetched_at(load: Load) -> datetime:
    return datetime.fromisoformat(load.manifest.extracted_at).astimezone(UTC)


class _Statistics(Dataset):
    folder = CLEAN_DIR
    loads_suite = "statistics_loads.json"
    whole = True
    schema: dict
    key: list[str]

    def __init__(self, settings: Settings):
        landing = settings.paths.landing
        self.catalogue = catalogue_of(settings)
        self.file = settings.paths.clean / CLEAN_DIR / f"{self.name}.parquet"
        every = sorted(
            (load for source in SOURCES for load in landed_loads(landing, source)),
            key=lambda load: load.load_id,
        )
        kolada = [load for load in every if load.manifest.source == "kolada"]
        self.newest_kolada = kolada[-1] if kolada else None
        self._loads = [load for load in every if self.holds(load)]

    def holds(self, load: Load) -> bool:
        return (load.manifest.dataset == "population") == (self.name == "population")

    def loads(self) -> list[Load]:
        return self._loads

    def stale(self) -> bool:
        return not self.file.exists()

    def release(self, load: Load, raw: pl.DataFrame) -> ReleaseRows:
        raise NotImplementedError

    def split(self, load: Load) -> LoadResult:
        release = self.release(load, load.read())
        return LoadResult(
            release.rows,
            release.quarantine.with_columns(load_id=pl.lit(load.load_id)),
            release.received,
            release.rows.height,
            0,  # repeats of earlier releases are decided over all of them (combine)
            list(load.manifest.partitions),
        )

    def combine(self, period: str, rows: pl.DataFrame) -> Combined:
        kept, repeats = history([rows] if rows.height else [], self.key)
        kept = kept if kept.height else pl.DataFrame(schema=self.schema)
        duplicates = (
            dict(repeats.group_by("release_id").len().iter_rows()) if repeats.height else {}
        )
        partition = Partition(f"{self.name}.parquet", kept, *self.checked(kept))
        return Combined([partition], duplicates=duplicates)

    def checked(self, frame: pl.DataFrame) -> tuple[dict, pl.DataFrame | None]:
        """The suite's parameters, and the frame it validates (None: the frame itself)."""
        return {}, None


class IndicatorValues(_Statistics):
    name, suite = "indicator_values", "indicator_values.json"
    schema, key = VALUES_SCHEMA, KEY

    def release(self, load: Load, raw: pl.DataFrame) -> ReleaseRows:
        manifest, fetched = load.manifest, _fetched_at(load)
        if manifest.source == "kolada":
            newest = self.newest_kolada
            assert newest is not None
            return kolada_release(
                raw,
                newest.manifest.release.get("kpi_metadata", {}),
                today(_fetched_at(newest)),  # the day of the fetch in Sweden
                load.load_id,
                fetched,
                self.catalogue,
            )
        if manifest.source == "survey":
            return survey_release(raw, load.load_id, fetched, self.catalogue)
        if manifest.dataset not in {i.id for i in self.catalogue.of("pxweb")}:
            return ReleaseRows(
                pl.DataFrame(schema=VALUES_SCHEMA),
                raw.select(pl.all().cast(pl.String), reason=pl.lit("indicator_not_in_catalogue")),
                raw.height,
            )
        return pxweb_release(raw, manifest.release, load.load_id, fetched, self.catalogue)

    def checked(self, frame: pl.DataFrame) -> tuple[dict, pl.DataFrame | None]:
        indicators = self.catalogue.indicators
        percent = [i.id for i in indicators if i.unit == "percent"]
        checked = frame.with_columns(
            percent_value=pl.when(pl.col("indicator_id").is_in(percent)).then(pl.col("value"))
        )
        return {"indicator_ids": [i.id for i in indicators]}, checked


class Population(_Statistics):
    name, suite = "population", "population.json"
    schema, key = POPULATION_SCHEMA, POPULATION_KEY

    def release(self, load: Load, raw: pl.DataFrame) -> ReleaseRows:
        return population_release(
            raw, load.manifest.release, load.load_id, _fetched_at(load), self.catalogue
        )
