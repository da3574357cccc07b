"""Housing companies' work-order exports from the drop folder → landing
(`landing/housing_export/<layout>/period=<first year>/…`), one load per new file (sha256),
with the years of its reported dates.
"""

from __future__ import annotations

import polars as pl

from connectors.housing_export.layouts import load_layouts
from connectors.housing_export.resources import SOURCE, read_new_exports
from flows.housing.rules import years_of
from flows.layers.landing import land_drop_files, warn_unmatched
from flows.layers.manifest import Manifest
from flows.layers.parsing import parse_date
from lagesbild.settings import Settings


def land_new_exports(settings: Settings) -> list[Manifest]:
    paths = settings.paths
    layouts = load_layouts(settings.housing_layouts)
    warn_unmatched(paths.drop, "housing", (layout.files for layout in layouts.values()), SOURCE)

    def years(batch) -> list[str]:
        layout = batch.file.layout
        column = pl.col(layout.source_column("reported_date")).str.strip_chars()
        return years_of(batch.rows.select(parse_date(column, layout.date_formats)).to_series())

    return land_drop_files(
        paths.landing,
        paths.drop,
        SOURCE,
        lambda landed: read_new_exports(paths.drop, layouts, landed),
        years,
        "year",
    )
