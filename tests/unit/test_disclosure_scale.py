"""Disclosure control at the size of a 10,000-pupil municipality, in seconds, without a run:
the served marts of one school year built synthetically with exact, known counts (36 schools
in 12 areas, grades F-9, 11 months, problematic absence at four thresholds, a year of
vandalism), withheld as dbt's primary and nested rules withhold them; then the publish's
linked suppression and the attacker's audit on the result. The measured run on a generated
municipality (the nightly end to end) is in docs/marts.md, *Small cells at scale*."""

from __future__ import annotations

import time
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import duckdb
import polars as pl

from flows import disclosure

MUNICIPALITY = "1299"
SCHOOLS_PER_AREA = [1, 2, 3, 4, 5, 2, 3, 4, 3, 2, 4, 3]  # 36 schools, one area with one
AREAS = [f"1299A{i:04d}" for i in range(1, len(SCHOOLS_PER_AREA) + 1)]
SCHOOLS = {
    f"{70000000 + 100 * a + s}": area
    for a, (area, n) in enumerate(zip(AREAS, SCHOOLS_PER_AREA, strict=True))
    for s in range(n)
}
GRADES = ["F", *map(str, range(1, 10))]
MONTHS = [date(2025, m, 1) for m in range(8, 13)] + [date(2026, m, 1) for m in range(1, 7)]
THRESHOLDS = [Decimal("10.00"), Decimal("15.00"), Decimal("20.00"), Decimal("50.00")]
MIN_PERSONS, MIN_DENOMINATOR = 5, 10
HUNDREDTH = Decimal("0.01")


def _term(month: date) -> str:
    return f"HT{month.year}" if month.month >= 7 else f"VT{month.year}"


def _grade_sizes() -> dict[tuple[int, int], int]:
    """Pupils per school (index) and grade (index): 10,000 in all, 27.8 a school grade on
    average; one in 18 below 5 pupils (withheld), one in 18 with 5-9 (rates withheld)."""
    sizes = {}
    for i in range(len(SCHOOLS)):
        for g in range(len(GRADES)):
            kind = (i * 7 + g * 3) % 18
            if kind == 0:
                sizes[(i, g)] = 1 + (i + g) % 4
            elif kind == 9:
                sizes[(i, g)] = 5 + (i + g) % 5
            else:
                sizes[(i, g)] = 12 + (i * 11 + g * 5) % 31
    large = [cell for cell, n in sizes.items() if n >= 12]
    for k in range(PUPILS - sum(sizes.values())):  # the rest, one each to the large grades
        sizes[large[k % len(large)]] += 1
    return sizes


PUPILS = 10_000
SIZES = _grade_sizes()


def _pct(part: int, whole: int) -> Decimal:
    return (Decimal(part) * 100 / Decimal(whole)).quantize(HUNDREDTH, ROUND_HALF_UP)


def _absent(minutes: int, seed: int) -> tuple[int, int, int]:
    """Valid, invalid and other absent minutes of a row (5-9 % in all)."""
    total = minutes * (5 + seed % 5) // 100
    valid = total * 6 // 10
    invalid = total * (1 + seed % 3) // 10
    return valid, invalid, total - valid - invalid


def _rates(valid: int, invalid: int, other: int, minutes: int) -> list[Decimal]:
    return [_pct(v, minutes) for v in (valid, invalid, other, valid + invalid + other)]


def build(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """The marts, primarily suppressed; returns the totals the test checks against."""
    school_rows, area_minutes = [], {}
    area_pupils: dict[tuple[str, str], int] = {}
    area_absent: dict[tuple[str, str], list[int]] = {}
    for i, (school, area) in enumerate(SCHOOLS.items()):
        for g, grade in enumerate(GRADES):
            n = SIZES[(i, g)]
            for m, month in enumerate(MONTHS):
                term = _term(month)
                minutes = n * (1100 + 40 * (m % 3))
                absent = _absent(minutes, i + g + m)
                if m in (0, 5):  # the first month of each term: the term's pupils
                    area_pupils[(area, term)] = area_pupils.get((area, term), 0) + n
                area_minutes[(area, term)] = area_minutes.get((area, term), 0) + minutes
                summed = area_absent.setdefault((area, term), [0, 0, 0])
                for k in range(3):
                    summed[k] += absent[k]
                small, no_rate = n < MIN_PERSONS, n < MIN_DENOMINATOR
                rates = [None] * 4 if no_rate else _rates(*absent, minutes)
                school_rows.append(
                    (school, area, grade, month, None if small else n,
                     None if small else Decimal(minutes), *rates,
                     "withheld" if no_rate else "ok", no_rate)
                )  # fmt: skip
    _table(con, "mart_attendance_school_grade_month", SCHOOL_COLUMNS, school_rows)
    term_rows = [
        (area, term, n, Decimal(area_minutes[(area, term)]),
         *_rates(*area_absent[(area, term)], area_minutes[(area, term)]), "ok", False)
        for (area, term), n in sorted(area_pupils.items())
    ]  # fmt: skip
    _table(con, "mart_attendance_area_term", TERM_COLUMNS, term_rows)

    # Problematic absence: an area's pupils at or above each threshold, and the municipality's.
    shares = [18, 11, 6, 1]  # per cent of pupils at or above 10, 15, 20, 50 %
    absence_rows = []
    for term in ("HT2025", "VT2026"):
        totals = [0] * len(THRESHOLDS)
        areas = [(a, n) for (a, t), n in sorted(area_pupils.items()) if t == term]
        for scope, area, n, counts in [
            *(("area", a, n, [n * s // 100 + (k + len(a)) % 2 for k, s in enumerate(shares)])
              for a, n in areas),
            ("municipality", MUNICIPALITY, sum(n for _, n in areas), totals),
        ]:  # fmt: skip
            if scope == "area":
                totals[:] = [t + c for t, c in zip(totals, counts, strict=True)]
            published = n  # nested: a band of 1-4 to the last published count is withheld
            for threshold, count in zip(THRESHOLDS, counts, strict=True):
                band = published - count
                withheld = count < MIN_PERSONS or 0 < band < MIN_PERSONS
                if not withheld:
                    published = count
                absence_rows.append(
                    (scope, area, term, threshold, n, None if withheld else count,
                     None if withheld else _pct(count, n), "withheld" if withheld else "ok",
                     withheld)
                )  # fmt: skip
    _table(con, "mart_problematic_absence_area_term", ABSENCE_COLUMNS, absence_rows)

    # Vandalism: orders and cost per area and month, year, municipality, categories, profile.
    month_rows, year_rows, profile_rows = [], [], []
    year_orders, year_cost = 0, Decimal(0)
    by_month = {month: [0, Decimal(0)] for month in range(1, 13)}
    for a, area in enumerate(AREAS):
        orders_year, cost_year = 0, Decimal(0)
        for month in range(1, 13):
            orders = (a * 5 + month * 3) % 14
            cost = (Decimal(orders) * Decimal("3127.35") + Decimal(a * 11 + month)).quantize(
                HUNDREDTH
            )
            orders_year, cost_year = orders_year + orders, cost_year + cost
            by_month[month][0] += orders
            by_month[month][1] += cost
            small = orders < MIN_PERSONS
            month_rows.append(
                ("area", area, date(2025, month, 1), None if small else orders,
                 None if small else cost, small)
            )  # fmt: skip
        year_orders, year_cost = year_orders + orders_year, year_cost + cost_year
        year_rows.append(("area", area, 2025, orders_year, cost_year, "ok", False))
        profile_rows.append((area, 2025, orders_year, cost_year, "ok", False))
    for month, (orders, cost) in by_month.items():
        month_rows.append(("municipality", MUNICIPALITY, date(2025, month, 1), orders, cost, False))
    year_rows.append(("municipality", MUNICIPALITY, 2025, year_orders, year_cost, "ok", False))
    _table(con, "mart_vandalism_area_month", VANDALISM_MONTH_COLUMNS, month_rows)
    _table(con, "mart_vandalism_area_year", VANDALISM_YEAR_COLUMNS, year_rows)
    _table(
        con,
        "mart_vandalism_municipality_year",
        {k: v for k, v in VANDALISM_YEAR_COLUMNS.items() if k not in ("scope", "area_code")},
        [(2025, year_orders, year_cost, "ok", False)],
    )
    _table(con, "mart_area_profile", PROFILE_COLUMNS, profile_rows)
    categories = {"graffiti": 0.5, "broken_glass": 0.3, "fire": 0.2}
    category_rows, left_orders, left_cost = [], year_orders, year_cost
    for k, (category, share) in enumerate(categories.items()):
        last = k == len(categories) - 1
        orders = left_orders if last else int(year_orders * share)
        cost = left_cost if last else (year_cost * Decimal(share)).quantize(HUNDREDTH)
        left_orders, left_cost = left_orders - orders, left_cost - cost
        category_rows.append((2025, category, orders, cost, False))
    category_rows.append((2025, "all_vandalism", year_orders, year_cost, False))
    _table(con, "mart_work_orders_category_year", CATEGORY_COLUMNS, category_rows)
    return {"pupils": sum(n for (_, t), n in area_pupils.items() if t == "HT2025")}


def _table(con, name: str, columns: dict[str, str], rows: list[tuple]) -> None:
    con.execute(f"create table {name} ({', '.join(f'{c} {t}' for c, t in columns.items())})")
    frame = pl.DataFrame(rows, schema=list(columns), orient="row", infer_schema_length=None)
    con.register("rows_frame", frame)
    con.execute(f"insert into {name} select * from rows_frame")  # cast to the columns' types
    con.unregister("rows_frame")


RATE_COLUMNS = {rate: "decimal(5, 2)" for rate in disclosure.RATES}
SCHOOL_COLUMNS = {
    "school_unit_code": "varchar",
    "area_code": "varchar",
    "grade": "varchar",
    "month": "date",
    "pupils": "bigint",
    "offered_minutes": "decimal(18, 2)",
    **RATE_COLUMNS,
    "absence_pct_status": "varchar",
    "is_suppressed": "boolean",
}
TERM_COLUMNS = {
    "area_code": "varchar",
    "term": "varchar",
    "pupils": "bigint",
    "offered_minutes": "decimal(18, 2)",
    **RATE_COLUMNS,
    "absence_pct_status": "varchar",
    "is_suppressed": "boolean",
}
ABSENCE_COLUMNS = {
    "scope": "varchar",
    "area_code": "varchar",
    "term": "varchar",
    "threshold_pct": "decimal(5, 2)",
    "pupils": "bigint",
    "pupils_at_or_above": "bigint",
    "share_at_or_above_pct": "decimal(5, 2)",
    "share_at_or_above_pct_status": "varchar",
    "is_suppressed": "boolean",
}
VANDALISM_MONTH_COLUMNS = {
    "scope": "varchar",
    "area_code": "varchar",
    "month": "date",
    "vandalism_orders": "bigint",
    "vandalism_cost_sek": "decimal(18, 2)",
    "is_suppressed": "boolean",
}
VANDALISM_YEAR_COLUMNS = {
    "scope": "varchar",
    "area_code": "varchar",
    "year": "integer",
    "vandalism_orders": "bigint",
    "vandalism_cost_sek": "decimal(18, 2)",
    "vandalism_orders_status": "varchar",
    "is_suppressed": "boolean",
}
# the area profile: the area × year columns without a scope (it has areas only)
PROFILE_COLUMNS = {k: v for k, v in VANDALISM_YEAR_COLUMNS.items() if k != "scope"}
CATEGORY_COLUMNS = {
    "year": "integer",
    "category": "varchar",
    "orders": "bigint",
    "cost_sek": "decimal(18, 2)",
    "is_suppressed": "boolean",
}


SCHOOL_CELL = "mart_attendance_school_grade_month[70000200, 5, 2025-08-01].pupils"
AREA_AT_50 = "mart_problematic_absence_area_term[area, 1299A0001, HT2025, 50.00].pupils_at_or_above"


def test_linked_suppression_and_the_audit_at_10000_pupils():
    """dbt's rules alone leave 191 withheld values that the attacker narrows, 37 of them
    exactly (an area's only small grade in a month: the area's pupils minus the published
    grades; an area's pupils at 50 %: the municipality minus the other areas). Linked
    suppression withholds 112 more rows and then nothing can be narrowed. Seconds: the LPs
    are solved per connected group of withheld cells, sparse."""
    con = duckdb.connect()
    assert build(con) == {"pupils": 10_000}
    started = time.perf_counter()
    before = disclosure.audit(con)
    exact = {q.label: q.lower for q in before.failures if q.lower == q.upper}
    assert (before.cells, before.withheld, len(before.failures), len(exact)) == (
        8548,  # count and magnitude cells
        2306,  # withheld by the primary and nested rules, rates included
        191,
        37,
    )
    assert (exact[SCHOOL_CELL], exact[AREA_AT_50]) == (1, 1)

    added, _ = disclosure.protect(con)
    after = disclosure.audit(con)
    seconds = time.perf_counter() - started
    assert after.passed, disclosure.report_markdown(after)
    marts = sorted({(table, measure) for table, _, measure in added})
    assert (len(added), marts) == (
        112,
        [
            ("mart_attendance_school_grade_month", "pupils"),
            ("mart_problematic_absence_area_term", "pupils_at_or_above"),
        ],
    )
    rates = sum(1 for q in after.quantities if q.kind == "rate")
    assert (after.cells, after.withheld, len(after.quantities), rates) == (8548, 2528, 1212, 440)
    intervals = {q.label: (q.lower, q.upper) for q in after.quantities}
    assert intervals[SCHOOL_CELL] == intervals[AREA_AT_50] == (0, 6)
    # ~6 s on a busy 2-core machine; a generous bound that a quadratic slip would break
    assert seconds < 120, f"disclosure control took {seconds:.0f} s at 10,000 pupils"
