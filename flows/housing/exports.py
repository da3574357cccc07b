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
    return land_exports(settings, SOURCE, layouts, read_new_exports, "reported_date", "year")
