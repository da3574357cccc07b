"""The nightly flow end to end on a small generated municipality.

Expected mart figures are computed here, independently of the pipeline, from the generator's
ground truth (every valid lesson it wrote, before dirty rows were added) and the reference
files, with the rules the marts document (percentages of offered minutes, suppression below
5 persons / rates below 10 pupils).
"""

from __future__ import annotations

import itertools
import json
import re
from datetime import timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from flows.layers.audit import read_audit, read_runs
from flows.nightly import nightly
from lagesbild.settings import Settings

MIN_PERSONS, MIN_DENOMINATOR = 5, 10
ABSENCES = ["valid_absence_minutes", "invalid_absence_minutes", "other_absence_minutes"]


def marts(paths) -> dict[str, pl.DataFrame]:
    con = duckdb.connect(str(paths.marts_db), read_only=True)
    try:
        names = [
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables where table_schema = 'main'"
            ).fetchall()
        ]
        # Row order is not part of a table's content: compare sorted.
        return {
            n: con.sql(f'select * from marts."{n}"').pl().sort(pl.all(), nulls_last=True)
            for n in sorted(names)
        }
    finally:
        con.close()


def file_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def first_run(pipeline_env):
    """The session's baseline run (a first nightly over the whole drop folder), in this
    module's copy: the tests below run the pipeline again on it."""
    return Settings().paths


def test_limit_and_pandas_peer_equal_the_published_marts(first_run, municipality, tmp_path):
    """What `make bench` checks at every scale, on this run: benchmarks/limit.sql on the landed
    files and benchmarks/pandas_peer.py on the raw exports give exactly the published marts."""
    from benchmarks import pandas_peer
    from benchmarks.compare import MARTS, compare_folders, row_counts
    from benchmarks.limit import run_limit
    from tests.flows.conftest import TEST_KEY

    settings = Settings()
    drop, published = settings.paths.drop, first_run.marts_parquet
    assert all(n > 0 for n in row_counts(published).values())
    seconds = run_limit(first_run.landing, drop / "reference", tmp_path / "limit", settings)
    assert list(seconds) == ["clean", "marts", "publish"]
    assert compare_folders(published, tmp_path / "limit") == dict.fromkeys(MARTS)

    _, rejected = pandas_peer.run(
        drop,
        tmp_path / "pandas",
        TEST_KEY.encode(),
        thresholds_csv=settings.dbt_project_dir / "seeds" / "absence_thresholds.csv",
        municipality_code=settings.municipality.code,
        municipality_name=settings.municipality.name,
        min_persons=settings.suppression.min_persons,
        min_denominator=settings.suppression.min_denominator,
    )
    assert compare_folders(published, tmp_path / "pandas", cast=True) == dict.fromkeys(MARTS)
    # It rejects exactly the rows the generator made dirty (duplicates are dropped, not rejected).
    dirty = pl.read_csv(municipality["truth"] / "dirty_rows.csv")
    expected = dict(dirty.filter(pl.col("kind") != "duplicate").group_by("kind").len().iter_rows())
    assert {k: v for k, v in rejected.items() if v} == expected


def truth_days(municipality) -> pl.DataFrame:
    drop, truth = municipality["drop"], municipality["truth"]
    schools = pl.read_csv(drop / "reference/schools.csv", infer_schema=False)
    calendar = pl.read_csv(drop / "reference/school_calendar.csv", infer_schema=False)
    calendar = calendar.with_columns(pl.col("date").str.to_date())
    lessons = pl.read_parquet(truth / "lessons.parquet")
    days = lessons.group_by("pupil_id", "school_unit_code", "date", "grade").agg(
        pl.col("offered_minutes", *ABSENCES).sum()
    )
    return days.join(
        schools.select("school_unit_code", "school_name", "area_code"), on="school_unit_code"
    ).join(calendar.select("date", "school_year", "term"), on="date")


def expected_rates(grouped: pl.DataFrame) -> pl.DataFrame:
    pct = {
        f"{c.replace('_minutes', '')}_pct": 100 * pl.col(c) / pl.col("offered_minutes")
        for c in ABSENCES
    }
    return grouped.with_columns(
        **pct, total_absence_pct=100 * pl.sum_horizontal(ABSENCES) / pl.col("offered_minutes")
    )


RATES = ["valid_absence_pct", "invalid_absence_pct", "other_absence_pct", "total_absence_pct"]


def assert_matches(actual: pl.DataFrame, expected: pl.DataFrame, key: list[str]) -> int:
    """Counts and minutes exactly; percentages to the published two decimals; suppression.
    Returns how many rows linked suppression (flows/disclosure.py) withheld besides (whole, or
    their rates)."""
    assert actual.height == expected.height
    joined = expected.join(actual, on=key, how="left", suffix="_mart")
    linked = 0
    for row in joined.iter_rows(named=True):
        small = row["pupils"] < MIN_PERSONS
        few = row["pupils"] < MIN_DENOMINATOR
        if row["pupils_mart"] is None and not small:  # withheld by linked suppression: whole
            assert row["is_suppressed"] and row["absence_pct_status"] == "withheld", row
            assert row["offered_minutes_mart"] is None, row
            assert all(row[f"{c}_mart"] is None for c in RATES), row
            linked += 1
            continue
        rates_withheld = row["pupils_mart"] is not None and row["absence_pct_status"] == "withheld"
        if rates_withheld and not few:  # its rates withheld by linked rate suppression
            assert row["is_suppressed"], row
            assert row["pupils_mart"] == row["pupils"], row
            assert row["offered_minutes_mart"] == row["offered_minutes"], row
            assert all(row[f"{c}_mart"] is None for c in RATES), row
            linked += 1
            continue
        assert row["is_suppressed"] == few, row
        status = "withheld" if few else ("ok" if row["offered_minutes"] else "missing")
        assert row["absence_pct_status"] == status, row
        assert row["pupils_mart"] == (None if small else row["pupils"]), row
        assert row["offered_minutes_mart"] == (None if small else row["offered_minutes"]), row
        for column in (
            "valid_absence_pct",
            "invalid_absence_pct",
            "other_absence_pct",
            "total_absence_pct",
        ):
            if few:
                assert row[f"{column}_mart"] is None, row
            else:
                published = float(row[f"{column}_mart"])  # DECIMAL(9, 2)
                assert abs(published - row[column]) <= 0.005 + 1e-9, (column, row)
    return linked


def test_school_grade_month_mart_matches_truth(first_run, municipality):
    days = truth_days(municipality).with_columns(month=pl.col("date").dt.truncate("1mo"))
    expected = expected_rates(
        days.group_by("school_unit_code", "grade", "month").agg(
            pupils=pl.col("pupil_id").n_unique(),
            school_days=pl.col("date").n_unique(),
            offered_minutes=pl.col("offered_minutes").sum(),
            **{c: pl.col(c).sum() for c in ABSENCES},
        )
    )
    actual = marts(first_run)["mart_attendance_school_grade_month"]
    linked = assert_matches(actual, expected, ["school_unit_code", "grade", "month"])
    assert linked < actual.filter(~pl.col("is_suppressed")).height / 4
    assert actual.filter(~pl.col("is_suppressed")).height > 0  # the test sees real figures


def test_area_term_marts_match_truth(first_run, municipality):
    days = truth_days(municipality)
    expected = expected_rates(
        days.group_by("area_code", "term").agg(
            pupils=pl.col("pupil_id").n_unique(),
            data_through=pl.col("date").max(),
            offered_minutes=pl.col("offered_minutes").sum(),
            **{c: pl.col(c).sum() for c in ABSENCES},
        )
    )
    published = marts(first_run)
    actual = published["mart_attendance_area_term"]
    assert_matches(actual, expected, ["area_code", "term"])
    assert (
        actual.sort("area_code")["data_through"].to_list()
        == expected.sort("area_code")["data_through"].to_list()
    )

    # Pupils at or above each threshold, over their days in the area (and the municipality).
    thresholds = [10, 15, 20]
    per_area = days.group_by("pupil_id", "area_code", "term").agg(
        pl.col("offered_minutes", *ABSENCES).sum()
    )
    per_town = days.group_by("pupil_id", "term").agg(pl.col("offered_minutes", *ABSENCES).sum())
    problem = published["mart_problematic_absence_area_term"]
    for scope, frame, key in (
        ("area", per_area, ["area_code", "term"]),
        ("municipality", per_town, ["term"]),
    ):
        pct = 100 * pl.sum_horizontal(ABSENCES) / pl.col("offered_minutes")
        for threshold in thresholds:
            expected = frame.group_by(key).agg(
                pupils=pl.len(), at_or_above=(pct >= threshold).sum()
            )
            for row in expected.iter_rows(named=True):
                match = problem.filter(
                    (pl.col("scope") == scope)
                    & (pl.col("threshold_pct") == threshold)
                    & (pl.col("term") == row["term"])
                    & ((pl.col("area_code") == row["area_code"]) if scope == "area" else True)
                )
                assert match.height == 1
                got = match.row(0, named=True)
                if got["pupils"] is not None or row["pupils"] < MIN_PERSONS:  # else linked
                    assert got["pupils"] == (
                        row["pupils"] if row["pupils"] >= MIN_PERSONS else None
                    )
                primary = row["at_or_above"] < MIN_PERSONS or row["pupils"] < MIN_DENOMINATOR
                if primary:
                    assert got["pupils_at_or_above"] is None and got["is_suppressed"]
                elif not got["is_suppressed"]:
                    assert got["pupils_at_or_above"] == row["at_or_above"]
                    share = 100 * row["at_or_above"] / row["pupils"]
                    assert abs(float(got["share_at_or_above_pct"]) - share) <= 0.005 + 1e-9
    town = problem.filter(pl.col("scope") == "municipality")
    assert town.filter(pl.col("pupils_at_or_above").is_not_null()).height > 0


def test_row_accounting_and_quarantine_reasons(first_run, municipality):
    audit = read_audit(first_run.audit).filter(pl.col("source") == "attendance_export")
    files = sorted(
        str(p.relative_to(municipality["drop"]))
        for p in municipality["drop"].glob("attendance/*/*")
    )
    assert sorted(audit["file"].to_list()) == files
    for row in audit.iter_rows(named=True):
        assert row["rows_received"] == (
            row["rows_clean"] + row["rows_quarantined"] + row["rows_duplicate"]
        )
        assert row["status"] == "cleaned" and row["gate"] in ("passed", "passed_with_warnings")
    dirty = pl.read_csv(municipality["truth"] / "dirty_rows.csv")
    lessons = pl.read_parquet(municipality["truth"] / "lessons.parquet")
    assert audit["rows_clean"].sum() == lessons.height
    assert audit["rows_duplicate"].sum() == dirty.filter(pl.col("kind") == "duplicate").height
    quarantine = pl.concat(  # each layout keeps its own original columns
        [pl.read_parquet(p) for p in first_run.quarantine.glob("attendance/**/*.parquet")],
        how="diagonal",
    )
    expected = dirty.filter(pl.col("kind") != "duplicate").group_by("kind").len().sort("kind")
    actual = quarantine.group_by("reason").len().rename({"reason": "kind"}).sort("kind")
    assert actual.to_dicts() == expected.to_dicts()
    # Each quarantined row is exactly a row the generator made dirty, with that reason.
    located = (
        quarantine.join(audit.select("load_id", "file"), on="load_id")
        .select("file", row_number="_source_row", kind="reason")
        .sort(pl.all())
    )
    assert (
        located.to_dicts() == dirty.filter(pl.col("kind") != "duplicate").sort(pl.all()).to_dicts()
    )
    report = next(first_run.runs.glob("*.md")).read_text()
    assert "status: **Completed**" in report and "rows_quarantined" in report


def _personal_ids(drop: Path) -> set[str]:
    """Every personal id in the generated exports, as digits/letters without separators."""
    ids = set()
    for path in drop.glob("attendance/skola24/*.csv"):
        ids |= set(
            pl.read_csv(path, separator=";", encoding="cp1252", infer_schema=False)["Personnummer"]
            .drop_nulls()
            .to_list()
        )
    for path in drop.glob("attendance/ist/*.xlsx"):
        ids |= set(
            pl.read_excel(path, sheet_name="Närvaro", infer_schema_length=0)["Elev-ID"]
            .drop_nulls()
            .to_list()
        )
    forms = set()
    for raw in ids:
        compact = re.sub(r"[-+\s]", "", raw)
        forms |= {compact, compact[-10:]} if len(compact) >= 10 else set()
    return forms


def _text_of(path: Path) -> str:
    if path.suffix == ".parquet":
        frame = pl.read_parquet(path)
        return frame.select(pl.all().cast(pl.String)).write_csv()
    if path.suffix == ".duckdb":
        con = duckdb.connect(str(path), read_only=True)
        try:
            tables = con.execute(
                "select table_catalog, table_schema, table_name from information_schema.tables"
            ).fetchall()
            return "\n".join(
                con.sql(f'select * from "{c}"."{s}"."{t}"').pl().write_csv() for c, s, t in tables
            )
        finally:
            con.close()
    return path.read_bytes().decode("utf-8", errors="ignore")


def test_no_file_the_pipeline_wrote_contains_a_personnummer(first_run, municipality):
    ids = _personal_ids(municipality["drop"])
    assert len(ids) > PUPILS_MIN
    written = [
        p
        for p in first_run.data.rglob("*")
        if p.is_file() and "prefect" not in p.parts and ".wal" not in p.suffix
    ]
    assert any(p.suffix == ".parquet" for p in written) and first_run.marts_db in written
    for path in written:
        tokens = set(
            re.findall(
                r"[0-9A-Z]{10,12}", re.sub(r"(?<=\d)[-+](?=[0-9A-Z]{4})", "", _text_of(path))
            )
        )
        assert not tokens & ids, f"{path} contains a personal id"


PUPILS_MIN = 100


def published_disclosure(paths) -> dict[str, dict]:
    """Each published mart's disclosure declaration (dbt meta), from the run's manifest."""
    manifest = json.loads((paths.warehouse / "dbt_target" / "manifest.json").read_text())
    return {
        node["name"]: node["config"].get("meta", {}).get("disclosure")
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["schema"] == "marts"
    }


def assert_no_small_cells(paths) -> None:
    """Every published mart declares its person counts and rates; none is under the thresholds."""
    declared = published_disclosure(paths)
    for name, frame in marts(paths).items():
        disclosure = declared.get(name)
        assert disclosure is not None, f"{name} declares no `disclosure` meta in its dbt YAML"
        for column in disclosure["person_counts"]:
            small = frame.filter(pl.col(column) < MIN_PERSONS)
            assert small.is_empty(), f"{name}.{column} publishes a count below {MIN_PERSONS}"
        for rate, denominator in disclosure.get("rates", {}).items():
            exposed = frame.filter(
                (pl.col(denominator).fill_null(0) < MIN_DENOMINATOR) & pl.col(rate).is_not_null()
            )
            assert exposed.is_empty(), f"{name}.{rate} is published over fewer than 10"
        if "threshold_pct" in frame.columns:  # nested counts: no band of 1-4 pupils either
            for _, group in frame.sort("threshold_pct").group_by("scope", "area_code", "term"):
                published = [group["pupils"][0], *group["pupils_at_or_above"]]
                published = [v for v in published if v is not None]
                bands = [a - b for a, b in itertools.pairwise(published)]
                assert all(b == 0 or b >= MIN_PERSONS for b in bands), (name, group)


def test_no_published_cell_under_the_thresholds(first_run):
    assert_no_small_cells(first_run)
    # Pupil-level models stay in the work warehouse.
    con = duckdb.connect(str(first_run.marts_db), read_only=True)
    schemas = {
        r[0]
        for r in con.execute(
            "select distinct table_schema from information_schema.tables"
        ).fetchall()
    }
    con.close()
    assert schemas == {"main"}


def test_second_run_changes_nothing_while_a_reader_holds_the_marts(first_run):
    clean_before = file_bytes(first_run.clean)
    marts_before = marts(first_run)
    reader = duckdb.connect(str(first_run.marts_db), read_only=True)
    try:
        seen_before = reader.execute(
            "select count(*) from marts.mart_attendance_school_grade_month"
        ).fetchone()
        # the next day: nothing new, so dbt rebuilds only the run-date mart (freshness) and
        # publishes it (on the same day the run would skip publishing: tests/flows/
        # test_quiet_night.py); publishing must neither block nor error
        next_day = read_runs(first_run.audit)["run_date"][-1] + timedelta(days=1)
        state = nightly(run_date=next_day, return_state=True)
        assert state.is_completed(), state.message
        assert reader.execute(
            "select count(*) from marts.mart_attendance_school_grade_month"
        ).fetchone() == (seen_before)
    finally:
        reader.close()
    assert file_bytes(first_run.clean) == clean_before
    after = marts(first_run)
    assert after.keys() == marts_before.keys()
    for name, frame in after.items():
        if name != "mart_source_freshness":  # judged on the run date
            assert frame.equals(marts_before[name]), name
    audit = read_audit(first_run.audit)
    assert audit.height == audit["load_id"].n_unique()  # the second run landed nothing


def test_critical_gate_failure_keeps_the_published_marts(first_run):
    """A weekend lesson (an export with a make-up Saturday not in the calendar) blocks."""
    drop = Settings().paths.drop
    source = sorted(drop.glob("attendance/skola24/*.csv"))[-1]
    lines = source.read_bytes().decode("cp1252").split("\r\n")
    header, row = lines[0], lines[1].split(";")
    row[6] = "2025-10-25"  # a Saturday
    (drop / "attendance/skola24/skola24_extra_lordag.csv").write_bytes(
        "\r\n".join([header, ";".join(row)]).encode("cp1252")
    )
    served_before = file_bytes(first_run.warehouse / "marts"), first_run.marts_db.read_bytes()
    clean_before = file_bytes(first_run.clean)

    state = nightly(return_state=True)

    assert state.is_failed()
    assert "date_iso" in state.message or "critical" in str(state.message)
    assert (file_bytes(first_run.warehouse / "marts"), first_run.marts_db.read_bytes()) == (
        served_before
    )
    assert file_bytes(first_run.clean) == clean_before
    audit = read_audit(first_run.audit)
    failed = audit.filter(pl.col("file").str.contains("lordag"))
    assert failed["status"].to_list() == ["gate_failed"]
    assert failed["gate"].to_list() == ["failed"]
    latest = max(first_run.runs.glob("*.md"), key=lambda p: p.stat().st_mtime).read_text()
    assert "status: **Failed**" in latest and "date_iso" in latest
