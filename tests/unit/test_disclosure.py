"""The attacker: the three recoveries of the issue, the interval each gets now, and the
linked suppression written into a served file. Small marts with the served column names."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

from flows import disclosure
from lagesbild.cli import app


def _table(con, name: str, columns: dict[str, str], rows: list[tuple]) -> None:
    con.execute(f"create table {name} ({', '.join(f'{c} {t}' for c, t in columns.items())})")
    con.executemany(f"insert into {name} values ({', '.join('?' * len(columns))})", rows)


def _one_school_area(con) -> None:
    """Area A with one school: grade 9 (3 pupils) withheld, the area × term published."""
    _table(
        con,
        "mart_attendance_school_grade_month",
        {
            "school_unit_code": "varchar",
            "area_code": "varchar",
            "grade": "varchar",
            "month": "date",
            "pupils": "bigint",
            "offered_minutes": "decimal(18, 2)",
            "total_absence_pct": "decimal(5, 2)",
            "absence_pct_status": "varchar",
            "is_suppressed": "boolean",
        },
        [
            ("S1", "A", "7", date(2025, 9, 1), 30, 30000, 5.0, "ok", False),
            ("S1", "A", "8", date(2025, 9, 1), 40, 40000, 6.0, "ok", False),
            ("S1", "A", "9", date(2025, 9, 1), None, None, None, "withheld", True),
        ],
    )
    _table(
        con,
        "mart_attendance_area_term",
        {
            "area_code": "varchar",
            "term": "varchar",
            "pupils": "bigint",
            "offered_minutes": "decimal(18, 2)",
            "is_suppressed": "boolean",
        },
        [("A", "HT2025", 73, 73000, False)],
    )


def _vandalism_year(con) -> None:
    """Area A's year published, one month (4 orders, 41,605.20 SEK) withheld."""
    _table(
        con,
        "mart_vandalism_area_month",
        {
            "scope": "varchar",
            "area_code": "varchar",
            "month": "date",
            "vandalism_orders": "bigint",
            "vandalism_cost_sek": "decimal(18, 2)",
            "is_suppressed": "boolean",
        },
        [
            ("area", "A", date(2025, 1, 1), 10, Decimal("100000.00"), False),
            ("area", "A", date(2025, 2, 1), None, None, True),
            ("area", "A", date(2025, 3, 1), 12, Decimal("120000.00"), False),
        ],
    )
    _table(
        con,
        "mart_vandalism_area_year",
        {
            "scope": "varchar",
            "area_code": "varchar",
            "year": "integer",
            "vandalism_orders": "bigint",
            "vandalism_cost_sek": "decimal(18, 2)",
            "cost_per_apartment_sek": "decimal(18, 2)",
            "vandalism_orders_status": "varchar",
            "is_suppressed": "boolean",
        },
        [("area", "A", 2025, 26, Decimal("261605.20"), Decimal("2616.05"), "ok", False)],
    )


def _problematic_absence(con) -> None:
    """Two areas withheld at 10 %: the municipality minus the third leaves 4 pupils."""
    _table(
        con,
        "mart_problematic_absence_area_term",
        {
            "scope": "varchar",
            "area_code": "varchar",
            "term": "varchar",
            "threshold_pct": "decimal(5, 2)",
            "pupils": "bigint",
            "pupils_at_or_above": "bigint",
            "share_at_or_above_pct": "decimal(5, 2)",
            "is_suppressed": "boolean",
        },
        [
            ("area", "A1", "HT2025", 10, 50, None, None, True),
            ("area", "A2", "HT2025", 10, 40, None, None, True),
            ("area", "A3", "HT2025", 10, 60, 20, 33.33, False),
            ("municipality", "K", "HT2025", 10, 150, 24, 16.0, False),
        ],
    )


def _interval(result: disclosure.Audit, label: str) -> tuple[float, float]:
    (quantity,) = [q for q in result.quantities if q.label == label]
    return quantity.lower, quantity.upper


GRADE_9 = "mart_attendance_school_grade_month[S1, 9, 2025-09-01].pupils"
GRADE_9_MINUTES = "mart_attendance_school_grade_month[S1, 9, 2025-09-01].offered_minutes"
FEBRUARY = "mart_vandalism_area_month[area, A, 2025-02-01].vandalism_orders"
FEBRUARY_COST = "mart_vandalism_area_month[area, A, 2025-02-01].vandalism_cost_sek"
AREA_1 = "mart_problematic_absence_area_term[area, A1, HT2025, 10.00].pupils_at_or_above"
AREA_2 = "mart_problematic_absence_area_term[area, A2, HT2025, 10.00].pupils_at_or_above"


@pytest.fixture
def attacked():
    con = duckdb.connect()
    _one_school_area(con)
    _vandalism_year(con)
    _problematic_absence(con)
    yield con
    con.close()


def test_the_attacker_recovers_the_three_cells_of_the_issue(attacked):
    result = disclosure.audit(attacked)
    assert _interval(result, GRADE_9) == (3, 3)
    assert _interval(result, GRADE_9_MINUTES) == (3000, 3000)
    assert _interval(result, FEBRUARY) == (4, 4)
    assert _interval(result, FEBRUARY_COST) == (Decimal("41605.20"), Decimal("41605.20"))
    assert _interval(result, AREA_1) == (0, 4)
    assert _interval(result, AREA_2) == (0, 4)
    assert not result.passed
    assert {q.label for q in result.failures} == {
        GRADE_9,
        GRADE_9_MINUTES,
        FEBRUARY,
        FEBRUARY_COST,
        AREA_1,
        AREA_2,
    }


def test_linked_suppression_leaves_each_attack_a_wide_interval(attacked):
    added, _ = disclosure.protect(attacked)
    # the smallest published cell of each relation that pinned a withheld one
    assert sorted(disclosure._label(c) for c in added) == [
        "mart_attendance_school_grade_month[S1, 7, 2025-09-01].pupils",
        "mart_problematic_absence_area_term[area, A3, HT2025, 10.00].pupils_at_or_above",
        "mart_vandalism_area_month[area, A, 2025-01-01].vandalism_orders",
    ]
    result = disclosure.audit(attacked)
    assert result.passed
    assert _interval(result, GRADE_9) == (0, 33)
    assert _interval(result, GRADE_9_MINUTES) == (0, 33000)
    assert _interval(result, FEBRUARY) == (0, 14)
    assert _interval(result, FEBRUARY_COST) == (0, Decimal("141605.20"))
    assert _interval(result, AREA_1) == (0, 24)
    assert _interval(result, AREA_2) == (0, 24)
    # the row is withheld as a whole: its rate and status too
    assert attacked.execute(
        "select pupils, offered_minutes, total_absence_pct, absence_pct_status, is_suppressed "
        "from mart_attendance_school_grade_month where grade = '7'"
    ).fetchone() == (None, None, None, "withheld", True)
    assert attacked.execute(
        "select pupils, pupils_at_or_above, share_at_or_above_pct, is_suppressed "
        "from mart_problematic_absence_area_term where area_code = 'A3'"
    ).fetchone() == (60, None, None, True)


def test_audit_disclosure_reports_on_the_served_file(tmp_path, monkeypatch):
    marts = tmp_path / "marts.duckdb"
    con = duckdb.connect(str(marts))
    _vandalism_year(con)
    con.close()
    monkeypatch.setenv("LAGESBILD_DATA_DIR", str(tmp_path / "data"))
    report = tmp_path / "audit.md"
    failed = CliRunner().invoke(
        app, ["audit-disclosure", "--marts", str(marts), "--out", str(report)]
    )
    assert failed.exit_code == 1, failed.output
    assert "FAIL: 2 can be narrowed" in " ".join(failed.output.split())
    text = report.read_text()
    assert "**Verdict: FAIL**" in text
    assert f"| {FEBRUARY} | count | 4 | 4 | **no** |" in text

    con = duckdb.connect(str(marts))
    disclosure.protect(con)
    con.close()
    passed = CliRunner().invoke(
        app, ["audit-disclosure", "--marts", str(marts), "--out", str(report)]
    )
    assert passed.exit_code == 0, passed.output
    assert "**Verdict: PASS**" in report.read_text()
    assert f"| {FEBRUARY} | count | 0 | 14 | yes |" in report.read_text()


def test_the_publish_protects_links_and_opens_only_the_served_marts(tmp_path):
    """work.duckdb (dbt's result) keeps its cells and stays owner-only; the served file gets
    the linked suppression and is world-readable."""
    import os
    import stat

    from flows.layers import files
    from flows.warehouse.publish import publish
    from lagesbild.settings import Paths

    previous = files.private_files()
    try:
        paths = Paths(tmp_path / "data", tmp_path / "drop")
        paths.warehouse.mkdir(parents=True)
        work = duckdb.connect(str(paths.work_db))
        work.execute("create schema marts; use marts")
        _vandalism_year(work)
        work.close()
        tables = publish(paths, "v1.4.0")
    finally:
        os.umask(previous)
    assert tables == ["mart_vandalism_area_month", "mart_vandalism_area_year"]
    mode = {p: stat.S_IMODE(p.stat().st_mode) for p in (paths.work_db, paths.marts_db)}
    assert mode == {paths.work_db: 0o600, paths.marts_db: 0o644}
    parquet = sorted(paths.marts_parquet.resolve().glob("*.parquet"))
    assert [stat.S_IMODE(p.stat().st_mode) for p in parquet] == [0o644, 0o644]
    served = duckdb.connect(str(paths.marts_db), read_only=True)
    assert served.execute(
        "select vandalism_orders from mart_vandalism_area_month order by month"
    ).fetchall() == [(None,), (None,), (12,)]
    assert disclosure.audit(served).passed
    served.close()
    work = duckdb.connect(str(paths.work_db), read_only=True)
    assert work.execute(
        "select vandalism_orders from marts.mart_vandalism_area_month order by month"
    ).fetchall() == [(10,), (None,), (12,)]
    work.close()
    assert pl.read_parquet(paths.marts_parquet / "mart_vandalism_area_month.parquet")[
        "vandalism_orders"
    ].to_list() == [None, None, 12]


# --- determinism: the same marts give the same suppression, whatever the row order -------

SCHOOLS = {"S1": "A", "S2": "B", "S3": "B", "S4": "C", "S5": "C", "S6": "C"}
GRADES = ["7", "8", "9"]
MONTHS = [date(2025, 9, 1), date(2025, 10, 1), date(2025, 11, 1)]
AREAS = ["A", "B", "C"]


def _pupils(school: str, grade: str) -> int:
    """Fixed: a small grade in S2 and S5 (primary), and ties: S2 grade 8 and S3 grade 7 are
    both the smallest complement (5 pupils), the cell order decides."""
    return {"S1": 20, "S2": 4, "S3": 5, "S4": 12, "S5": 4, "S6": 12}[school] + int(grade) - 7


def _orders(area: str, month: int) -> int:
    return {"A": [2, 6, 6, 1, 9, 6], "B": [8, 8, 3, 8, 8, 8], "C": [5, 5, 5, 5, 4, 5]}[area][
        month - 1
    ]


SCHOOL_COLUMNS = {
    "school_unit_code": "varchar",
    "area_code": "varchar",
    "grade": "varchar",
    "month": "date",
    "pupils": "bigint",
    "offered_minutes": "decimal(18, 2)",
    "absence_pct_status": "varchar",
    "is_suppressed": "boolean",
}
TERM_COLUMNS = {
    "area_code": "varchar",
    "term": "varchar",
    "pupils": "bigint",
    "offered_minutes": "decimal(18, 2)",
    "is_suppressed": "boolean",
}
VANDALISM_COLUMNS = {
    "scope": "varchar",
    "area_code": "varchar",
    "month": "date",
    "vandalism_orders": "bigint",
    "vandalism_cost_sek": "decimal(18, 2)",
    "is_suppressed": "boolean",
}


def _town_rows() -> dict[str, tuple[dict[str, str], list[tuple]]]:
    """A small municipality's marts after dbt's primary suppression (below 5 withheld): three
    areas (A with one school), six months of vandalism with small months."""
    school, pupils, minutes = [], dict.fromkeys(AREAS, 0), dict.fromkeys(AREAS, 0)
    for code, area in SCHOOLS.items():
        for grade in GRADES:
            n = _pupils(code, grade)
            pupils[area] += n
            minutes[area] += n * 1000 * len(MONTHS)
            small = n < 5
            for month in MONTHS:
                value = None if small else n
                cost = None if small else Decimal(n * 1000)
                status = "withheld" if small else "ok"
                school.append((code, area, grade, month, value, cost, status, small))
    term = [(a, "HT2025", pupils[a], Decimal(minutes[a]), False) for a in AREAS]
    months, years = [], []
    for area in AREAS:
        for m in range(1, 7):
            n = _orders(area, m)
            small = n < 5
            cost = None if small else Decimal(n) * Decimal("1234.56")
            months.append(("area", area, date(2025, m, 1), None if small else n, cost, small))
        n = sum(_orders(area, m) for m in range(1, 7))
        years.append(("area", area, 2025, n, Decimal(n) * Decimal("1234.56"), False))
    year_columns = {
        "scope": "varchar",
        "area_code": "varchar",
        "year": "integer",
        "vandalism_orders": "bigint",
        "vandalism_cost_sek": "decimal(18, 2)",
        "is_suppressed": "boolean",
    }
    return {
        "mart_attendance_school_grade_month": (SCHOOL_COLUMNS, school),
        "mart_attendance_area_term": (TERM_COLUMNS, term),
        "mart_vandalism_area_month": (VANDALISM_COLUMNS, months),
        "mart_vandalism_area_year": (year_columns, years),
    }


def _town(shuffle: int | None) -> duckdb.DuckDBPyConnection:
    """The town's marts, their rows inserted in order or shuffled."""
    import random

    con = duckdb.connect()
    for name, (columns, rows) in _town_rows().items():
        rows = list(rows)
        if shuffle is not None:
            random.Random(shuffle).shuffle(rows)
        _table(con, name, columns, rows)
    return con


def _served(con) -> dict[str, list[tuple]]:
    return {
        name: con.execute(f"select * from {name} order by all").fetchall() for name in _town_rows()
    }


def _protect_elsewhere(tmp_path, shuffle: int, hash_seed: str) -> list[str]:
    """The protection in another Python process, with another string hash seed."""
    import os
    import subprocess
    import sys

    path = tmp_path / f"town-{shuffle}.duckdb"
    con = _town(shuffle)
    con.execute(f"attach '{path}' as town")
    for name in _town_rows():
        con.execute(f"create table town.{name} as select * from {name}")
    con.close()
    script = (
        "import duckdb; from flows import disclosure\n"
        f"con = duckdb.connect({str(path)!r})\n"
        "added, _ = disclosure.protect(con)\n"
        "print('\\n'.join(disclosure._label(c) for c in added))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in done.stdout.splitlines() if "[" in line and "HiGHS" not in line]


# The cells linked suppression withholds in the town, in the order it withholds them: S2
# grade 8 (5 pupils) ties with S3 grade 7 and wins by cell order; S5 grade 8 is area C's
# smallest; February is the first of area A's three 6-order months, January of area C's
# 5-order months; B's January the first of its 8-order months.
TOWN_LINKED = [
    *(
        f"mart_attendance_school_grade_month[{s}, 8, 2025-{m}-01].pupils"
        for s in ("S2", "S5")
        for m in ("09", "10", "11")
    ),
    "mart_vandalism_area_month[area, A, 2025-02-01].vandalism_orders",
    "mart_vandalism_area_month[area, B, 2025-01-01].vandalism_orders",
    "mart_vandalism_area_month[area, C, 2025-01-01].vandalism_orders",
]


def test_the_same_marts_in_any_row_order_get_the_same_suppression(tmp_path):
    """The protection twice on the same marts, rows shuffled, and once more in another
    process with another hash seed: the same cells withheld, the same served rows."""
    results = []
    for shuffle in (None, 1):
        con = _town(shuffle)
        added, result = disclosure.protect(con)
        results.append(([disclosure._label(c) for c in added], _served(con), result))
        con.close()
    (added, served, result), (other_added, other_served, _) = results
    assert added == other_added == TOWN_LINKED
    assert served == other_served
    assert _protect_elsewhere(tmp_path, 2, "12345") == TOWN_LINKED
    # nothing withheld can be narrowed below the protection: exact intervals
    assert result.passed and len(result.quantities) == 38
    intervals = {q.label: (q.lower, q.upper) for q in result.quantities}
    school = "mart_attendance_school_grade_month[{}, {}, 2025-09-01].{}"
    assert intervals[school.format("S2", 7, "pupils")] == (0, 9)
    assert intervals[school.format("S5", 8, "offered_minutes")] == (0, Decimal("27000.00"))
    assert intervals["mart_vandalism_area_month[area, A, 2025-04-01].vandalism_orders"] == (0, 9)
    assert intervals["mart_vandalism_area_month[area, B, 2025-03-01].vandalism_cost_sek"] == (
        0,
        Decimal("13580.16"),
    )


# --- rates: a withheld rate of a published row, from the area's rate and the other rows --


def _rates_area(con) -> None:
    """Area A, one school, September: grades 7 and 8 published with their rates, grade 9 (7
    pupils, fewer than min_denominator) with its count and minutes but not its rate (10.00 %);
    the area × term rate published (4,600 of 77,000 minutes: 5.97 %)."""
    rates = {c: "decimal(9, 2)" for c in disclosure.RATES}
    _table(
        con,
        "mart_attendance_school_grade_month",
        {
            "school_unit_code": "varchar",
            "area_code": "varchar",
            "grade": "varchar",
            "month": "date",
            "pupils": "bigint",
            "offered_minutes": "decimal(18, 2)",
            **rates,
            "absence_pct_status": "varchar",
            "is_suppressed": "boolean",
        },
        [
            ("S1", "A", "7", date(2025, 9, 1), 30, 30000, 5, 0, 0, 5, "ok", False),
            ("S1", "A", "8", date(2025, 9, 1), 40, 40000, 6, 0, 0, 6, "ok", False),
            ("S1", "A", "9", date(2025, 9, 1), 7, 7000, None, None, None, None, "withheld", True),
        ],
    )
    _table(
        con,
        "mart_attendance_area_term",
        {**TERM_COLUMNS, **rates, "absence_pct_status": "varchar"},
        [("A", "HT2025", 77, 77000, False, Decimal("5.97"), 0, 0, Decimal("5.97"), "ok")],
    )


RATE_9 = "mart_attendance_school_grade_month[S1, 9, 2025-09-01].total_absence_pct"
RATE_7 = "mart_attendance_school_grade_month[S1, 7, 2025-09-01].total_absence_pct"


def test_a_withheld_rate_is_estimated_then_protected():
    con = duckdb.connect()
    _rates_area(con)
    # the area's absent minutes (5.97 % ± 0.005 of 77,000) minus grades 7 and 8's: 689.55 to
    # 704.25 of grade 9's 7,000 minutes
    result = disclosure.audit(con)
    assert _interval(result, RATE_9) == (Decimal("9.85"), Decimal("10.06"))
    # valid absence too (all absence is valid here); invalid and other lie in 0 to 0.08 %:
    # an interval from 0 is protected, like a magnitude's
    assert [q.label for q in result.failures] == [RATE_9.replace("total", "valid"), RATE_9]
    added, _ = disclosure.protect(con)
    # grade 7 has the fewest minutes of the published rows: its rates go too, count kept
    assert [disclosure._label(c) for c in added] == [RATE_7]
    assert con.execute(
        "select pupils, offered_minutes, total_absence_pct, absence_pct_status, is_suppressed "
        "from mart_attendance_school_grade_month where grade = '7'"
    ).fetchone() == (30, 30000, None, "withheld", True)
    result = disclosure.audit(con)
    assert result.passed
    # grades 7 and 9 share 2,191.05 to 2,202.75 absent minutes
    assert _interval(result, RATE_9) == (0, Decimal("31.47"))
    assert _interval(result, RATE_7) == (0, Decimal("7.34"))
    con.close()
