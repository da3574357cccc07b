"""PxWeb tables at any level: a catalogue entry with an area dimension, with none (a national
or county table) or with the area fixed in the selection, on SCB's real JSON-stat2 payload
(TAB638, tests/connectors/samples/pxweb)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from connectors.pxweb.jsonstat import read_jsonstat2
from flows.statistics.catalogue import Catalogue
from flows.statistics.rules import pxweb_release
from lagesbild.settings import PROJECT_ROOT

SAMPLE = Path(__file__).resolve().parents[1] / "connectors/samples/pxweb"
TAB638 = json.loads((SAMPLE / "scb_v2_TAB638_data_jsonstat2.json").read_text(encoding="utf-8"))
FETCHED = datetime(2026, 4, 1, tzinfo=UTC)


def catalogue(**entry) -> Catalogue:
    raw = yaml.safe_load((PROJECT_ROOT / "catalogue/indicators.yml").read_text(encoding="utf-8"))
    indicator = {
        "id": "newborn_boys",
        "source": "pxweb",
        "api": "scb",
        "table": "TAB638",
        "contents": "BE0101N1",
        "title": "Folkmängd, 0 år, män",
        "unit": "persons",
        "higher_is_better": True,
        **entry,
    }
    return Catalogue.model_validate({**raw, "indicators": [indicator], "own": "1299"})


def release(cat: Catalogue, body: dict):
    frame = read_jsonstat2(body).frame
    meta = {"indicator": "newborn_boys", "updated": body["updated"]}
    return pxweb_release(frame, meta, "r1", FETCHED, cat)


def without_region(body: dict) -> dict:
    """TAB638 as a table without a region variable returns it (SCB's national tables, e.g.
    TAB5974 'Folkmängd efter inrikes/utrikes född, ålder och kön', have none): the same cells
    with the Region dimension taken out of id, size and dimension."""
    body = copy.deepcopy(body)
    position = body["id"].index("Region")
    del body["id"][position], body["size"][position], body["dimension"]["Region"]
    return body


def test_a_table_with_an_area_dimension_maps_riket_to_0000():
    cat = catalogue(
        dimensions={"area": "Region", "sex": "Kon", "period": "Tid"},
        sex_codes={"1": "M"},
        selection={"Civilstand": ["OG"], "Alder": ["0"]},
    )
    result = release(cat, TAB638)
    assert result.rows.select("area_code", "period", "sex", "value").rows() == [
        ("0000", 2024, "M", 50937.0)
    ]
    assert result.quarantine.is_empty() and result.received == 1


def test_a_national_table_without_an_area_dimension():
    cat = catalogue(dimensions={"sex": "Kon", "period": "Tid"}, sex_codes={"1": "M"})
    result = release(cat, without_region(TAB638))
    assert result.rows.select("area_code", "period", "sex", "value").rows() == [
        ("0000", 2024, "M", 50937.0)
    ]


def test_a_county_table_and_a_fixed_region_in_the_selection():
    """The area variable fixed in `selection` and the table's one area named by `area`;
    no sex dimension: the values are for both sexes."""
    cat = catalogue(dimensions={"period": "Tid"}, area="0012",
                    selection={"Region": ["00"], "Kon": ["1"]})  # fmt: skip
    result = release(cat, TAB638)
    assert result.rows.select("area_code", "period", "sex", "value").rows() == [
        ("0012", 2024, "T", 50937.0)
    ]


def test_catalogue_errors_name_the_entry():
    with pytest.raises(ValueError, match=r"newborn_boys: `area: 9999` is none of the catalogue"):
        catalogue(dimensions={"period": "Tid"}, area="9999")
    with pytest.raises(ValueError, match=r"either `dimensions\.area`"):
        catalogue(dimensions={"area": "Region", "period": "Tid"}, area="0000")
    with pytest.raises(ValueError, match=r"needs dimensions\.period"):
        catalogue(dimensions={})
