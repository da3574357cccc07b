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
    assert f"| {FEBRUARY} | count | 4.00 | 4.00 | **no** |" in text

    con = duckdb.connect(str(marts))
    disclosure.protect(con)
    con.close()
    passed = CliRunner().invoke(
        app, ["audit-disclosure", "--marts", str(marts), "--out", str(report)]
    )
    assert passed.exit_code == 0, passed.output
    assert "**Verdict: PASS**" in report.read_text()
    assert f"| {FEBRUARY} | count | 0.00 | 14.00 | yes |" in report.read_text()


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
