"""Attendance exports from the drop folder → landing (`landing/attendance_export/<layout>/…`).

Every file not landed yet (by sha256, after the quick check of name, size and time) is read
by its layout, pseudonymised in the connector and landed with the months its lessons cover.
"""

from __future__ import annotations

import polars as pl

from connectors.attendance_export.layouts import load_layouts
from connectors.attendance_export.resources import SOURCE, read_new_exports
from flows.attendance.rules import periods_of
from flows.layers.landing import land_drop_files, warn_unmatched
from flows.layers.manifest import Manifest
from flows.layers.parsing import parse_date
from lagesbild.settings import Settings


def land_new_exports(settings: Settings, key: bytes) -> list[Manifest]:
    paths = settings.paths
    layouts = load_layouts(settings.attendance_layouts)
    warn_unmatched(paths.drop, "attendance", (layout.files for layout in layouts.values()), SOURCE)

    def months(batch) -> list[str]:
        layout = batch.file.layout
        column = pl.col(layout.source_column("date")).str.strip_chars()
        return periods_of(batch.rows.select(parse_date(column, layout.date_formats)).to_series())

    return land_drop_files(
        paths.landing,
        paths.drop,
        SOURCE,
        lambda landed: read_new_exports(paths.drop, layouts, landed, key),
        months,
        "month",
        pseudonymised=lambda batch: {batch.file.layout.source_column("personal_id"): "pupil_key"},
    )
