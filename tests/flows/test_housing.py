"""Housing work orders end to end: the nightly flow on the generated municipality.

Expected mart figures are computed here, independently of the pipeline, from the generator's
ground truth (every order as its exports leave it: latest version plus credit notes) and the
reference files, with the rules the marts document (cancelled orders left out, vandalism =
every category but not_vandalism, suppression below 5 orders plus secondary suppression).
"""

from __future__ import annotations

import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest

from flows.layers.audit import read_audit
from flows.nightly import nightly
from lagesbild.settings import PROJECT_ROOT, Settings
from tests.flows.conftest import copy_baseline, pipeline_at

# `make test-scenarios`: housing exports corrected and re-exported over several runs
pytestmark = pytest.mark.scenario

MIN_ORDERS = 5
VANDALISM = ["graffiti", "broken_glass", "fire", "doors_and_locks", "other_vandalism"]


def marts(paths, served: bool = True) -> dict[str, pl.DataFrame]:
    """The served vandalism marts, or (served=False) dbt's in the work warehouse: the marts'
    own rules before the publish's linked suppression (flows/disclosure.py)."""
    con = duckdb.connect(str(paths.marts_db if served else paths.work_db), read_only=True)
    try:
        return {
            name: con.sql(f"select * from marts.{name}").pl()
            for name in (
                "mart_vandalism_area_year",
                "mart_vandalism_area_month",
                "mart_work_orders_category_year",
                "mart_vandalism_municipality_year",
            )
        }
    finally:
        con.close()


def file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


@pytest.fixture(scope="module")
def housing_env(baseline, tmp_path_factory):
    """A copy of the baseline run (data and drop folder), and a layouts file the tests may
    extend (at first the same as the default the baseline ran with)."""
    root = tmp_path_factory.mktemp("housing")
    copy = copy_baseline(baseline, root)
    layouts = root / "layouts.yml"
    shutil.copy(PROJECT_ROOT / "connectors/housing_export/layouts.yml", layouts)
    with pipeline_at(copy["data"], copy["drop"], housing_layouts=str(layouts)):
        yield {**copy, "layouts": layouts}


@pytest.fixture(scope="module")
def first_run(housing_env):
    """The session's baseline run, in this module's copy."""
    return Settings().paths


# -- the independent computation ------------------------------------------------------------


def truth_orders(municipality) -> pl.DataFrame:
    return pl.read_parquet(municipality["truth"] / "housing_orders.parquet")


def reference(drop: Path) -> tuple[list[str], dict[str, int]]:
    areas = pl.read_csv(drop / "reference/areas.csv", infer_schema=False)["area_code"].to_list()
    properties = pl.read_csv(drop / "reference/properties.csv", infer_schema=False)
    apartments = properties.group_by("area_code").agg(pl.col("apartments").cast(int).sum())
    return sorted(areas), dict(apartments.iter_rows())


def secondary(parts: dict[str, int], total: int, order: dict[str, tuple]) -> set[str]:
    """Parts hidden: those below the threshold, plus one more when exactly one is hidden
    while the total is published (the published part first by `order`)."""
    hidden = {k for k, n in parts.items() if n < MIN_ORDERS}
    if len(hidden) == 1 and total >= MIN_ORDERS:
        hidden.add(min((k for k in parts if k not in hidden), key=lambda k: order[k]))
    return hidden


def a_year_before(day: date) -> date:
    return (
        day.replace(year=day.year - 1, day=28)
        if (day.month, day.day) == (2, 29)
        else (day.replace(year=day.year - 1))
    )


def expected_area_year(orders: pl.DataFrame, drop: Path) -> dict[tuple, dict]:
    areas, apartments = reference(drop)
    live = orders.filter(pl.col("status").ne_missing("cancelled"))
    vandal = live.filter(pl.col("category") != "not_vandalism")
    last = live["reported_date"].max()
    years = sorted(set(live["reported_date"].dt.year().to_list()))
    rows: dict[tuple, dict] = {}
    for year in years:
        through = last if last.year == year else date(year, 12, 31)
        now = vandal.filter(pl.col("reported_date").dt.year() == year)
        before = vandal.filter(
            (pl.col("reported_date").dt.year() == year - 1)
            & (pl.col("reported_date") <= a_year_before(through))
        )

        def sums(frame, area=None):
            if area is not None:
                frame = frame.filter(pl.col("area_code") == area)
            return frame.height, sum(frame["cost_excl_vat_ore"].to_list())

        cells = {a: (sums(now, a), sums(before, a)) for a in areas}
        cells["1299"] = (sums(now), sums(before))
        hidden = secondary(
            {a: cells[a][0][0] for a in areas},
            cells["1299"][0][0],
            {a: (cells[a][0][0], a) for a in areas},
        ) | ({"1299"} if cells["1299"][0][0] < MIN_ORDERS else set())
        hidden_before = secondary(
            {a: cells[a][1][0] for a in areas},
            cells["1299"][1][0],
            {a: (cells[a][1][0], a) for a in areas},
        ) | ({"1299"} if cells["1299"][1][0] < MIN_ORDERS else set())
        for code, ((n, ore), (_, before_ore)) in cells.items():
            flats = sum(apartments.values()) if code == "1299" else apartments.get(code)
            has_previous = year - 1 in years
            change_hidden = has_previous and code in hidden_before
            shown = code not in hidden
            rows[(code, year)] = {
                "data_through": through,
                "vandalism_orders": n if shown else None,
                "vandalism_cost_sek": Decimal(ore) / 100 if shown else None,
                "apartments": flats,
                "cost_per_apartment_sek": ore / 100 / flats if shown and flats else None,
                "cost_change_pct": 100 * (ore - before_ore) / before_ore
                if shown and has_previous and not change_hidden and before_ore
                else None,
                "is_suppressed": not shown or change_hidden,
                # why a NULL is NULL (docs/bi-contract.md)
                "cost_per_apartment_sek_status": "withheld"
                if not shown
                else ("ok" if flats else "missing"),
                "cost_change_pct_status": "withheld"
                if not shown or change_hidden
                else ("ok" if has_previous and before_ore else "missing"),
            }
    return rows


def assert_area_year(actual: pl.DataFrame, expected: dict[tuple, dict]) -> None:
    assert actual.height == len(expected)
    for row in actual.iter_rows(named=True):
        want = expected[(row["area_code"], row["year"])]
        for column in ("data_through", "vandalism_orders", "vandalism_cost_sek", "apartments"):
            assert row[column] == want[column], (column, row, want)
        assert row["is_suppressed"] == want["is_suppressed"], (row, want)
        for column, tolerance in (("cost_per_apartment_sek", 0.005), ("cost_change_pct", 0.05)):
            assert row[f"{column}_status"] == want[f"{column}_status"], (column, row, want)
            if want[column] is None:
                assert row[column] is None, (column, row)
            else:  # published as DECIMAL: exact to its decimals
                assert abs(float(row[column]) - want[column]) <= tolerance + 1e-9, (column, row)


def expected_month(orders: pl.DataFrame, drop: Path) -> dict[tuple, tuple]:
    areas, _ = reference(drop)
    live = orders.filter(pl.col("status").ne_missing("cancelled")).with_columns(
        month=pl.col("reported_date").dt.truncate("1mo")
    )
    vandal = live.filter(pl.col("category") != "not_vandalism")
    rows = {}
    for month in sorted(set(live["month"].to_list())):
        in_month = vandal.filter(pl.col("month") == month)
        cells = {}
        for area in areas:
            frame = in_month.filter(pl.col("area_code") == area)
            cells[area] = (frame.height, sum(frame["cost_excl_vat_ore"].to_list()))
        total = (in_month.height, sum(in_month["cost_excl_vat_ore"].to_list()))
        hidden = secondary(
            {a: c[0] for a, c in cells.items()}, total[0], {a: (c[0], a) for a, c in cells.items()}
        )
        for area, (n, ore) in [*cells.items(), ("1299", total)]:
            shown = area not in hidden and n >= MIN_ORDERS
            rows[(area, month)] = (n, Decimal(ore) / 100) if shown else (None, None)
    return rows


def expected_categories(orders: pl.DataFrame) -> dict[tuple, tuple]:
    live = orders.filter(pl.col("status").ne_missing("cancelled"))
    rows = {}
    for year in sorted(set(live["reported_date"].dt.year().to_list())):
        in_year = live.filter(pl.col("reported_date").dt.year() == year)
        cells = {}
        for category in [*VANDALISM, "not_vandalism"]:
            frame = in_year.filter(pl.col("category") == category)
            cells[category] = (frame.height, sum(frame["cost_excl_vat_ore"].to_list()))
        vandal = in_year.filter(pl.col("category") != "not_vandalism")
        cells["all_vandalism"] = (vandal.height, sum(vandal["cost_excl_vat_ore"].to_list()))
        hidden = secondary(
            {c: cells[c][0] for c in VANDALISM},
            cells["all_vandalism"][0],
            {c: (cells[c][0], i) for i, c in enumerate(VANDALISM)},
        )
        for category, (n, ore) in cells.items():
            shown = category not in hidden and n >= MIN_ORDERS
            rows[(year, category)] = (n, Decimal(ore) / 100) if shown else (None, None)
    return rows


def assert_served_is_dbt_with_linked_suppression(paths) -> None:
    """Every served cell is dbt's, or withheld (with `is_suppressed`); the attacker finds
    nothing."""
    from flows import disclosure

    built, served = marts(paths, served=False), marts(paths)
    for name, frame in served.items():
        assert frame.height == built[name].height, name
        measures = [c for c in frame.columns if c.endswith(("orders", "_sek", "_pct"))]
        keys = [c for c in frame.columns if c not in measures and not c.endswith("status")]
        keys.remove("is_suppressed")
        joined = frame.join(built[name], on=keys, how="left", suffix="_built", nulls_equal=True)
        for row in joined.iter_rows(named=True):
            for column in measures:
                if row[column] is None and row[f"{column}_built"] is not None:
                    assert row["is_suppressed"], (name, column, row)
                else:
                    assert row[column] == row[f"{column}_built"], (name, column, row)
    con = duckdb.connect(str(paths.marts_db), read_only=True)
    try:
        assert disclosure.audit(con).passed
    finally:
        con.close()


def assert_marts_match(paths, orders: pl.DataFrame, drop: Path) -> None:
    assert_served_is_dbt_with_linked_suppression(paths)
    published = marts(paths, served=False)
    assert_area_year(published["mart_vandalism_area_year"], expected_area_year(orders, drop))
    months = published["mart_vandalism_area_month"]
    want = expected_month(orders, drop)
    assert months.height == len(want)
    for row in months.iter_rows(named=True):
        key = (row["area_code"], row["month"])
        assert (row["vandalism_orders"], row["vandalism_cost_sek"]) == want[key], row
        assert row["is_suppressed"] == (want[key][0] is None), row
    categories = published["mart_work_orders_category_year"]
    want = expected_categories(orders)
    assert categories.height == len(want)
    for row in categories.iter_rows(named=True):
        assert (row["orders"], row["cost_sek"]) == want[(row["year"], row["category"])], row
    town = published["mart_vandalism_municipality_year"]
    area_year = published["mart_vandalism_area_year"].filter(pl.col("scope") == "municipality")
    assert town.height == area_year.height
    for row in town.iter_rows(named=True):
        total = area_year.filter(pl.col("year") == row["year"]).row(0, named=True)
        assert row["vandalism_cost_sek"] == total["vandalism_cost_sek"]
        assert row["not_vandalism_orders"] == want[(row["year"], "not_vandalism")][0]


# -- the tests ------------------------------------------------------------------------------


def test_vandalism_marts_match_the_truth(first_run, municipality):
    orders = truth_orders(municipality)
    assert_marts_match(first_run, orders, municipality["drop"])
    # the test sees real figures, suppressed cells and a change against the previous year
    area_year = marts(first_run, served=False)["mart_vandalism_area_year"]
    assert area_year["is_suppressed"].any() and (~area_year["is_suppressed"]).sum() > 8
    assert area_year["cost_change_pct"].is_not_null().sum() >= 4


def test_row_accounting_and_quarantine_reasons(first_run, municipality):
    drop = municipality["drop"]
    audit = read_audit(first_run.audit).filter(pl.col("source") == "housing_export")
    files = sorted(str(p.relative_to(drop)) for p in drop.glob("housing/*/*"))
    assert sorted(audit["file"].to_list()) == files
    assert (
        audit["rows_received"]
        == audit["rows_clean"] + audit["rows_quarantined"] + audit["rows_duplicate"]
    ).all()
    assert set(audit["status"]) == {"cleaned"}
    dirty = pl.read_csv(municipality["truth"] / "housing_dirty_rows.csv")
    assert audit["rows_duplicate"].sum() == dirty.filter(pl.col("kind") == "duplicate").height
    quarantine = pl.concat(
        [pl.read_parquet(p) for p in first_run.quarantine.glob("housing_work_orders/**/*.parquet")],
        how="diagonal",
    )
    located = (
        quarantine.join(audit.select("load_id", "file"), on="load_id")
        .select("file", row_number="_source_row", kind="reason")
        .sort(pl.all())
    )
    expected = dirty.filter(pl.col("kind") != "duplicate").sort(pl.all())
    assert located.to_dicts() == expected.to_dicts()
    assert set(expected["kind"]) == {  # every dirty kind was exercised
        "missing_order_id",
        "invalid_date",
        "invalid_amount",
        "unmapped_category",
        "unknown_property",
        "negative_total",
        "implausible_amount",
        "completed_before_reported",
    }
    # the clean grain holds each order once, though most orders came in several exports
    clean = pl.read_parquet(first_run.clean / "housing_work_orders/period=*/*.parquet")
    assert clean.height == truth_orders(municipality).height
    assert audit["rows_clean"].sum() > 2 * clean.height


def test_no_published_order_count_under_the_threshold(first_run):
    for name, frame in marts(first_run).items():
        for column in [c for c in frame.columns if c.endswith("orders")]:
            assert frame.filter(pl.col(column) < MIN_ORDERS).is_empty(), (name, column)
            hidden = frame.filter(pl.col(column).is_null())
            assert hidden["is_suppressed"].all(), (name, column)


NEW_COMPANY_LAYOUT = """
ekdala_lokaler:
  company: ekdalalokaler
  description: the municipality's own premises company, added by configuration only
  files: housing/lokaler/*.csv
  format: csv
  encoding: utf-8
  separator: ","
  date_formats: ["%d/%m/%Y"]
  columns:
    Order: order_id
    Datum: reported_date
    Byggnad: property_id
    Kategori: category
    Belopp: cost
  categories:
    Klotter: graffiti
    Krossat glas: broken_glass
    Annat: not_vandalism
  costs_include_vat: false
"""


def test_corrections_reexports_and_a_new_company(first_run, housing_env, municipality):
    """A corrected cost replaces the old one, a credit note lowers it, a re-exported month
    counts once, and a new company's layout is only configuration."""
    drop = housing_env["drop"]
    orders = truth_orders(municipality)
    ekdalahem = orders.filter(
        (pl.col("company") == "ekdalahem")
        & (pl.col("status") != "cancelled")
        & (pl.col("category") != "not_vandalism")
        & (pl.col("reported_date") >= date(2025, 1, 1))
        & (pl.col("cost_excl_vat_ore") > 100_00)
    ).sort("order_id")
    corrected, credited = ekdalahem.row(0, named=True), ekdalahem.row(1, named=True)

    header = (drop / "housing/ekdalahem/arbetsorder_2025-01.csv").read_bytes().split(b"\r\n")[0]

    def fast2(order, credit, cost, modified):
        return (
            f"{order['order_id']};F;{order['reported_date']};{order['reported_date']};{modified};"
            f"{order['property_id']};01;A;ÖVERF;Klotter;;;{credit};{cost}"
        ).encode("cp1252")

    (drop / "housing/ekdalahem/arbetsorder_2025-11.csv").write_bytes(
        b"\r\n".join(
            [
                header,
                fast2(corrected, "", "10 000,00 kr", "2025-11-05 10:00"),  # 8 000 excl. VAT
                fast2(credited, "KN-TEST-1", "-100,00 kr", "2025-11-06 10:00"),  # -80 excl.
            ]
        )
    )
    september = drop / "housing/ekdalahem/arbetsorder_2025-09.csv"
    shutil.copy(september, drop / "housing/ekdalahem/arbetsorder_2025-09_kopia.csv")  # same bytes
    (drop / "housing/ekdalahem/arbetsorder_2025-09_igen.csv").write_bytes(
        september.read_bytes() + b"\r\n"  # the same rows again, another file
    )
    with housing_env["layouts"].open("a", encoding="utf-8") as handle:
        handle.write(NEW_COMPANY_LAYOUT)
    with (drop / "reference/properties.csv").open("a", encoding="utf-8") as handle:
        handle.write("ekdalalokaler,Stadshuset,Stadshuset,1299C0010,0\n")
    (drop / "housing/lokaler").mkdir()
    (drop / "housing/lokaler/export.csv").write_text(
        "Order,Datum,Byggnad,Kategori,Belopp\n"
        "L-1,03/02/2025,Stadshuset,Klotter,1000.00\n"
        "L-2,15/05/2025,Stadshuset,Krossat glas,2000.50\n"
        "L-3,16/05/2025,Stadshuset,Klotter,300\n"
        "L-4,17/05/2025,Stadshuset,Annat,450\n",
        encoding="utf-8",
    )

    state = nightly(return_state=True)
    assert state.is_completed(), state.message

    new = pl.DataFrame(
        {
            "company": ["ekdalalokaler"] * 4,
            "order_id": ["L-1", "L-2", "L-3", "L-4"],
            "reported_date": [date(2025, 2, 3), date(2025, 5, 15), date(2025, 5, 16)]
            + [date(2025, 5, 17)],
            "property_id": ["Stadshuset"] * 4,
            "area_code": ["1299C0010"] * 4,
            "category": ["graffiti", "broken_glass", "graffiti", "not_vandalism"],
            "status": [None] * 4,
            "cost_excl_vat_ore": [100000, 200050, 30000, 45000],
        },
        schema=orders.schema,
    )
    expected = pl.concat(
        [
            orders.with_columns(
                cost_excl_vat_ore=pl.when(pl.col("order_id") == corrected["order_id"])
                .then(800000)
                .when(pl.col("order_id") == credited["order_id"])
                .then(pl.col("cost_excl_vat_ore") - 8000)
                .otherwise(pl.col("cost_excl_vat_ore")),
                # the corrected version is phrased 'Klotter': its category wins too
                category=pl.when(pl.col("order_id") == corrected["order_id"])
                .then(pl.lit("graffiti"))
                .otherwise(pl.col("category")),
            ),
            new,
        ]
    )
    assert_marts_match(first_run, expected, drop)
    AFTER_CORRECTIONS["orders"] = expected
    landed = read_audit(first_run.audit).filter(pl.col("source") == "housing_export")
    assert "housing/ekdalahem/arbetsorder_2025-09_kopia.csv" not in landed["file"].to_list()
    assert "housing/ekdalahem/arbetsorder_2025-09_igen.csv" in landed["file"].to_list()


AFTER_CORRECTIONS: dict[str, pl.DataFrame] = {}


def test_a_changed_property_register_alone_rebuilds_the_work_orders(first_run, housing_env):
    drop = housing_env["drop"]
    register = drop / "reference/properties.csv"
    text = register.read_text(encoding="utf-8")
    assert "Söder 1:7,Söderslätt,1299A0010" in text
    register.write_text(
        text.replace("Söder 1:7,Söderslätt,1299A0010", "Söder 1:7,Söderslätt,1299B0010")
    )
    audit_before = read_audit(first_run.audit).height

    state = nightly(return_state=True)
    assert state.is_completed(), state.message

    moved = AFTER_CORRECTIONS["orders"].with_columns(
        area_code=pl.when(pl.col("property_id") == "Söder 1:7")
        .then(pl.lit("1299B0010"))
        .otherwise(pl.col("area_code"))
    )
    assert_marts_match(first_run, moved, drop)
    assert read_audit(first_run.audit).height == audit_before  # no load accounted again


def test_a_changed_date_format_blocks_the_run_and_keeps_the_marts(first_run, housing_env):
    drop = housing_env["drop"]
    lines = (drop / "housing/ekdalahem/arbetsorder_2025-10.csv").read_bytes().split(b"\r\n")
    changed = [lines[0]] + [
        line.replace(b";2025-10-", b";10/2025/") for line in lines[1:] if line
    ]  # every registration date now unreadable
    (drop / "housing/ekdalahem/arbetsorder_2025-10_nytt_format.csv").write_bytes(
        b"\r\n".join(changed)
    )
    served = first_run.marts_db.read_bytes()
    clean = file_bytes(first_run.clean / "housing_work_orders")

    state = nightly(return_state=True)

    assert state.is_failed() and "quarantine_share" in str(state.message)
    assert first_run.marts_db.read_bytes() == served
    assert file_bytes(first_run.clean / "housing_work_orders") == clean
    audit = read_audit(first_run.audit)
    failed = audit.filter(pl.col("file").str.contains("nytt_format"))
    assert failed.select("status", "gate").rows() == [("gate_failed", "failed")]
