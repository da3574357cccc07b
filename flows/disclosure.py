"""Disclosure control across the published marts: the attacker's audit and linked suppression.

dbt withholds small cells mart by mart (macros/suppression.sql: primary, nested bands, the
secondary rule against one total). Cells are linked across marts, though: school × grade ×
month pupils add up to area × term pupils, area × month orders to area × year orders, areas to
the municipality, and the area profile repeats the area × year vandalism figures. This module
writes those linear relations down, the way an attacker who reads only the served marts
would, and computes by linear programming (HiGHS, `highspy`) the feasible interval of every
withheld value (docs/marts.md, *Small cells*):

* `audit(con)` reads the marts through a DuckDB connection and returns an `Audit`: every
  withheld count, magnitude and nested band with its interval and whether it is protected;
* `protect(con)` is the linked (fourth) suppression step of the publish: as long as the
  audit finds an unprotected cell, it withholds one more published cell of a relation that
  pins it (the smallest), and writes the result into the new served file before the swap.

The result is a pure function of the published cell values: cells are read as exact integers
and decimals and kept in one total order (mart, row key, measure), the solver's floating
bounds are rounded to what the attacker knows they are (whole persons and orders, öre and
minutes) before any threshold is compared, and every choice between cells is made by value,
then by that order. Row order, hash order and solver tie-breaks cannot change what is withheld.

Why an LP of our own and not Tau-Argus (`pytauargus`): the package drives the Tau-Argus
Windows/Java binary through batch files, which is not installed here and not packaged for
Linux servers; the relations between our marts are few families of sums, so HiGHS (its own
Python package, the open-source solver Tau-Argus uses too) solves each connected group of
withheld cells in milliseconds.
Absence rates are audited too (`audit_rates`): a published rate gives its row's absent
minutes to within its rounding, the rows' absent minutes add up to the area × term's, and a
withheld rate whose minutes are published must keep an interval like a magnitude's; the rates
of one more row are withheld until it does (`linked_rate_suppression`).
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import duckdb

log = logging.getLogger(__name__)

# The protection each withheld magnitude (minutes, kronor) must keep: the attacker's interval
# is at least this share of its upper end wide (exact: compared as decimals).
MAGNITUDE_PROTECTION = Decimal("0.25")
CENT = Decimal("0.01")  # magnitudes are published to the öre / hundredth of a minute
UNBOUNDED = Decimal("Infinity")

Cell = tuple[str, tuple, str]  # (mart, row key, measure)
Value = int | Decimal  # counts are integers, magnitudes decimals: never floats

# Per mart: the row key, its count and magnitude measures, and which columns go NULL (and
# which `_status` columns become 'withheld') when a measure of the row is withheld.
_SCHOOL_ROW = {
    "null": [
        "pupils",
        "offered_minutes",
        "valid_absence_pct",
        "invalid_absence_pct",
        "other_absence_pct",
        "total_absence_pct",
    ],
    "status": ["absence_pct_status"],
}
_VANDALISM_YEAR_ROW = {
    "null": [
        "vandalism_orders",
        "vandalism_cost_sek",
        "cost_per_apartment_sek",
        "cost_per_1000_inhabitants_sek",
        "cost_change_pct",
    ],
    "status": [
        "vandalism_orders_status",
        "cost_per_apartment_sek_status",
        "cost_per_1000_inhabitants_sek_status",
        "cost_change_pct_status",
    ],
}


def _together(measures: list[str], group: dict) -> dict[str, dict]:
    """The same group for each measure: withholding one withholds the row's others."""
    return {measure: group for measure in measures}


MARTS: dict[str, dict] = {
    "mart_attendance_school_grade_month": {
        "key": ["school_unit_code", "grade", "month"],
        "counts": ["pupils"],
        "magnitudes": ["offered_minutes"],
        "groups": {"pupils": _SCHOOL_ROW, "offered_minutes": _SCHOOL_ROW},
    },
    "mart_attendance_area_term": {
        "key": ["area_code", "term"],
        "counts": ["pupils"],
        "magnitudes": ["offered_minutes"],
        "groups": {"pupils": _SCHOOL_ROW, "offered_minutes": _SCHOOL_ROW},
    },
    "mart_problematic_absence_area_term": {
        "key": ["scope", "area_code", "term", "threshold_pct"],
        "counts": ["pupils", "pupils_at_or_above"],
        "magnitudes": [],
        "groups": {
            # the share is at / pupils: it would give either back from the other
            "pupils": {"null": ["pupils", "share_at_or_above_pct"], "status": []},
            "pupils_at_or_above": {
                "null": ["pupils_at_or_above", "share_at_or_above_pct"],
                "status": ["share_at_or_above_pct_status"],
            },
        },
    },
    "mart_vandalism_area_month": {
        "key": ["scope", "area_code", "month"],
        "counts": ["vandalism_orders"],
        "magnitudes": ["vandalism_cost_sek"],
        "groups": _together(
            ["vandalism_orders", "vandalism_cost_sek"],
            {"null": ["vandalism_orders", "vandalism_cost_sek"], "status": []},
        ),
    },
    "mart_vandalism_area_year": {
        "key": ["scope", "area_code", "year"],
        "counts": ["vandalism_orders"],
        "magnitudes": ["vandalism_cost_sek"],
        "groups": _together(["vandalism_orders", "vandalism_cost_sek"], _VANDALISM_YEAR_ROW),
    },
    "mart_vandalism_municipality_year": {
        "key": ["year"],
        "counts": ["vandalism_orders"],
        "magnitudes": ["vandalism_cost_sek"],
        "groups": _together(["vandalism_orders", "vandalism_cost_sek"], _VANDALISM_YEAR_ROW),
    },
    "mart_work_orders_category_year": {
        "key": ["year", "category"],
        "counts": ["orders"],
        "magnitudes": ["cost_sek"],
        "groups": _together(["orders", "cost_sek"], {"null": ["orders", "cost_sek"], "status": []}),
    },
    "mart_area_profile": {
        "key": ["area_code", "year"],
        "status": {"vandalism_cost_sek": "vandalism_orders_status"},
        "counts": ["vandalism_orders"],
        "magnitudes": ["vandalism_cost_sek"],
        "groups": _together(
            ["vandalism_orders", "vandalism_cost_sek"],
            {
                "null": [
                    "vandalism_orders",
                    "vandalism_cost_sek",
                    "cost_per_apartment_sek",
                    "cost_per_1000_inhabitants_sek",
                ],
                "status": [
                    "vandalism_orders_status",
                    "cost_per_apartment_sek_status",
                    "cost_per_1000_inhabitants_sek_status",
                ],
            },
        ),
    },
}


@dataclass
class Relation:
    """sum(coefficient * cell) == 0 (`equal`) or <= 0 (`at_most`): one thing an attacker
    knows about the cells, published or not."""

    family: str
    terms: list[tuple[Cell, int]]
    equal: bool = True


@dataclass
class Quantity:
    """What must stay protected: a withheld cell, or a nested band (a difference of cells).
    Its interval is exact: whole numbers for counts, öre for magnitudes (UNBOUNDED above)."""

    label: str
    kind: str  # "count" or "magnitude"
    terms: list[tuple[Cell, int]]
    lower: Decimal = Decimal(0)
    upper: Decimal = UNBOUNDED
    protected: bool = True


@dataclass
class Audit:
    cells: int  # count and magnitude cells, published or withheld (rates not counted)
    withheld: int  # withheld counts, magnitudes and (from `audit`) absence rates
    quantities: list[Quantity] = field(default_factory=list)
    dropped_families: list[str] = field(default_factory=list)
    min_persons: int = 5

    @property
    def failures(self) -> list[Quantity]:
        return [q for q in self.quantities if not q.protected]

    @property
    def passed(self) -> bool:
        return not self.failures

    def narrowest(self) -> Quantity | None:
        counts = [q for q in self.quantities if q.kind == "count"]
        return min(counts, key=lambda q: (q.upper - q.lower, q.label), default=None)


# --- reading the marts ------------------------------------------------------------------


def _tables(con: duckdb.DuckDBPyConnection, catalog: str | None) -> set[str]:
    where = f"and table_catalog = '{catalog}' " if catalog else ""
    rows = con.execute(
        f"select table_name from information_schema.tables where table_schema = 'main' {where}"
    ).fetchall()
    return {r[0] for r in rows}


def _qualified(table: str, catalog: str | None) -> str:
    return f'"{catalog}".main."{table}"' if catalog else f'main."{table}"'


def _columns(con: duckdb.DuckDBPyConnection, table: str, catalog: str | None) -> set[str]:
    where = "and table_catalog = ?" if catalog else ""
    rows = con.execute(
        "select column_name from information_schema.columns "
        f"where table_schema = 'main' and table_name = ? {where}",
        [table, catalog] if catalog else [table],
    ).fetchall()
    return {r[0] for r in rows}


def _is_count(cell: Cell) -> bool:
    return cell[2] in MARTS[cell[0]]["counts"]


def _exact(value: object, count: bool) -> Value:
    """A published number as the attacker reads it: an integer count or a decimal to the öre
    (a DOUBLE column is read through its shortest decimal text, never its binary noise)."""
    if count:
        return int(value)
    if isinstance(value, Decimal):
        return value
    return Decimal(str(value)).quantize(CENT)


def _key_order(part: object) -> tuple:
    # NULL keys first; a key column holds one type, so values compare among themselves
    return (0, "") if part is None else (1, part)


def cell_order(cell: Cell) -> tuple:
    """The one total order of cells: mart, then its row key column by column, then measure."""
    table, key, measure = cell
    return (table, tuple(_key_order(k) for k in key), measure)


def read_values(
    con: duckdb.DuckDBPyConnection, catalog: str | None = None
) -> dict[Cell, Value | None]:
    """Every count and magnitude cell of the marts this module knows, in `cell_order`: None
    when withheld. A NULL that means no data (`<measure>_status` 'missing', or a row not
    suppressed) is no cell at all."""
    values: dict[Cell, Value | None] = {}
    present = _tables(con, catalog)
    for table, spec in MARTS.items():
        if table not in present:
            continue
        available = _columns(con, table, catalog)
        measures = spec["counts"] + spec["magnitudes"]
        withheld = []
        for measure in measures:
            status = spec.get("status", {}).get(measure, f"{measure}_status")
            if status in available:
                withheld.append(f"coalesce(\"{status}\" = 'withheld', false)")
            else:
                withheld.append("coalesce(is_suppressed, false)")
        columns = ", ".join([f'"{c}"' for c in spec["key"] + measures] + withheld)
        width = len(spec["key"])
        for row in con.execute(f"select {columns} from {_qualified(table, catalog)}").fetchall():
            key = tuple(row[:width])
            for i, measure in enumerate(measures):
                value, is_withheld = row[width + i], row[width + len(measures) + i]
                if value is not None:
                    values[(table, key, measure)] = _exact(value, measure in spec["counts"])
                elif is_withheld:
                    values[(table, key, measure)] = None
    # the order every later step iterates in: not the order the rows came in
    return {cell: values[cell] for cell in sorted(values, key=cell_order)}


def _term_of(month: date) -> str:
    return f"HT{month.year}" if month.month >= 7 else f"VT{month.year}"


def relations(values: dict[Cell, Value | None], school_areas: dict[str, str]) -> list[Relation]:
    """The linear relations between the marts' cells, as the marts' grains imply them."""
    result: list[Relation] = []
    by_table: dict[str, list[Cell]] = defaultdict(list)
    for cell in values:
        by_table[cell[0]].append(cell)

    def cells(table: str, measure: str) -> list[Cell]:
        return [c for c in by_table.get(table, []) if c[2] == measure]

    def total_of(family: str, total: Cell, parts: list[Cell]) -> None:
        if total in values and parts:
            result.append(Relation(family, [(total, -1)] + [(p, 1) for p in parts]))

    def same(family: str, a: Cell, b: Cell) -> None:
        if a in values and b in values:
            result.append(Relation(family, [(a, 1), (b, -1)]))

    sgm, at, pa = (
        "mart_attendance_school_grade_month",
        "mart_attendance_area_term",
        "mart_problematic_absence_area_term",
    )
    # School cells → area × term: pupils per month (an attacker's reading: pupils stay in
    # their school for the term), offered minutes summed over the term's months.
    pupils_by: dict[tuple[str, str, date], list[Cell]] = defaultdict(list)
    minutes_by: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for cell in cells(sgm, "pupils"):
        school, _, month = cell[1]
        area = school_areas.get(school)
        pupils_by[(area, _term_of(month), month)].append(cell)
        minutes_by[(area, _term_of(month))].append((sgm, cell[1], "offered_minutes"))
    for (area, term, _), parts in pupils_by.items():
        total_of(
            "school pupils per month = area × term pupils", (at, (area, term), "pupils"), parts
        )
    for (area, term), parts in minutes_by.items():
        total_of(
            "school offered minutes = area × term offered minutes",
            (at, (area, term), "offered_minutes"),
            parts,
        )
    # Problematic absence: the area's pupils are the area × term pupils; areas add up to the
    # municipality; the thresholds are nested (pupils >= at 10 % >= at 15 % ...).
    thresholds: dict[tuple, list] = defaultdict(list)
    municipality_parts: dict[tuple[str, Decimal, str], list[Cell]] = defaultdict(list)
    for cell in cells(pa, "pupils"):
        scope, area, term, threshold = cell[1]
        thresholds[(scope, area, term)].append(threshold)
        if scope == "area":
            same(
                "problematic absence pupils = area × term pupils",
                cell,
                (at, (area, term), "pupils"),
            )
            for measure in ("pupils", "pupils_at_or_above"):
                municipality_parts[(term, threshold, measure)].append((pa, cell[1], measure))
    municipality_rows = {
        (k[2], k[3]): k for (_, k, m) in cells(pa, "pupils") if k[0] == "municipality"
    }
    for (term, threshold, measure), parts in municipality_parts.items():
        key = municipality_rows.get((term, threshold))
        if key:
            total_of("areas = municipality (problematic absence)", (pa, key, measure), parts)
    for (scope, area, term), levels in thresholds.items():
        levels = sorted(levels)
        first = (pa, (scope, area, term, levels[0]), "pupils")
        for threshold in levels[1:]:
            same(
                "the same pupils at every threshold",
                first,
                (pa, (scope, area, term, threshold), "pupils"),
            )
        previous = first
        for threshold in levels:
            current = (pa, (scope, area, term, threshold), "pupils_at_or_above")
            result.append(
                Relation("nested thresholds", [(current, 1), (previous, -1)], equal=False)
            )
            previous = current

    # Vandalism: months → year, areas → municipality, municipality year → the municipality
    # mart and the all-vandalism category, categories → all vandalism, area year → profile.
    am, ay, my, cat, ap = (
        "mart_vandalism_area_month",
        "mart_vandalism_area_year",
        "mart_vandalism_municipality_year",
        "mart_work_orders_category_year",
        "mart_area_profile",
    )
    for orders, cost in (("vandalism_orders", "vandalism_cost_sek"),):
        months: dict[tuple, list[Cell]] = defaultdict(list)
        month_areas: dict[tuple, list[Cell]] = defaultdict(list)
        for measure in (orders, cost):
            for cell in cells(am, measure):
                scope, area, month = cell[1]
                months[(scope, area, month.year, measure)].append(cell)
                if scope == "area":
                    month_areas[(month, measure)].append(cell)
            year_areas: dict[tuple, list[Cell]] = defaultdict(list)
            for cell in cells(ay, measure):
                scope, area, year = cell[1]
                if scope == "area":
                    year_areas[(year, measure)].append(cell)
                    same("area year = area profile", cell, (ap, (area, year), measure))
                else:
                    same("municipality year in two marts", cell, (my, (year,), measure))
            municipality_code = next(
                (k[1] for (_, k, _) in cells(ay, measure) if k[0] == "municipality"), None
            )
            for (year, m), parts in year_areas.items():
                total_of(
                    "areas = municipality (vandalism year)",
                    (ay, ("municipality", municipality_code, year), m),
                    parts,
                )
            for (month, m), parts in month_areas.items():
                total_of(
                    "areas = municipality (vandalism month)",
                    (am, ("municipality", municipality_code, month), m),
                    parts,
                )
        for (scope, area, year, measure), parts in months.items():
            total_of("months = year (vandalism)", (ay, (scope, area, year), measure), parts)
    for measure, category_measure in (
        ("vandalism_orders", "orders"),
        ("vandalism_cost_sek", "cost_sek"),
    ):
        per_year: dict[int, list[Cell]] = defaultdict(list)
        for cell in cells(cat, category_measure):
            year, category = cell[1]
            if category == "all_vandalism":
                same("municipality year = all vandalism", (my, (year,), measure), cell)
            elif category != "not_vandalism":
                per_year[year].append(cell)
        for year, parts in per_year.items():
            total_of(
                "categories = all vandalism",
                (cat, (year, "all_vandalism"), category_measure),
                parts,
            )
    return result


def read_school_areas(con: duckdb.DuckDBPyConnection, catalog: str | None = None) -> dict:
    """school unit → area, as the school mart publishes it (one area per school: the first
    by code, should a school ever be published under two)."""
    if "mart_attendance_school_grade_month" not in _tables(con, catalog):
        return {}
    table = _qualified("mart_attendance_school_grade_month", catalog)
    return dict(
        con.execute(
            f"select school_unit_code, min(area_code) from {table} group by 1 order by 1"
        ).fetchall()
    )


# --- the attacker's linear programs -----------------------------------------------------


def _consistent_families(rels: list[Relation], values: dict[Cell, Value | None]) -> set[str]:
    """Families whose fully published relations do not hold exactly (pupils who changed
    school within a term, say) are no knowledge the attacker can rely on: they are left out."""
    broken = set()
    for rel in rels:
        if all(values.get(c) is not None for c, _ in rel.terms):
            residual = sum((values[c] * k for c, k in rel.terms), Decimal(0))
            if residual != 0 if rel.equal else residual > 0:
                broken.add(rel.family)
    return broken


def _protected(quantity: Quantity, min_persons: int) -> bool:
    """Exact: the bounds are whole numbers or öre, the thresholds integers and decimals."""
    lower, upper = quantity.lower, quantity.upper
    if lower.is_nan() or upper.is_nan():
        return False
    if quantity.kind == "count":
        # the attacker cannot tell a small cell (below min_persons) from a publishable one,
        # nor pin it closer than a small cell's own range
        return upper >= min_persons and upper - lower >= min_persons - 1
    return upper - lower >= MAGNITUDE_PROTECTION * upper


def _label(cell: Cell) -> str:
    table, key, measure = cell
    shown = ", ".join(k.isoformat() if isinstance(k, date) else str(k) for k in key)
    return f"{table}[{shown}].{measure}"


def _quantities(rels: list[Relation], values: dict[Cell, Value | None]) -> list[Quantity]:
    """Every withheld cell (in cell order), then every nested band with a withheld end (in
    the relations' order, which follows the cells')."""
    result = []
    for cell, value in values.items():
        if value is None:
            kind = "count" if _is_count(cell) else "magnitude"
            result.append(Quantity(_label(cell), kind, [(cell, 1)]))
    for rel in rels:
        # a nested band (pupils at 10 % minus pupils at 15 %) is a count of persons too
        if not rel.equal and any(values.get(c) is None for c, _ in rel.terms):
            (upper_cell, _), (lower_cell, _) = sorted(rel.terms, key=lambda t: t[1])
            label = f"band {_label(upper_cell)} - {lower_cell[2]}@{lower_cell[1][-1]}"
            result.append(Quantity(label, "count", [(upper_cell, 1), (lower_cell, -1)]))
    return result


def _exact_bound(x: float, count: bool, lower: bool) -> Decimal:
    """The solver's bound as the attacker knows it: a count is a whole number (so its bound
    rounds inwards, past the solver's noise), a magnitude lies on the öre grid."""
    if math.isinf(x):
        return -UNBOUNDED if x < 0 else UNBOUNDED
    if count:
        return Decimal(math.ceil(x - 1e-6) if lower else math.floor(x + 1e-6))
    return Decimal(repr(x)).quantize(CENT)


def _solve_group(
    cells: list[Cell],
    rels: list[Relation],
    quantities: list[Quantity],
    values: dict[Cell, Value | None],
) -> dict[str, tuple[Decimal, Decimal]]:
    """The interval of each quantity of one connected group of withheld cells: the group's
    LP is passed to HiGHS once, then minimised and maximised for each quantity in turn."""
    import highspy  # only the attacker needs it
    import numpy as np

    if not rels:  # nothing links these cells to anything published
        return {q.label: (Decimal(0), UNBOUNDED) for q in quantities}
    variables = {cell: i for i, cell in enumerate(cells)}
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = len(variables), len(rels)
    lp.col_cost_ = np.zeros(len(variables))
    lp.col_lower_ = np.zeros(len(variables))  # counts and magnitudes are never negative
    lp.col_upper_ = np.full(len(variables), highspy.kHighsInf)
    row_lower, row_upper, starts, indices, coefficients = [], [], [0], [], []
    for rel in rels:
        row: dict[int, int] = defaultdict(int)
        known = Decimal(0)
        for cell, k in rel.terms:
            if values.get(cell) is None:
                row[variables[cell]] += k
            else:
                known += k * values[cell]
        row_upper.append(float(-known))
        row_lower.append(float(-known) if rel.equal else -highspy.kHighsInf)
        for column in sorted(row):
            indices.append(column)
            coefficients.append(float(row[column]))
        starts.append(len(indices))
    lp.row_lower_, lp.row_upper_ = np.array(row_lower), np.array(row_upper)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = len(variables), len(rels)
    lp.a_matrix_.start_ = np.array(starts, dtype=np.int32)
    lp.a_matrix_.index_ = np.array(indices, dtype=np.int32)
    lp.a_matrix_.value_ = np.array(coefficients)
    solver = highspy.Highs()
    solver.setOptionValue("output_flag", False)
    # without presolve, HiGHS tells unbounded from infeasible (the bounds need to know which)
    solver.setOptionValue("presolve", "off")
    solver.setOptionValue("threads", 1)
    solver.passModel(lp)
    status = highspy.HighsModelStatus
    columns = np.arange(len(variables), dtype=np.int32)
    result = {}
    for quantity in quantities:
        objective = np.zeros(len(variables))
        for cell, k in quantity.terms:
            if values.get(cell) is None:
                objective[variables[cell]] += k
        offset = sum(
            (k * values[c] for c, k in quantity.terms if values.get(c) is not None), Decimal(0)
        )
        count = quantity.kind == "count"
        bounds = []
        for sign in (1, -1):  # the lowest value, then the highest
            solver.changeColsCost(len(variables), columns, sign * objective)
            solver.run()
            outcome = solver.getModelStatus()
            if outcome == status.kUnbounded:
                bounds.append(-UNBOUNDED if sign > 0 else UNBOUNDED)
            elif outcome == status.kOptimal:
                value = sign * solver.getInfo().objective_function_value
                bounds.append(_exact_bound(value, count, lower=sign > 0) + offset)
            else:  # the published cells contradict each other: report it, unprotected
                bounds.append(Decimal("NaN"))
        result[quantity.label] = (bounds[0], bounds[1])
    return result


def audit(
    con: duckdb.DuckDBPyConnection, catalog: str | None = None, min_persons: int = 5
) -> Audit:
    """The feasible interval of every withheld value, from the published cells alone."""
    values = read_values(con, catalog)
    school_areas = read_school_areas(con, catalog)
    result = audit_values(values, school_areas, min_persons)
    rates = read_rates(con, catalog)
    result.quantities += audit_rates(rates, values, school_areas, result.dropped_families)
    result.withheld += sum(1 for v in rates.values() if v is None)
    return result


def audit_values(
    values: dict[Cell, Value | None],
    school_areas: dict[str, str],
    min_persons: int = 5,
    solved: dict | None = None,
) -> Audit:
    """The audit of `values` (in `cell_order`, as `read_values` gives them). `solved` keeps
    the intervals of groups already solved, across the rounds of linked suppression: a group's
    linear program depends only on its cells and on the families in use."""
    values = {cell: values[cell] for cell in sorted(values, key=cell_order)}
    all_relations = relations(values, school_areas)
    dropped = _consistent_families(all_relations, values)
    rels = [
        r
        for r in all_relations
        if r.family not in dropped and any(values.get(c) is None for c, _ in r.terms)
    ]
    quantities = _quantities(rels, values)
    # Connected groups of withheld cells: each is one small LP. Each group is named by its
    # first cell in cell order, so neither the union order nor the roots matter.
    parent: dict[Cell, Cell] = {}

    def find(cell: Cell) -> Cell:
        parent.setdefault(cell, cell)
        while parent[cell] != cell:
            parent[cell] = parent[parent[cell]]
            cell = parent[cell]
        return cell

    for rel in rels:
        unknown = [c for c, _ in rel.terms if values.get(c) is None]
        for other in unknown[1:]:
            parent[find(other)] = find(unknown[0])
    groups: dict[Cell, list[Cell]] = defaultdict(list)
    for cell, value in values.items():  # in cell order: each group's cells are sorted
        if value is None:
            groups[find(cell)].append(cell)
    group_relations: dict[Cell, list[Relation]] = defaultdict(list)
    for rel in rels:
        first = next(c for c, _ in rel.terms if values.get(c) is None)
        group_relations[find(first)].append(rel)
    group_quantities: dict[Cell, list[Quantity]] = defaultdict(list)
    for quantity in quantities:
        group_quantities[find(next(c for c, _ in quantity.terms if values.get(c) is None))].append(
            quantity
        )
    solved = {} if solved is None else solved
    families = tuple(sorted(dropped))
    for root, members in groups.items():
        memo = (tuple(members), families)
        if memo not in solved:
            solved[memo] = _solve_group(
                members, group_relations[root], group_quantities[root], values
            )
        for quantity in group_quantities[root]:
            quantity.lower, quantity.upper = solved[memo][quantity.label]
            quantity.protected = _protected(quantity, min_persons)
    withheld = sum(1 for v in values.values() if v is None)
    return Audit(len(values), withheld, quantities, sorted(dropped), min_persons)


# --- linked suppression -----------------------------------------------------------------


def _row_cells(cell: Cell) -> list[Cell]:
    """The cells withheld together with `cell` (the columns its group nulls)."""
    table, key, measure = cell
    spec = MARTS[table]
    nulled = spec["groups"][measure]["null"]
    return [(table, key, m) for m in spec["counts"] + spec["magnitudes"] if m in nulled]


def _complement_order(cell: Cell, values: dict[Cell, Value | None]) -> tuple:
    """Which published cell to give up first: the smallest contribution, then cell order."""
    return (values[cell], cell_order(cell))


def _nearest_published(
    quantity: Quantity, touching: dict[Cell, list[Relation]], values: dict[Cell, Value | None]
) -> Cell:
    """The published cell to withhold for an unprotected quantity: of the relations nearest
    to it (through withheld cells), the smallest published cell, of the same kind (count or
    magnitude) when there is one. A pure function of the values: the candidates are a set
    and the choice is the minimum in a total order."""
    frontier = {c for c, _ in quantity.terms}
    seen: set[Cell] = set(frontier)
    while frontier:
        reached = {c for cell in frontier for rel in touching[cell] for c, _ in rel.terms}
        candidates = [c for c in reached if values.get(c) is not None]
        if candidates:
            same_kind = [
                c for c in candidates if _is_count(c) == (quantity.kind == "count")
            ] or candidates
            return min(same_kind, key=lambda c: _complement_order(c, values))
        frontier = reached - seen
        seen |= reached
    raise RuntimeError(
        f"disclosure control: {quantity.label} cannot be protected by withholding more "
        "cells; the marts are not published"
    )


def linked_suppression(
    values: dict[Cell, Value | None], school_areas: dict[str, str], min_persons: int = 5
) -> tuple[list[Cell], Audit]:
    """Withhold published cells until the audit passes: for each unprotected quantity, the
    smallest published cell of a relation that holds it (counts before magnitudes). Returns
    the cells withheld (first of each row, in the order withheld) and the final audit."""
    values = {cell: values[cell] for cell in sorted(values, key=cell_order)}
    added: list[Cell] = []
    solved: dict = {}
    while True:
        result = audit_values(values, school_areas, min_persons, solved)
        if result.passed:
            return added, result
        dropped = set(result.dropped_families)
        touching: dict[Cell, list[Relation]] = defaultdict(list)
        for rel in relations(values, school_areas):
            if rel.family not in dropped:
                for cell, _ in rel.terms:
                    touching[cell].append(rel)
        chosen = {_nearest_published(q, touching, values) for q in result.failures}
        # counts first, then cell order: a row withheld for one cell takes its others along
        for cell in sorted(chosen, key=lambda c: (not _is_count(c), cell_order(c))):
            if values[cell] is None:  # its row was withheld for another cell
                continue
            added.append(cell)
            for member in _row_cells(cell):
                if member in values:  # a measure without data is no cell to withhold
                    values[member] = None


def protect(
    con: duckdb.DuckDBPyConnection, catalog: str | None = None, min_persons: int = 5
) -> tuple[list[Cell], Audit]:
    """Linked suppression on the marts of `catalog` (the new served file, before its swap):
    withhold what the audit needs and write it (measure NULL, `_status` 'withheld',
    `is_suppressed` true)."""
    started = time.perf_counter()
    values = read_values(con, catalog)
    added, result = linked_suppression(values, read_school_areas(con, catalog), min_persons)
    for table, key, measure in added:
        spec = MARTS[table]
        group = spec["groups"][measure]
        columns = _columns(con, table, catalog)
        sets = [f'"{c}" = null' for c in group["null"] if c in columns]
        sets += [f"\"{c}\" = 'withheld'" for c in group["status"] if c in columns]
        if "is_suppressed" in columns:
            sets.append("is_suppressed = true")
        where = " and ".join(f'"{k}" is not distinct from ?' for k in spec["key"])
        con.execute(
            f"update {_qualified(table, catalog)} set {', '.join(sets)} where {where}", list(key)
        )
    # Rates last: a row whose minutes are now withheld has its rates withheld with them.
    values = read_values(con, catalog)
    rates = read_rates(con, catalog)
    school_areas = read_school_areas(con, catalog)
    rows, rate_quantities = linked_rate_suppression(
        rates, values, school_areas, result.dropped_families
    )
    for table, key in rows:
        columns = _columns(con, table, catalog)
        sets = [f'"{c}" = null' for c in RATES if c in columns]
        sets += ["absence_pct_status = 'withheld'", "is_suppressed = true"]
        where = " and ".join(f'"{k}" is not distinct from ?' for k in MARTS[table]["key"])
        con.execute(
            f"update {_qualified(table, catalog)} set {', '.join(sets)} where {where}", list(key)
        )
    added += [(table, key, "total_absence_pct") for table, key in rows]
    result.quantities += rate_quantities
    _follow_in_goal_progress(con, catalog)
    # always logged, with its time: the publish's share of the nightly at scale
    log.info(
        "disclosure control: %d more cells withheld so that no withheld value can be "
        "narrowed from the published marts (%d cells read, %d withheld values audited, %.1f s)",
        len(added),
        result.cells,
        len(result.quantities),
        time.perf_counter() - started,
    )
    return added, result


# --- rates --------------------------------------------------------------------------------

RATES = ["valid_absence_pct", "invalid_absence_pct", "other_absence_pct", "total_absence_pct"]
RATE_MARTS = ("mart_attendance_school_grade_month", "mart_attendance_area_term")
HALF_HUNDREDTH = Decimal("0.005")  # rates are published to two decimals
_MINUTES_FAMILY = "school offered minutes = area × term offered minutes"


def read_rates(
    con: duckdb.DuckDBPyConnection, catalog: str | None = None
) -> dict[Cell, Decimal | None]:
    """Every absence rate of the attendance marts, in cell order: None when withheld (a rate
    with no data, status 'missing', is no cell)."""
    rates: dict[Cell, Decimal | None] = {}
    present = _tables(con, catalog)
    for table in RATE_MARTS:
        if table not in present:
            continue
        spec = MARTS[table]
        columns = _columns(con, table, catalog)
        if not set(RATES) <= columns or "absence_pct_status" not in columns:
            continue
        selected = ", ".join(f'"{c}"' for c in [*spec["key"], *RATES, "absence_pct_status"])
        width = len(spec["key"])
        for row in con.execute(f"select {selected} from {_qualified(table, catalog)}").fetchall():
            key, status = tuple(row[:width]), row[-1]
            for i, rate in enumerate(RATES):
                value = row[width + i]
                if value is not None:
                    rates[(table, key, rate)] = _exact(value, count=False)
                elif status == "withheld":
                    rates[(table, key, rate)] = None
    return {cell: rates[cell] for cell in sorted(rates, key=cell_order)}


def _rate_groups(
    rates: dict[Cell, Decimal | None], school_areas: dict[str, str]
) -> dict[tuple, list[tuple[str, tuple]]]:
    """The rows of each area × term (in cell order): its school × grade × month rows (by the
    term of their month) and the area row."""
    groups: dict[tuple, set[tuple[str, tuple]]] = defaultdict(set)
    for table, key, _ in rates:
        if table == RATE_MARTS[0]:
            school, _, month = key
            groups[(school_areas.get(school), _term_of(month))].add((table, key))
        else:
            groups[tuple(key)].add((table, key))
    return {
        group: sorted(rows, key=lambda r: cell_order((*r, "")))
        for group, rows in sorted(groups.items(), key=lambda g: cell_order(("", g[0], "")))
    }


def _rate_solver(lower: list[float], upper: list[float], coefficients: list[float] | None):
    """HiGHS with one absent-minutes column per row, within its bounds, and the parts minus
    the area summing to zero (`coefficients`, when the attacker may rely on it)."""
    import highspy
    import numpy as np

    lp = highspy.HighsLp()
    lp.num_col_ = len(lower)
    lp.col_cost_ = np.zeros(len(lower))
    lp.col_lower_, lp.col_upper_ = np.array(lower), np.array(upper)
    if coefficients:
        lp.num_row_ = 1
        lp.row_lower_, lp.row_upper_ = np.zeros(1), np.zeros(1)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = len(lower), 1
        lp.a_matrix_.start_ = np.array([0, len(lower)], dtype=np.int32)
        lp.a_matrix_.index_ = np.arange(len(lower), dtype=np.int32)
        lp.a_matrix_.value_ = np.array(coefficients)
    solver = highspy.Highs()
    solver.setOptionValue("output_flag", False)
    solver.setOptionValue("presolve", "off")
    solver.setOptionValue("threads", 1)
    solver.passModel(lp)
    solver.run()
    return solver


def audit_rates(
    rates: dict[Cell, Decimal | None],
    values: dict[Cell, Value | None],
    school_areas: dict[str, str],
    dropped_families: list[str],
) -> list[Quantity]:
    """The interval of every withheld absence rate whose offered minutes are published.

    A rate is absent minutes over offered minutes. The attacker knows each published rate to
    its two decimals, so each row's absent minutes to an interval; the rows' absent minutes
    add up to the area × term's like their offered minutes do. The lowest and highest absent
    minutes of a withheld row over that LP, divided by its published minutes, bound its rate.
    (A rate whose minutes are withheld too is protected through its minutes: the count audit.)
    Deterministic like the rest: the LP is built in cell order from exact decimals.
    """
    import highspy
    import numpy as np

    linked = _MINUTES_FAMILY not in dropped_families
    result = []
    for rows in _rate_groups(rates, school_areas).values():
        total = [r for r in rows if r[0] == RATE_MARTS[1]]
        for rate in RATES:
            targets = [
                r
                for r in rows
                if (*r, rate) in rates
                and rates[(*r, rate)] is None
                and values.get((*r, "offered_minutes"))
            ]
            if not targets:
                continue
            lower, upper = [], []
            for table, key in rows:
                minutes = values.get((table, key, "offered_minutes"))
                published = rates.get((table, key, rate))
                if minutes is None:
                    lower.append(0.0)
                    upper.append(highspy.kHighsInf)
                elif published is None:
                    lower.append(0.0)
                    upper.append(float(minutes))
                else:
                    lower.append(float(max(0, (published - HALF_HUNDREDTH) * minutes / 100)))
                    upper.append(float(min(minutes, (published + HALF_HUNDREDTH) * minutes / 100)))
            relation = None
            if linked and len(total) == 1 and len(rows) > 1:
                relation = [-1.0 if r in total else 1.0 for r in rows]
            solver = _rate_solver(lower, upper, relation)
            if solver.getModelStatus() != highspy.HighsModelStatus.kOptimal:
                # the published rates contradict the sum here: no knowledge to rely on
                solver = _rate_solver(lower, upper, None)
            columns = np.arange(len(rows), dtype=np.int32)
            for target in targets:
                minutes = values[(*target, "offered_minutes")]
                objective = np.zeros(len(rows))
                objective[rows.index(target)] = 1.0
                bounds = []
                for sign in (1, -1):
                    solver.changeColsCost(len(rows), columns, sign * objective)
                    solver.run()
                    if solver.getModelStatus() != highspy.HighsModelStatus.kOptimal:
                        bounds.append(Decimal("NaN"))
                        continue
                    absent = Decimal(repr(sign * solver.getInfo().objective_function_value))
                    bounds.append((absent * 100 / minutes).quantize(CENT))
                cell = (*target, rate)
                quantity = Quantity(_label(cell), "rate", [(cell, 1)], bounds[0], bounds[1])
                quantity.protected = _protected(quantity, 0)
                result.append(quantity)
    return result


def linked_rate_suppression(
    rates: dict[Cell, Decimal | None],
    values: dict[Cell, Value | None],
    school_areas: dict[str, str],
    dropped_families: list[str],
) -> tuple[list[tuple[str, tuple]], list[Quantity]]:
    """Withhold the rates of more rows until every withheld rate keeps its protection: for
    each rate that can be narrowed, the rates of the row with the fewest offered minutes (then
    cell order) among its area × term's published ones. Returns the rows and the final
    audit's rate quantities."""
    rates = dict(rates)
    withheld: list[tuple[str, tuple]] = []
    groups = _rate_groups(rates, school_areas)
    where = {row: group for group, rows in groups.items() for row in rows}
    while True:
        quantities = audit_rates(rates, values, school_areas, dropped_families)
        failing = [q for q in quantities if not q.protected]
        if not failing:
            return withheld, quantities
        chosen = set()
        for quantity in failing:
            (cell, _), rate = quantity.terms[0], quantity.terms[0][0][2]
            row = (cell[0], cell[1])
            candidates = [
                r
                for r in groups[where[row]]
                if r != row
                and rates.get((*r, rate)) is not None
                and values.get((*r, "offered_minutes")) is not None
            ]
            if not candidates:
                raise RuntimeError(
                    f"disclosure control: {quantity.label} cannot be protected by withholding "
                    "more rates; the marts are not published"
                )
            chosen.add(
                min(
                    candidates,
                    key=lambda r: (values[(*r, "offered_minutes")], cell_order((*r, rate))),
                )
            )
        for row in sorted(chosen, key=lambda r: cell_order((*r, ""))):
            withheld.append(row)
            for rate in RATES:
                if (*row, rate) in rates:
                    rates[(*row, rate)] = None


def _follow_in_goal_progress(con: duckdb.DuckDBPyConnection, catalog: str | None) -> None:
    """The goal follow-up repeats an area's vandalism cost per apartment (value, and as the
    previous and baseline value of later years): withheld wherever the area × year row is.
    (Cost per apartment × the published apartments is the cost.)"""
    present = _tables(con, catalog)
    goals, years = "mart_goal_progress", "mart_vandalism_area_year"
    if goals not in present or years not in present:
        return
    withheld = (
        f"select area_code, cast(year as varchar) as period from {_qualified(years, catalog)} "
        "where scope = 'area' and vandalism_cost_sek is null and is_suppressed"
    )
    match = (
        "g.indicator_id in ('vandalism_cost_per_apartment_sek', 'vandalism_cost_sek') "
        "and g.area_level = 'area' and g.area_code = w.area_code"
    )
    table = _qualified(goals, catalog)
    for period, nulled in (
        (
            "period",
            "value = null, value_status = 'withheld', is_suppressed = true, status = 'no_data', "
            "change_since_baseline = null, change_since_baseline_pct = null, "
            "change_since_previous_pct = null, trend = null",
        ),
        (
            "previous_period",
            "previous_value = null, change_since_previous_pct = null, trend = null",
        ),
        (
            "baseline_period",
            "baseline_value = null, change_since_baseline = null, change_since_baseline_pct = null",
        ),
    ):
        basis = "" if period == "period" else "and g.comparison_basis = 'whole_period' "
        con.execute(
            f"update {table} as g set {nulled} from ({withheld}) as w "
            f"where {match} and g.{period} = w.period {basis}"
        )


# --- the report -------------------------------------------------------------------------


def _bound(x: Decimal, kind: str = "magnitude") -> str:
    if x.is_infinite():
        return "∞"
    return (f"{x:,.0f}" if kind == "count" else f"{x:,.2f}").replace(",", " ")


def report_markdown(result: Audit) -> str:
    """The data-protection officer's report: what was audited, every interval, the verdict."""
    verdict = "PASS" if result.passed else "FAIL"
    narrowest = result.narrowest()
    lines = [
        "# Disclosure audit of the published marts",
        "",
        f"**Verdict: {verdict}** — {len(result.failures)} of {len(result.quantities)} withheld "
        "values can be narrowed below the protection (docs/marts.md, *Small cells*).",
        "",
        f"- count and magnitude cells read: {result.cells}; withheld values, absence rates "
        f"included: {result.withheld}",
        f"- withheld values and nested bands audited: {len(result.quantities)}",
        f"- protection: a count's interval reaches {result.min_persons} and is at least "
        f"{result.min_persons - 1} wide; a magnitude's or a rate's interval is at least "
        f"{MAGNITUDE_PROTECTION:.0%} of its upper end wide",
    ]
    if narrowest:
        lines.append(
            f"- narrowest count interval: {narrowest.label} in "
            f"[{_bound(narrowest.lower, 'count')}, {_bound(narrowest.upper, 'count')}]"
        )
    if result.dropped_families:
        lines.append(
            "- relations that do not hold in the published data (not used): "
            + "; ".join(result.dropped_families)
        )
    lines += ["", "| value | kind | lowest | highest | protected |", "|---|---|---|---|---|"]
    for q in sorted(result.quantities, key=lambda q: (q.protected, q.label)):
        lines.append(
            f"| {q.label} | {q.kind} | {_bound(q.lower, q.kind)} | {_bound(q.upper, q.kind)} | "
            f"{'yes' if q.protected else '**no**'} |"
        )
    return "\n".join(lines) + "\n"
