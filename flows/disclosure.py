"""Disclosure control across the published marts: the attacker's audit and linked suppression.

dbt withholds small cells mart by mart (macros/suppression.sql: primary, nested bands, the
secondary rule against one total). Cells are linked across marts, though: school × grade ×
month pupils add up to area × term pupils, area × month orders to area × year orders, areas to
the municipality, and the area profile repeats the area × year vandalism figures. This module
writes those linear relations down, the way an attacker who reads only the served marts
would, and computes by linear programming (scipy's HiGHS) the feasible interval of every
withheld value (docs/marts.md, *Small cells*):

* `audit(con)` reads the marts through a DuckDB connection and returns an `Audit`: every
  withheld count, magnitude and nested band with its interval and whether it is protected;
* `protect(con)` is the linked (fourth) suppression step of the publish: as long as the
  audit finds an unprotected cell, it withholds one more published cell of a relation that
  pins it (the smallest), and writes the result into the new served file before the swap.

Why an LP of our own and not Tau-Argus (`pytauargus`): the package drives the Tau-Argus
Windows/Java binary through batch files, which is not installed here and not packaged for
Linux servers; the relations between our marts are few families of sums, so HiGHS (already a
dependency through scipy) solves each connected group of withheld cells in milliseconds.
Rates are not in the LP (they are ratios of withheld sums); they are withheld with their
counts, and left to the rules of the marts.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

import duckdb

log = logging.getLogger(__name__)

# The protection each withheld magnitude (minutes, kronor) must keep: the attacker's interval
# is at least this share of its upper end wide.
MAGNITUDE_PROTECTION = 0.25

Cell = tuple[str, tuple, str]  # (mart, row key, measure)

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
    terms: list[tuple[Cell, float]]
    equal: bool = True


@dataclass
class Quantity:
    """What must stay protected: a withheld cell, or a nested band (a difference of cells)."""

    label: str
    kind: str  # "count" or "magnitude"
    terms: list[tuple[Cell, float]]
    lower: float = 0.0
    upper: float = math.inf
    protected: bool = True


@dataclass
class Audit:
    cells: int  # published cells that are in a relation or withheld
    withheld: int
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
        return min(counts, key=lambda q: q.upper - q.lower, default=None)


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


def read_values(
    con: duckdb.DuckDBPyConnection, catalog: str | None = None
) -> dict[Cell, float | None]:
    """Every count and magnitude cell of the marts this module knows: None when withheld.
    A NULL that means no data (`<measure>_status` 'missing', or a row not suppressed) is no
    cell at all."""
    values: dict[Cell, float | None] = {}
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
                    values[(table, key, measure)] = float(value)
                elif is_withheld:
                    values[(table, key, measure)] = None
    return values


def _term_of(month: date) -> str:
    return f"HT{month.year}" if month.month >= 7 else f"VT{month.year}"


def relations(values: dict[Cell, float | None], school_areas: dict[str, str]) -> list[Relation]:
    """The linear relations between the marts' cells, as the marts' grains imply them."""
    result: list[Relation] = []
    by_table: dict[str, list[Cell]] = defaultdict(list)
    for cell in values:
        by_table[cell[0]].append(cell)

    def cells(table: str, measure: str) -> list[Cell]:
        return [c for c in by_table.get(table, []) if c[2] == measure]

    def total_of(family: str, total: Cell, parts: list[Cell]) -> None:
        if total in values and parts:
            result.append(Relation(family, [(total, -1.0)] + [(p, 1.0) for p in parts]))

    def same(family: str, a: Cell, b: Cell) -> None:
        if a in values and b in values:
            result.append(Relation(family, [(a, 1.0), (b, -1.0)]))

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
    municipality_parts: dict[tuple[str, float, str], list[Cell]] = defaultdict(list)
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
                Relation("nested thresholds", [(current, 1.0), (previous, -1.0)], equal=False)
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
    """school unit → area, as the school mart publishes it."""
    if "mart_attendance_school_grade_month" not in _tables(con, catalog):
        return {}
    table = _qualified("mart_attendance_school_grade_month", catalog)
    return dict(con.execute(f"select distinct school_unit_code, area_code from {table}").fetchall())


# --- the attacker's linear programs -----------------------------------------------------

_TOLERANCE = 0.011  # published decimals are rounded to the öre / minute


def _consistent_families(rels: list[Relation], values: dict[Cell, float | None]) -> set[str]:
    """Families whose fully published relations do not hold (pupils who changed school
    within a term, say) are no knowledge the attacker can rely on: they are left out."""
    broken = set()
    for rel in rels:
        if all(values.get(c) is not None for c, _ in rel.terms):
            residual = sum(values[c] * k for c, k in rel.terms)
            if (rel.equal and abs(residual) > _TOLERANCE) or residual > _TOLERANCE:
                broken.add(rel.family)
    return broken


def _protected(quantity: Quantity, min_persons: int) -> bool:
    width = quantity.upper - quantity.lower
    if quantity.kind == "count":
        # the attacker cannot tell a small cell (below min_persons) from a publishable one,
        # nor pin it closer than a small cell's own range
        return quantity.upper >= min_persons - 1e-6 and width >= min_persons - 1 - 1e-6
    return width >= MAGNITUDE_PROTECTION * quantity.upper - 1e-6


def _label(cell: Cell) -> str:
    table, key, measure = cell
    shown = ", ".join(k.isoformat() if isinstance(k, date) else str(k) for k in key)
    return f"{table}[{shown}].{measure}"


def _quantities(rels: list[Relation], values: dict[Cell, float | None]) -> list[Quantity]:
    result = []
    for cell, value in sorted(values.items(), key=lambda item: _label(item[0])):
        if value is None:
            kind = "count" if cell[2] in MARTS[cell[0]]["counts"] else "magnitude"
            result.append(Quantity(_label(cell), kind, [(cell, 1.0)]))
    for rel in rels:
        # a nested band (pupils at 10 % minus pupils at 15 %) is a count of persons too
        if not rel.equal and any(values.get(c) is None for c, _ in rel.terms):
            (upper_cell, _), (lower_cell, _) = sorted(rel.terms, key=lambda t: t[1])
            label = f"band {_label(upper_cell)} - {lower_cell[2]}@{lower_cell[1][-1]}"
            result.append(Quantity(label, "count", [(upper_cell, 1.0), (lower_cell, -1.0)]))
    return result


def audit(
    con: duckdb.DuckDBPyConnection, catalog: str | None = None, min_persons: int = 5
) -> Audit:
    """The feasible interval of every withheld value, from the published cells alone."""
    values = read_values(con, catalog)
    return audit_values(values, read_school_areas(con, catalog), min_persons)


def audit_values(
    values: dict[Cell, float | None],
    school_areas: dict[str, str],
    min_persons: int = 5,
    solved: dict | None = None,
) -> Audit:
    from scipy.optimize import linprog  # ~0.5 s to import; only the audit needs it

    all_relations = relations(values, school_areas)
    dropped = _consistent_families(all_relations, values)
    rels = [
        r
        for r in all_relations
        if r.family not in dropped and any(values.get(c) is None for c, _ in r.terms)
    ]
    quantities = _quantities(rels, values)
    # Connected groups of withheld cells: each is one small LP.
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
    for cell, value in values.items():
        if value is None:
            groups[find(cell)].append(cell)
    group_relations: dict[Cell, list[Relation]] = defaultdict(list)
    for rel in rels:
        first = next(c for c, _ in rel.terms if values.get(c) is None)
        group_relations[find(first)].append(rel)
    solved = {} if solved is None else solved  # intervals of unchanged groups, by group
    for quantity in quantities:
        root = find(next(c for c, _ in quantity.terms if values.get(c) is None))
        memo = (frozenset(groups[root]), quantity.label)
        if memo in solved:
            quantity.lower, quantity.upper = solved[memo]
            quantity.protected = not math.isnan(quantity.lower) and _protected(
                quantity, min_persons
            )
            continue
        variables = {cell: i for i, cell in enumerate(groups[root])}
        a_eq, b_eq, a_ub, b_ub = [], [], [], []
        for rel in group_relations[root]:
            row = [0.0] * len(variables)
            known = 0.0
            for cell, k in rel.terms:
                if values.get(cell) is None:
                    row[variables[cell]] += k
                else:
                    known += k * values[cell]
            (a_eq if rel.equal else a_ub).append(row)
            (b_eq if rel.equal else b_ub).append(-known)
        objective = [0.0] * len(variables)
        for cell, k in quantity.terms:
            if values.get(cell) is None:
                objective[variables[cell]] += k
        offset = sum(k * values[c] for c, k in quantity.terms if values.get(c) is not None)
        bounds = []
        for sign in (1.0, -1.0):
            solved = linprog(
                [sign * x for x in objective],
                A_ub=a_ub or None,
                b_ub=b_ub or None,
                A_eq=a_eq or None,
                b_eq=b_eq or None,
                bounds=(0, None),
                method="highs",
            )
            if solved.status == 3:  # unbounded
                bounds.append(sign * -math.inf)
            elif solved.status == 0:
                bounds.append(sign * solved.fun + offset)
            else:  # the published cells contradict each other: report it, unprotected
                bounds.append(math.nan)
        quantity.lower, quantity.upper = round(bounds[0], 4), round(bounds[1], 4)
        solved[memo] = (quantity.lower, quantity.upper)
        quantity.protected = not math.isnan(quantity.lower) and _protected(quantity, min_persons)
    withheld = sum(1 for v in values.values() if v is None)
    return Audit(len(values), withheld, quantities, sorted(dropped), min_persons)


# --- linked suppression -----------------------------------------------------------------


def _row_cells(cell: Cell) -> list[Cell]:
    """The cells withheld together with `cell` (the columns its group nulls)."""
    table, key, measure = cell
    spec = MARTS[table]
    nulled = spec["groups"][measure]["null"]
    return [(table, key, m) for m in spec["counts"] + spec["magnitudes"] if m in nulled]


def _nearest_published(
    quantity: Quantity, touching: dict[Cell, list[Relation]], values: dict[Cell, float | None]
) -> Cell:
    """The published cell to withhold for an unprotected quantity: of the relations nearest
    to it (through withheld cells), the smallest published cell, of the same kind (count or
    magnitude) when there is one."""
    frontier = {c for c, _ in quantity.terms}
    seen: set[Cell] = set(frontier)
    while frontier:
        reached = {c for cell in frontier for rel in touching[cell] for c, _ in rel.terms}
        candidates = [c for c in reached if values.get(c) is not None]
        if candidates:
            same_kind = [
                c
                for c in candidates
                if (c[2] in MARTS[c[0]]["counts"]) == (quantity.kind == "count")
            ] or candidates
            return min(same_kind, key=lambda c: (values[c], _label(c)))
        frontier = reached - seen
        seen |= reached
    raise RuntimeError(
        f"disclosure control: {quantity.label} cannot be protected by withholding more "
        "cells; the marts are not published"
    )


def linked_suppression(
    values: dict[Cell, float | None], school_areas: dict[str, str], min_persons: int = 5
) -> tuple[list[Cell], Audit]:
    """Withhold published cells until the audit passes: for each unprotected quantity, the
    smallest published cell of a relation that holds it (counts before magnitudes). Returns
    the cells withheld (first of each row) and the final audit."""
    values = dict(values)
    added: list[Cell] = []
    solved: dict = {}
    while True:
        result = audit_values(values, school_areas, min_persons, solved)
        if result.passed:
            return added, result
        rels = [
            r
            for r in relations(values, school_areas)
            if r.family not in set(result.dropped_families)
        ]
        touching: dict[Cell, list[Relation]] = defaultdict(list)
        for rel in rels:
            for cell, _ in rel.terms:
                touching[cell].append(rel)
        chosen: set[Cell] = set()
        for quantity in result.failures:
            chosen.add(_nearest_published(quantity, touching, values))
        counts_first = sorted(chosen, key=lambda c: (c[2] not in MARTS[c[0]]["counts"], _label(c)))
        for cell in counts_first:
            if values[cell] is None:  # its row was withheld for another cell
                continue
            added.append(cell)
            for member in _row_cells(cell):
                values[member] = None


def protect(
    con: duckdb.DuckDBPyConnection, catalog: str | None = None, min_persons: int = 5
) -> tuple[list[Cell], Audit]:
    """Linked suppression on the marts of `catalog` (the new served file, before its swap):
    withhold what the audit needs and write it (measure NULL, `_status` 'withheld',
    `is_suppressed` true)."""
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
        where = " and ".join(f'"{k}" = ?' for k in spec["key"])
        con.execute(
            f"update {_qualified(table, catalog)} set {', '.join(sets)} where {where}", list(key)
        )
    _follow_in_goal_progress(con, catalog)
    if added:
        log.info(
            "disclosure control: %d more cells withheld so that no withheld value can be "
            "narrowed from the published marts (%d withheld values audited)",
            len(added),
            len(result.quantities),
        )
    return added, result


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


def _bound(x: float) -> str:
    return "∞" if math.isinf(x) else f"{x:,.2f}".replace(",", " ")


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
        f"- cells read: {result.cells} (withheld: {result.withheld})",
        f"- withheld values and nested bands audited: {len(result.quantities)}",
        f"- protection: a count's interval reaches {result.min_persons} and is at least "
        f"{result.min_persons - 1} wide; a magnitude's interval is at least "
        f"{MAGNITUDE_PROTECTION:.0%} of its upper end wide",
    ]
    if narrowest:
        lines.append(
            f"- narrowest count interval: {narrowest.label} in "
            f"[{_bound(narrowest.lower)}, {_bound(narrowest.upper)}]"
        )
    if result.dropped_families:
        lines.append(
            "- relations that do not hold in the published data (not used): "
            + "; ".join(result.dropped_families)
        )
    lines += ["", "| value | kind | lowest | highest | protected |", "|---|---|---|---|---|"]
    for q in sorted(result.quantities, key=lambda q: (q.protected, q.label)):
        lines.append(
            f"| {q.label} | {q.kind} | {_bound(q.lower)} | {_bound(q.upper)} | "
            f"{'yes' if q.protected else '**no**'} |"
        )
    return "\n".join(lines) + "\n"
