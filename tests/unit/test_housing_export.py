"""Housing work-order exports: reading, typing, quarantine reasons, latest version wins,
credit notes, and a new company taken on by configuration only (no Prefect, no warehouse)."""

from datetime import date
from pathlib import Path

import polars as pl
import pytest
import xlsxwriter

from connectors.drop_files import Landed, LayoutError
from connectors.housing_export.layouts import load_layouts
from connectors.housing_export.resources import discover, read_export
from flows.housing.properties import load_properties
from flows.housing.rules import split_load, work_orders
from flows.layers.parsing import parse_amount_ore
from flows.layers.reference import ReferenceError
from lagesbild.settings import PROJECT_ROOT

LAYOUTS = load_layouts(PROJECT_ROOT / "connectors" / "housing_export" / "layouts.yml")
FAST2 = LAYOUTS["ekdalahem_fast2"]
HEADER = (
    "Arbetsorder;Typ;Registrerad;Utförd;Ändrad;Fastighet;Byggnad;Uppgång;Status;Fras;"
    "Beskrivning;Anmälare;Kreditnota;Kostnad inkl moms"
)
PROPERTIES = pl.DataFrame(
    {
        "company": ["ekdalahem", "ekdalahem", "ekbo"],
        "property_id": ["Eken 1", "Björken 12", "EKBO-011"],
        "area_code": ["1299C0010", "1299C0040", "1299C0030"],
        "apartments": [240, 310, 150],
    }
)


def row(
    order="100001",
    reported="2025-03-04",
    completed="2025-03-09",
    modified="2025-03-09 14:22",
    prop="Eken 1",
    status="UTFÖRD",
    phrase="Klotter",
    credit="",
    cost="1 250,00 kr",
) -> str:
    return (
        f"{order};F;{reported};{completed};{modified};{prop};01;B;{status};{phrase};"
        f"Klotter i trapphus;Anna Andersson 070-1234567;{credit};{cost}"
    )


def fast2_file(drop: Path, name: str, rows: list[str]):
    path = drop / "housing/ekdalahem" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("\r\n".join([HEADER, *rows]).encode("cp1252"))
    return next(f for f in discover(drop, {"ekdalahem_fast2": FAST2}, Landed()) if f.path == path)


def load(drop: Path, name: str, rows: list[str], load_id: str):
    batch = read_export(fast2_file(drop, name, rows))
    return split_load(batch.rows, FAST2, PROPERTIES, load_id)


@pytest.mark.parametrize(
    ("text", "ore"),
    [
        ("1 234,50 kr", 123450),
        ("-590,60 kr", -59060),
        ("1\u00a0234,50", 123450),
        ("1.234,50", 123450),
        ("1234.5", 123450),
        ("12 345:-", 1234500),
        ("0", 0),
        ("ca 1 500 kr", None),
        ("12,50,0", None),
        ("1e5", None),
        ("", None),
    ],
)
def test_swedish_amounts(text, ore):
    assert pl.select(parse_amount_ore(pl.lit(text))).item() == ore


def test_fast2_csv_vat_removed_and_personal_columns_dropped(tmp_path):
    batch = read_export(fast2_file(tmp_path, "a.csv", [row(cost="1 250,00 kr")]))
    assert batch.dropped_columns == ["Typ", "Beskrivning", "Anmälare"]
    assert "Anna Andersson" not in batch.rows.write_csv()
    result = split_load(batch.rows, FAST2, PROPERTIES, "L1")
    assert (result.received, result.clean, result.quarantined, result.duplicates) == (1, 1, 0, 0)
    version = result.rows.row(0, named=True)
    assert version["cost_excl_vat_ore"] == 100000  # 1 250,00 incl. 25 % VAT = 1 000,00 excl.
    assert (version["category"], version["status"], version["area_code"]) == (
        "graffiti",
        "completed",
        "1299C0010",
    )
    assert version["reported_date"] == date(2025, 3, 4)


def test_each_dirty_kind_is_quarantined_with_its_reason(tmp_path):
    rows = {
        None: row(order="1"),
        "missing_order_id": row(order=""),
        "invalid_date": row(order="3", reported="2025-02-30"),
        "invalid_amount": row(order="4", cost="ca 1 500 kr"),
        "unmapped_category": row(order="5", phrase="Skadedjur"),
        "unmapped_status": row(order="6", status="OKÄND"),
        "unknown_property": row(order="7", prop="Okänd 1:1"),
        "negative_total": row(order="8", cost="-1 250,00 kr"),
        "positive_credit_note": row(order="1", credit="KN1", cost="100,00 kr"),
        "implausible_amount": row(order="10", cost="12 500 000,00 kr"),
        "completed_before_reported": row(order="11", completed="2025-03-01"),
    }
    lines = [*rows.values(), row(order="1"), row(order="1", cost="999,00 kr")]
    result = load(tmp_path, "dirty.csv", lines, "L1")
    # the exact copy of order 1 is a duplicate; a copy with another cost is a conflict
    assert (result.received, result.clean, result.duplicates) == (13, 1, 1)
    assert result.quarantine["reason"].to_list() == [
        *[k for k in rows if k],
        "conflicting_duplicate",
    ]
    assert result.quarantine["_source_row"].to_list() == [*range(2, 12), 13]
    assert result.quarantine["Kostnad inkl moms"][2] == "ca 1 500 kr"  # original values kept


def test_latest_version_wins_and_reexports_do_not_double_count(tmp_path):
    march = load(tmp_path, "m.csv", [row(status="REG", completed="", cost="0,00 kr")], "L1")
    april = load(
        tmp_path,
        "a.csv",
        [row(modified="2025-04-02 09:00", cost="2 500,00 kr"), row(order="100002")],
        "L2",
    )
    # a re-export of March arrives last: its older version must not win
    again = load(tmp_path, "r.csv", [row(status="REG", completed="", cost="0,00 kr")], "L3")
    built = work_orders(pl.concat([march.rows, april.rows, again.rows]))
    orders = built.orders.sort("order_id")
    assert orders["order_id"].to_list() == ["100001", "100002"]
    assert orders["cost_excl_vat_ore"].to_list() == [200000, 100000]
    assert orders["status"].to_list() == ["completed", "completed"]
    assert orders["versions"].to_list() == [2, 1]


def test_without_modified_at_the_latest_load_wins(tmp_path):
    layout = LAYOUTS["ekbo_vitec"]
    for name, cost in (("q1.xlsx", 1000.5), ("q2.xlsx", 1500)):
        path = tmp_path / "housing/ekbo" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        book = xlsxwriter.Workbook(path)
        sheet = book.add_worksheet("Arbetsordrar")
        sheet.write_row(0, 0, [c for c in layout.columns] + layout.ignore)
        sheet.write_row(1, 0, ["EB-25-00001", "04.03.2025", "", "EKBO-011", "1", "GK", "Klar"])
        sheet.write_number(1, 8, cost)
        book.close()
    files = discover(tmp_path, {"ekbo_vitec": layout}, Landed())
    results = [
        split_load(read_export(f).rows, layout, PROPERTIES, f"L{i}") for i, f in enumerate(files)
    ]
    built = work_orders(pl.concat([r.rows for r in results]))
    assert built.orders.select("cost_excl_vat_ore", "category", "reported_date").row(0) == (
        150000,
        "broken_glass",
        date(2025, 3, 4),
    )


def test_credit_notes_correct_the_cost(tmp_path):
    order = load(tmp_path, "a.csv", [row(order="1"), row(order="2")], "L1")
    credits = load(
        tmp_path,
        "b.csv",
        [
            row(order="1", credit="KN1", modified="2025-04-01 10:00", cost="-250,00 kr"),
            row(order="2", credit="KN2", cost="-2 000,00 kr"),  # more than the order cost
            row(order="3", credit="KN3", cost="-100,00 kr"),  # no version of order 3 at all
        ],
        "L2",
    )
    # the same credit note re-exported counts once
    again = load(tmp_path, "c.csv", [row(order="1", credit="KN1", cost="-250,00 kr")], "L3")
    built = work_orders(pl.concat([order.rows, credits.rows, again.rows]))
    assert built.orders.select("order_id", "cost_excl_vat_ore", "credit_notes").rows() == [
        ("1", 80000, 1),
        ("2", 100000, 0),  # keeps its cost; the credit note goes to quarantine
    ]
    assert built.rejected.sort("load_id", "_source_row").rows() == [
        ("L2", 2, "negative_total"),
        ("L2", 3, "credit_note_without_order"),
    ]


def test_a_changed_export_gives_one_clear_error(tmp_path):
    path = tmp_path / "housing/ekdalahem/x.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes((HEADER.replace("Fras", "Felkod") + "\r\n").encode("cp1252"))
    file = discover(tmp_path, {"ekdalahem_fast2": FAST2}, Landed())[0]
    with pytest.raises(LayoutError, match=r"missing columns \['Fras'\]; unknown columns"):
        read_export(file)


def test_property_register_errors_name_the_company_and_file(tmp_path):
    areas = pl.DataFrame({"area_code": ["1299C0010"]})
    with pytest.raises(ReferenceError, match=r"properties\.csv is missing"):
        load_properties(tmp_path, areas, {"ekdalahem": "ekdalahem_fast2"})
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference/properties.csv").write_text(
        "company,property_id,property_name,area_code,apartments\nekbo,EKBO-011,x,1299C0010,150\n"
    )
    with pytest.raises(ReferenceError, match="no properties of company 'ekdalahem'"):
        load_properties(tmp_path, areas, {"ekdalahem": "ekdalahem_fast2"})
    (tmp_path / "reference/properties.csv").write_text(
        "company,property_id,property_name,area_code,apartments\nekbo,EKBO-011,x,1299Z9999,150\n"
    )
    with pytest.raises(ReferenceError, match=r"area codes missing in areas\.csv on lines \[2\]"):
        load_properties(tmp_path, areas, {"ekbo": "ekbo_vitec"})


def test_the_documented_layout_example_is_a_valid_layout(tmp_path):
    doc = (PROJECT_ROOT / "docs/sources/housing-exports.md").read_text(encoding="utf-8")
    section = doc.split("# Housing companies' work orders")[1]
    example = section.split("```yaml\n")[1].split("```")[0]
    path = tmp_path / "layouts.yml"
    path.write_text("\n".join(line.removeprefix("   ") for line in example.splitlines()))
    layout = load_layouts(path)["hfab_fast2"]
    assert (layout.company, layout.costs_include_vat, layout.categories["Klotter"]) == (
        "hfab",
        True,
        "graffiti",
    )


def test_labels_match_without_case_and_blanks(tmp_path):
    result = load(
        tmp_path, "l.csv", [row(phrase="  dörr/LÅS   skadegörelse ", status="utförd")], "L"
    )
    assert result.rows.select("category", "status").row(0) == ("doors_and_locks", "completed")
