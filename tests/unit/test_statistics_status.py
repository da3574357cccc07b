"""A preliminary Kolada value turns final when Kolada fixes it, though the value itself does
not change: the fetch lands a release with the new publication dates only."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from demo import kolada_server
from demo.servers import serve
from flows.layers.clean import clean_dataset
from flows.statistics import landing as statistics
from flows.statistics.dataset import IndicatorValues
from lagesbild.settings import Settings
from tests.flows.conftest import pipeline_at


def clean_values(settings: Settings, run_id: str):
    paths = settings.paths
    return clean_dataset(IndicatorValues(settings), paths, settings.expectations_dir, run_id, 0.2)


def test_values_turn_final_when_the_publication_date_passes(tmp_path):
    state = kolada_server.KoladaState()
    with (
        serve(kolada_server.create_app(state)) as url,
        pipeline_at(
            tmp_path / "data",
            tmp_path / "drop",
            statistics__enabled="true",
            statistics__kolada_url=f"{url}/v3",
        ),  # fmt: skip
    ):
        settings = Settings()
        catalogue = statistics.catalogue_of(settings)
        assert len(statistics._land_kolada(settings, catalogue)) == 1
        clean_values(settings, "r1")
        clean = settings.paths.clean / "statistics" / "indicator_values.parquet"
        first = pl.read_parquet(clean)
        preliminary = first.filter(pl.col("status") == "preliminary")
        # U07452 (T) and N02797 (K, M, T), 2025, for the 8 municipalities of the catalogue
        assert preliminary.height == (1 + 3) * 8
        assert set(preliminary["period"]) == {2025}

        assert statistics._land_kolada(settings, catalogue) == []  # nothing changed
        state.data.today = date.today() - timedelta(days=61)  # final publication: yesterday
        (release,) = statistics._land_kolada(settings, catalogue)
        assert release.rows == 0
        outcome = clean_values(settings, "r2")
        assert [(r["rows_received"], r["status"]) for r in outcome.loads] == [(0, "cleaned")]
        second = pl.read_parquet(clean)
        assert set(second["status"]) == {"final"} and second.height == first.height
