"""The Great Expectations gate on clean attendance frames (GX itself, no Prefect)."""

import gc
from datetime import date

import polars as pl
import pytest

from flows.attendance.dataset import checked_frame
from flows.layers import gate
from lagesbild.settings import PROJECT_ROOT

SUITE = PROJECT_ROOT / "expectations" / "attendance_pupil_days.json"
SCHOOL_DAYS = {date(2025, 9, 1), date(2025, 9, 2)}


def days(**changes) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "pupil_key": ["a" * 64, "b" * 64, "a" * 64],
            "school_unit_code": ["12345678"] * 3,
            "date": [date(2025, 9, 1), date(2025, 9, 1), date(2025, 9, 2)],
            "grade": ["7", "7", "7"],
            "offered_minutes": [300.0, 300.0, 300.0],
            "attended_minutes": [300.0, 240.0, 290.0],
            "valid_absence_minutes": [0.0, 60.0, 0.0],
            "invalid_absence_minutes": [0.0, 0.0, 10.0],
            "other_absence_minutes": [0.0, 0.0, 0.0],
        }
    )
    return frame.with_columns(**{k: pl.Series(v) for k, v in changes.items()})


def attendance_parameters(frame, previous_rows_per_day, tolerance=0.5) -> dict:
    """What `flows.attendance.dataset.Attendance.parameters` gives the suite."""
    days = frame.get_column("date").n_unique()
    expected = None if previous_rows_per_day is None else previous_rows_per_day * days
    return {
        "known_school_unit_codes": ["12345678"],
        "school_days": sorted(d.isoformat() for d in SCHOOL_DAYS),
        "expected_rows_min": 0 if expected is None else int(expected * (1 - tolerance)),
        "expected_rows_max": None if expected is None else int(expected * (1 + tolerance)) + 1,
    }


def run(frame: pl.DataFrame, previous_rows_per_day=None, tmp_path=None) -> gate.GateResult:
    parameters = attendance_parameters(frame, previous_rows_per_day)
    return gate.validate_frame(
        checked_frame(frame),
        SUITE,
        parameters,
        partition="period=2025-09",
        report_dir=tmp_path,
    )


@pytest.mark.timeout(120)
def test_clean_frame_passes_and_the_result_is_kept(tmp_path):
    result = run(days(), tmp_path=tmp_path)
    assert result.status == "passed"
    assert len(result.outcomes) == 16
    assert result.report_path.exists() and '"success": true' in result.report_path.read_text()


def test_critical_failures_name_the_expectation_and_examples():
    bad = days(
        pupil_key=["a" * 64, "a" * 64, "6408233234"],  # a duplicate day, a raw personnummer
        school_unit_code=["12345678", "12345678", "99999999"],
        date=[date(2025, 9, 1), date(2025, 9, 1), date(2025, 9, 6)],  # a Saturday
        attended_minutes=[300.0, 250.0, 290.0],  # 250 + 60 != 300
    )
    result = run(bad)
    failed = {(o.expectation, o.column): o for o in result.critical_failures}
    assert set(failed) == {
        ("expect_compound_columns_to_be_unique", "['pupil_key', 'school_unit_code', 'date']"),
        ("expect_column_values_to_match_regex", "pupil_key"),
        ("expect_column_values_to_be_between", "minutes_unaccounted"),
        ("expect_column_values_to_be_in_set", "school_unit_code"),
        ("expect_column_values_to_be_in_set", "date_iso"),
    }
    assert failed[("expect_column_values_to_be_in_set", "date_iso")].sample == ["2025-09-06"]
    assert result.status == "failed"


def test_volume_far_from_the_previous_load_is_only_a_warning():
    # The previous period had 40 pupil days per school day; this one has 1.5.
    result = run(days(), previous_rows_per_day=40.0)
    assert result.status == "passed_with_warnings" and not result.critical_failures
    (warning,) = result.warnings
    assert warning.expectation == "expect_table_row_count_to_be_between"
    assert run(days(), previous_rows_per_day=1.5).status == "passed"


def test_a_personnummer_in_pupil_key_fails_the_gate_and_is_written_nowhere(tmp_path):
    """The check that catches a raw personnummer must not persist it: GX's JSON, the
    validation page and the run summary keep the count, not the value."""
    from flows.layers.clean import CleanOutcome
    from flows.reports import run_summary
    from lagesbild.settings import Paths

    personnummer = "6408233234"
    bad = days(pupil_key=["a" * 64, "b" * 64, personnummer])
    result = run(bad, tmp_path=tmp_path / "validation")
    (caught,) = [o for o in result.critical_failures if o.column == "pupil_key"]
    assert (caught.expectation, caught.unexpected_count, caught.sample) == (
        "expect_column_values_to_match_regex",
        1,
        [],
    )
    paths = Paths(tmp_path / "data", tmp_path / "drop")
    summary = run_summary.RunSummary(
        "run-1", date(2025, 9, 2), "Failed", clean=CleanOutcome(gates=[result])
    )
    report = run_summary.write(summary, paths)
    assert "critical: expect_column_values_to_match_regex on pupil_key: 1 unexpected\n" in (
        report.read_text()
    )
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.suffix for p in written} == {".json", ".md", ".html"}
    for path in written:
        assert personnummer not in path.read_text(), path


def test_the_validated_frame_is_not_kept_alive():
    """GX holds the pandas copy of the frame in reference cycles: the gate frees them before
    it returns, so a run's memory does not grow with every month it validates."""
    import pandas as pd

    def frames() -> int:
        return sum(isinstance(o, pd.DataFrame) for o in gc.get_objects())

    run(days())  # GX's start-up; GX keeps the last batch it validated
    before = frames()
    for _ in range(3):
        run(days())
    assert frames() == before
