"""The demo generator: deterministic, valid layouts, and dirty rows exactly where it says."""

import csv
import re
from collections import Counter
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from demo.generate import SKOLA24_HEADER, generate

THROUGH = date(2025, 11, 12)  # three and a half months: month boundaries and höstlov
PUPILS = 200
IST_HEADER = [
    "Elev-ID",
    "Skolenhet",
    "Åk",
    "Datum",
    "Lektion",
    "Schemalagd tid",
    "Närvarande",
    "Giltig frånvaro",
    "Ogiltig frånvaro",
    "Övrig frånvaro",
]
MINUTE_COLUMNS = IST_HEADER[5:]


def luhn_valid(ten_digits: str) -> bool:
    """Luhn over all ten digits (weights 2,1,…,2,1): valid when the sum ends in 0."""
    total = 0
    for position, char in enumerate(ten_digits):
        product = int(char) * (1 if position % 2 else 2)
        total += sum(int(d) for d in str(product))
    return total % 10 == 0


def ten_digits(personal_id: str) -> str | None:
    """YYMMDD-NNNC or YYYYMMDDNNNC as ten digits; None for temporary ids (letters)."""
    if re.fullmatch(r"\d{6}-\d{4}", personal_id):
        return personal_id.replace("-", "")
    if re.fullmatch(r"\d{12}", personal_id):
        return personal_id[2:]
    assert re.fullmatch(r"\d{6}-[A-Z]{2}\d{2}|\d{8}[A-Z]{2}\d{2}", personal_id), personal_id
    return None


def parse_date(text: str) -> date | None:
    digits = text.replace("-", "")
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


def minutes(text: str) -> float:
    return float(text.replace(",", "."))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    messages: list[str] = []
    summary = generate(
        root / "drop",
        pupils=PUPILS,
        through=THROUGH,
        truth_dir=root / "truth",
        progress=messages.append,
    )
    return root, summary, messages


def read_skola24(path: Path) -> list[dict]:
    text = path.read_bytes().decode("cp1252")
    lines = text.split("\r\n")
    assert lines[-1] == ""  # every line ends in CRLF
    header = lines[0].split(";")
    rows = [line.split(";") for line in lines[1:-1]]
    assert all(len(row) == len(header) for row in rows)
    return [dict(zip(header, row, strict=True)) for row in rows]


def read_ist(path: Path) -> list[dict]:
    frame = pl.read_excel(path, sheet_name="Närvaro")
    frame = frame.with_columns(pl.col(MINUTE_COLUMNS).cast(pl.Float64))
    return frame.with_columns(pl.col("Elev-ID").fill_null("")).to_dicts()


def attendance_files(drop: Path) -> list[Path]:
    return sorted((drop / "attendance").rglob("*.*"))


def rows_of(path: Path) -> list[dict]:
    return read_skola24(path) if path.suffix == ".csv" else read_ist(path)


def dirty_by_file(truth: Path) -> dict[str, dict[int, str]]:
    listed: dict[str, dict[int, str]] = {}
    with (truth / "dirty_rows.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            listed.setdefault(row["file"], {})[int(row["row_number"])] = row["kind"]
    return listed


def test_output_is_deterministic(run, tmp_path):
    root, _, _ = run
    generate(tmp_path / "drop", pupils=PUPILS, through=THROUGH, truth_dir=tmp_path / "truth")
    for folder in ("drop", "truth"):
        first = sorted(p.relative_to(root / folder) for p in (root / folder).rglob("*.*"))
        second = sorted(p.relative_to(tmp_path / folder) for p in (tmp_path / folder).rglob("*.*"))
        assert first == second
        for relative in first:
            assert (root / folder / relative).read_bytes() == (
                tmp_path / folder / relative
            ).read_bytes(), relative


def test_files_and_summary(run):
    root, summary, messages = run
    drop = root / "drop"
    names = [path.name for path in attendance_files(drop)]
    assert names == [
        "ist_narvaro_2025-08.xlsx",
        "ist_narvaro_2025-09.xlsx",
        "ist_narvaro_2025-10.xlsx",
        "ist_narvaro_2025-11.xlsx",
        "skola24_franvaro_2025-08.csv",
        "skola24_franvaro_2025-09.csv",
        "skola24_franvaro_2025-10.csv",
        "skola24_franvaro_2025-11.csv",
    ]
    assert set(attendance_files(drop)) <= set(summary.files)
    truth = pl.read_parquet(root / "truth" / "lessons.parquet")
    assert summary.lesson_rows == truth.height
    assert summary.pupils_enrolled == PUPILS == truth["pupil_id"].n_unique()
    assert summary.school_days == truth["date"].n_unique()
    assert any(
        re.fullmatch(r"wrote skola24_franvaro_2025-09\.csv \([\d ]+ rows\)", m) for m in messages
    )
    # every file holds its month's valid rows plus the listed dirty rows
    listed = dirty_by_file(root / "truth")
    for path in attendance_files(drop):
        system, month = ("skola24" if path.suffix == ".csv" else "ist"), path.stem[-7:]
        valid = truth.filter(
            (pl.col("system") == system) & (pl.col("date").dt.strftime("%Y-%m") == month)
        ).height
        relative = path.relative_to(drop).as_posix()
        assert len(rows_of(path)) == valid + len(listed[relative])
    kinds = Counter(kind for rows in listed.values() for kind in rows.values())
    assert {kind: count for kind, count in summary.dirty_rows.items() if count} == dict(kinds)


def test_reference_files(run):
    reference = run[0] / "drop" / "reference"
    areas = list(csv.DictReader((reference / "areas.csv").open(encoding="utf-8")))
    schools = list(csv.DictReader((reference / "schools.csv").open(encoding="utf-8")))
    assert all(re.fullmatch(r"1299[ABC]\d{4}", area["area_code"]) for area in areas)
    assert len(schools) == 10
    assert all(re.fullmatch(r"\d{8}", school["school_unit_code"]) for school in schools)
    assert {school["area_code"] for school in schools} <= {area["area_code"] for area in areas}
    systems = Counter(school["attendance_system"] for school in schools)
    assert systems == {"skola24": 5, "ist": 5}


def test_the_calendar_exceptions_example_is_valid_reference_data(run, tmp_path):
    """The example lies beside the reference files, unread; copied up, it is read."""
    import shutil

    from flows.layers.reference import load_reference

    drop = tmp_path / "drop"
    shutil.copytree(run[0] / "drop" / "reference", drop / "reference")
    shutil.copy(drop / "reference/examples/school_calendar_exceptions.csv", drop / "reference")
    reference = load_reference(drop, tmp_path / "clean")
    assert reference.exceptions.select("school_unit_code", "date", "day_type").rows() == [
        ("34817265", date(2025, 10, 3), "study_day"),
        ("34817265", date(2025, 10, 4), "make_up_day"),
    ]
    assert date(2025, 10, 4) in reference.school_days  # a Saturday, a school day for it


def test_calendar(run):
    path = run[0] / "drop" / "reference" / "school_calendar.csv"
    days = {row["date"]: row for row in csv.DictReader(path.open(encoding="utf-8"))}
    dates = sorted(date.fromisoformat(day) for day in days)
    assert (dates[0], dates[-1]) == (date(2025, 8, 20), date(2026, 6, 12))
    assert len(dates) == (dates[-1] - dates[0]).days + 1  # every calendar date
    for day in dates:
        row = days[day.isoformat()]
        assert row["school_year"] == "2025/26"
        assert (row["is_school_day"] == "true") == (row["day_type"] == "school_day")
        if day.weekday() >= 5:
            assert row["day_type"] == "weekend"
        if row["note"] in {"höstlov", "sportlov", "påsklov", "jullov"}:
            assert row["day_type"] == "break"
    assert days["2025-10-27"]["note"] == "höstlov"
    assert days["2025-11-03"]["is_school_day"] == "true"
    assert days["2025-12-29"]["term"] == "" and days["2025-12-29"]["note"] == "jullov"
    assert days["2026-02-16"]["note"] == "sportlov"  # ISO week 8
    assert days["2026-04-06"]["note"] == "Annandag påsk"
    assert days["2026-04-07"]["note"] == "påsklov"
    assert days["2026-04-03"]["note"] == "Långfredag"
    assert days["2026-05-14"]["note"] == "Kristi himmelsfärdsdag"
    assert days["2026-01-08"]["term"] == "VT2026" and days["2026-01-08"]["is_school_day"] == "true"
    school_days = sum(row["is_school_day"] == "true" for row in days.values())
    assert 175 <= school_days <= 185


def test_skola24_layout(run):
    for path in (run[0] / "drop" / "attendance" / "skola24").glob("*.csv"):
        raw = path.read_bytes()
        assert raw.startswith(";".join(SKOLA24_HEADER).encode("cp1252") + b"\r\n")
        assert b"\n" not in raw.replace(b"\r\n", b"")
        for row in read_skola24(path):
            assert re.fullmatch(r"-?\d+(,5)?", row["Frånvaro (min)"])
            assert row["Lektionslängd (min)"] in {"40", "45", "60"}
            assert row["Årskurs"] in {"F", *map(str, range(1, 10))}
            assert row["Klass"].startswith(row["Årskurs"])
            assert (row["Frånvaro (min)"] == "0") == (row["Frånvarotyp"] == "")


def test_ist_layout(run):
    for path in (run[0] / "drop" / "attendance" / "ist").glob("*.xlsx"):
        frame = pl.read_excel(path, sheet_name="Närvaro")
        assert frame.columns == IST_HEADER
        for column in IST_HEADER[1:5]:
            assert frame[column].dtype == pl.String
        assert frame["Skolenhet"].str.contains(r"^\d{8}$").all()
        assert frame["Lektion"].str.contains(r"^\d\d:\d\d$").all()


def test_personal_ids_are_luhn_valid(run):
    root = run[0]
    listed = dirty_by_file(root / "truth")
    temporary = 0
    for path in attendance_files(root / "drop"):
        id_column = "Personnummer" if path.suffix == ".csv" else "Elev-ID"
        kinds = listed[path.relative_to(root / "drop").as_posix()]
        for row_number, row in enumerate(rows_of(path), start=1):
            kind = kinds.get(row_number)
            if kind == "missing_personal_id":
                assert row[id_column] == ""
                continue
            digits = ten_digits(row[id_column])
            if digits is None:
                temporary += 1
            elif kind == "invalid_personal_id":
                assert not luhn_valid(digits)
            else:
                assert luhn_valid(digits), (path.name, row_number, row[id_column])
    assert temporary > 0
    id_kinds = pl.read_parquet(root / "truth" / "pupils.parquet")["id_kind"]
    assert set(id_kinds) == {"personnummer", "samordningsnummer", "temporary"}


def test_truth_adds_up(run):
    truth = pl.read_parquet(run[0] / "truth" / "lessons.parquet")
    assert truth.columns == [
        "pupil_id",
        "system",
        "school_unit_code",
        "grade",
        "date",
        "lesson_start",
        "offered_minutes",
        "attended_minutes",
        "valid_absence_minutes",
        "invalid_absence_minutes",
        "other_absence_minutes",
    ]
    parts = ["attended_minutes", "valid_absence_minutes", "invalid_absence_minutes"]
    total = pl.sum_horizontal(*parts, "other_absence_minutes")
    assert truth.select((total == pl.col("offered_minutes")).all()).item()
    assert truth.select(pl.min_horizontal(*parts, "other_absence_minutes").min()).item() >= 0
    # one absence type per lesson, and each pupil-day's start times are unique
    absence_types = pl.sum_horizontal(
        (pl.col(c) > 0).cast(pl.Int8) for c in parts[1:] + ["other_absence_minutes"]
    )
    assert truth.select(absence_types.max()).item() <= 1
    assert truth.select("pupil_id", "date", "lesson_start").is_unique().all()
    absence = 1 - truth["attended_minutes"].sum() / truth["offered_minutes"].sum()
    assert 0.02 < absence < 0.15


def test_dirty_rows_are_what_the_truth_says(run):
    root = run[0]
    drop, listed = root / "drop", dirty_by_file(root / "truth")
    schools = {
        row["school_unit_code"]
        for row in csv.DictReader((drop / "reference" / "schools.csv").open(encoding="utf-8"))
    }
    calendar = {
        date.fromisoformat(row["date"])
        for row in csv.DictReader(
            (drop / "reference" / "school_calendar.csv").open(encoding="utf-8")
        )
        if row["is_school_day"] == "true"
    }
    for path in attendance_files(drop):
        is_csv = path.suffix == ".csv"
        names = (
            ("Personnummer", "Skolenhetskod", "Datum", "Starttid")
            if is_csv
            else ("Elev-ID", "Skolenhet", "Datum", "Lektion")
        )
        rows = rows_of(path)
        kinds = listed[path.relative_to(drop).as_posix()]
        expected = {"missing_personal_id", "invalid_personal_id", "invalid_date"}
        expected |= {"unknown_school_unit", "minutes_out_of_range", "duplicate"}
        if not is_csv:
            expected.add("minutes_do_not_add_up")
        assert set(kinds.values()) == expected  # at least one of each kind in every file
        assert 0.002 < len(kinds) / len(rows) < 0.02 or len(kinds) == len(expected)
        valid_keys = Counter(
            tuple(row[name] for name in names)
            for number, row in enumerate(rows, start=1)
            if number not in kinds
        )
        assert max(valid_keys.values()) == 1
        valid_rows = {
            tuple(row.values()) for number, row in enumerate(rows, 1) if number not in kinds
        }

        for number, row in enumerate(rows, start=1):
            kind = kinds.get(number, "")
            day = parse_date(row[names[2]])
            assert (day is None) == (kind == "invalid_date"), (path.name, number)
            if day is not None:
                assert day in calendar and day <= THROUGH
            assert (row[names[1]] not in schools) == (kind == "unknown_school_unit")
            if is_csv:
                absence, length = minutes(row["Frånvaro (min)"]), minutes(row[SKOLA24_HEADER[8]])
                out_of_range = not 0 <= absence <= length
                adds_up = True
            else:
                values = [row[column] for column in MINUTE_COLUMNS]
                out_of_range = any(not 0 <= value <= values[0] for value in values[1:])
                adds_up = sum(values[1:]) == values[0]
            assert out_of_range == (kind == "minutes_out_of_range"), (path.name, number)
            assert (not adds_up and not out_of_range) == (kind == "minutes_do_not_add_up")
            if kind == "duplicate":
                assert tuple(row.values()) in valid_rows
            elif kind:
                # a dirty row never collides with a valid row's key
                assert tuple(row[name] for name in names) not in valid_keys, (path.name, number)
                if kind.startswith("minutes_"):
                    assert row[names[3]] >= "18:00"


def test_years_keep_school_and_advance_grade(tmp_path):
    summary = generate(
        tmp_path / "drop",
        pupils=50,
        years=2,
        through=date(2025, 8, 22),
        truth_dir=tmp_path / "truth",
    )
    truth = pl.read_parquet(tmp_path / "truth" / "lessons.parquet")
    school_year = pl.col("date").dt.year() - (pl.col("date").dt.month() < 7).cast(pl.Int32)
    by_year = truth.with_columns(school_year=school_year).unique(
        ["pupil_id", "school_year", "school_unit_code", "grade"]
    )
    assert by_year.group_by("pupil_id", "school_year").len()["len"].max() == 1
    assert summary.pupils_enrolled == 55  # a new förskoleklass arrives, grade 9 leaves
    first = by_year.filter(pl.col("school_year") == 2024)
    second = by_year.filter(pl.col("school_year") == 2025)
    assert first.height == second.height == 50
    both = first.join(second, on="pupil_id", suffix="_next")
    assert both.height == 45
    assert (both["school_unit_code"] == both["school_unit_code_next"]).all()
    grade = {"F": 0, **{str(g): g for g in range(1, 10)}}
    pairs = zip(both["grade"], both["grade_next"], strict=True)
    assert all(grade[before] + 1 == grade[after] for before, after in pairs)
    assert set(second["grade"]) == {"F", *map(str, range(1, 10))}


def test_a_month_too_big_for_one_workbook_is_exported_in_parts(tmp_path, monkeypatch):
    """A sheet ends at 1,048,576 rows: a bigger IST month comes in parts of whole school days,
    every lesson in exactly one part, each part with its own dirty rows."""
    import demo.generate

    monkeypatch.setattr(demo.generate, "IST_MAX_ROWS", 5_000)
    generate(tmp_path / "drop", pupils=PUPILS, through=date(2025, 9, 30), truth_dir=tmp_path)
    truth = pl.read_parquet(tmp_path / "lessons.parquet").filter(pl.col("system") == "ist")
    listed = dirty_by_file(tmp_path)
    for month in ("2025-08", "2025-09"):
        paths = sorted((tmp_path / "drop" / "attendance" / "ist").glob(f"*_{month}*.xlsx"))
        expected = truth.filter(pl.col("date").dt.strftime("%Y-%m") == month)
        assert len(paths) >= -(-expected.height // 5_000)  # at least this many parts
        assert paths[0].name == f"ist_narvaro_{month}.xlsx"
        assert [p.name for p in paths[1:]] == [
            f"ist_narvaro_{month}_del{n}.xlsx" for n in range(2, len(paths) + 1)
        ]
        valid_rows, days_seen = 0, set()
        for path in paths:
            kinds = listed[path.relative_to(tmp_path / "drop").as_posix()]
            rows = [r for n, r in enumerate(read_ist(path), start=1) if n not in kinds]
            assert 0 < len(rows) <= 5_000
            days = {r["Datum"] for r in rows}
            assert not days & days_seen  # whole school days: no day in two parts
            days_seen |= days
            valid_rows += len(rows)
        assert valid_rows == expected.height
    assert len(paths) >= 2  # September did need parts
