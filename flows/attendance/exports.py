"""Attendance exports from the drop folder → landing (`landing/attendance_export/<layout>/…`):
each new file read by its layout, personal ids pseudonymised in the connector, landed with the
months its lessons cover.
"""

from __future__ import annotations

from connectors.attendance_export.layouts import load_layouts
from connectors.attendance_export.resources import SOURCE, read_new_exports
from flows.layers.landing import land_exports
from flows.layers.manifest import Manifest
from lagesbild.settings import Settings


def land_new_exports(settings: Settings, key: bytes) -> list[Manifest]:
    layouts = load_layouts(settings.attendance_layouts)
    drop = settings.paths.drop
    return land_exports(
        settings.paths,
        SOURCE,
        layouts,
        lambda landed: read_new_exports(drop, layouts, landed, key),
        date_field="date",
        kind="month",
        pseudonymised="personal_id",
    )
