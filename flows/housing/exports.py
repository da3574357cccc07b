"""Housing companies' work-order exports from the drop folder → landing
(`landing/housing_export/<layout>/…`), one load per new file, with the years of its reported
dates.
"""

from __future__ import annotations

from connectors.housing_export.layouts import load_layouts
from connectors.housing_export.resources import SOURCE, read_new_exports
from flows.layers.landing import land_exports
from flows.layers.manifest import Manifest
from lagesbild.settings import Settings


def land_new_exports(settings: Settings) -> list[Manifest]:
    layouts = load_layouts(settings.housing_layouts)
    drop = settings.paths.drop
    return land_exports(
        settings.paths,
        SOURCE,
        layouts,
        lambda landed: read_new_exports(drop, layouts, landed),
        date_field="reported_date",
        kind="year",
    )
