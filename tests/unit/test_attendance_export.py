"""Reading Swedish attendance exports and typing their rows (no Prefect, no warehouse)."""

import os
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest
import xlsxwriter

from connectors.attendance_export.layouts import LayoutError, load_layouts
from connectors.attendance_export.resources import discover, read_export
from connectors.drop_files import Landed, file_stat, sha256_of
from connectors.personal_ids import luhn_check_digit
from flows.attendance.rules import day_totals, pupil_days, split_load
from lagesbild.settings import PROJECT_ROOT

KEY = b"unit-test-key"
LAYOUTS = load_layouts(PROJECT_ROOT / "connectors" / "attendance_export" / "layouts.yml")
SCHOOLS = {"12345678", "87654321"}
HEADER_A = (
    "Personnummer;Elev;Skolenhetskod;Skola;Årskurs;Klass;Datum;Starttid;"
    "Lektionslängd (min);Frånvaro (min);Frånvarotyp"
)


def pnr(nine: str) -> str:
    return f"{nine[:6]}-{nine[6:]}{luhn_check_digit(nine)}"


PUPIL = pnr("150304123")


def write_csv(path: Path, lines: list[str], encoding: str = "cp1252", bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "\r\n".join([HEADER_A, *lines]).encode(encoding)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def export_file(drop: Path, name: str, layout: str):
    files = discover(drop, {layout: LAYOUTS[layout]}, landed=Landed())
    return next(f for f in files if f.path.name == name)


def test_cp1252_csv_with_decimal_comma(tmp_path):
    write_csv(
        tmp_path / "attendance/skola24/a.csv",
        [
            f"{PUPIL};Åsa Öberg;12345678;Ängsskolan;4;4A;2025-09-01;08:10;45;12,5;Ogiltig frånvaro",
            f"{PUPIL};Åsa Öberg;12345678;Ängsskolan;4;4A;2025-09-01;09:05;60;0;",
            f"{PUPIL};Åsa Öberg;12345678;Ängsskolan;4;4A;2025-09-01;10:10;40;40;Giltig frånvaro",
        ],
    )
    batch = read_export(export_file(tmp_path, "a.csv", "skola24_csv"), KEY)
    assert "Elev" not in batch.rows.columns and "Personnummer" not in batch.rows.columns
    assert batch.dropped_columns == ["Elev", "Skola", "Klass"]
    result = split_load(batch.rows, LAYOUTS["skola24_csv"], SCHOOLS, "L1")
    assert (result.received, result.clean, result.quarantined, result.duplicates) == (3, 3, 0, 0)
    day = pupil_days(result.rows).row(0, named=True)
    assert day["offered_minutes"] == 145
    assert day["invalid_absence_minutes"] == 12.5
    assert day["valid_absence_minutes"] == 40
    assert day["attended_minutes"] == 92.5
    assert day["grade"] == "4" and day["lessons"] == 3


def test_utf8_bom_and_compact_dates(tmp_path):
    write_csv(
        tmp_path / "attendance/skola24/b.csv",
        [
            f"{PUPIL};Åsa Öberg;12345678;Ängsskolan;Åk 4;4A;20250902;8:10;45;0;",
        ],
        encoding="utf-8",
        bom=True,
    )
    batch = read_export(export_file(tmp_path, "b.csv", "skola24_csv"), KEY)
    lessons = split_load(batch.rows, LAYOUTS["skola24_csv"], SCHOOLS, "L1").rows
    assert lessons.select("date", "lesson_start", "grade").row(0) == (
        date(2025, 9, 2),
        "08:10",
        "4",
    )


def test_dirty_rows_get_reasons_and_accounting_holds(tmp_path):
    bad_check = PUPIL[:-1] + str((int(PUPIL[-1]) + 1) % 10)
    ok = f"{PUPIL};N;12345678;S;7;7A;2025-09-01;08:10;45;0;"
    write_csv(
        tmp_path / "attendance/skola24/c.csv",
        [
            ok,
            ok,  # exact duplicate
            f"{PUPIL};N;12345678;S;7;7A;2025-09-01;08:10;45;5;Ogiltig frånvaro",  # conflicting
            ";N;12345678;S;7;7A;2025-09-01;09:10;45;0;",
            f"{bad_check};N;12345678;S;7;7A;2025-09-01;09:10;45;0;",
            f"{PUPIL};N;12345678;S;7;7A;2025-02-30;09:10;45;0;",
            f"{PUPIL};N;99999999;S;7;7A;2025-09-01;09:10;45;0;",
            f"{PUPIL};N;12345678;S;11;7A;2025-09-01;09:10;45;0;",
            f"{PUPIL};N;12345678;S;7;7A;2025-09-01;09:10;45;-5;Ogiltig frånvaro",
            f"{PUPIL};N;12345678;S;7;7A;2025-09-01;10:10;45;50;Ogiltig frånvaro",
            f"{PUPIL};N;12345678;S;7;7A;2025-09-01;11:10;45;5;Sjuk",
            f"{PUPIL};N;12345678;S;7;7A;2025-09-01;12:10;4x5;0;",
            f"{PUPIL};N;12345678;S;7;7A;2025-09-01;13:10;45;5;",
        ],
    )
    batch = read_export(export_file(tmp_path, "c.csv", "skola24_csv"), KEY)
    result = split_load(batch.rows, LAYOUTS["skola24_csv"], SCHOOLS, "L1")
    reasons = result.quarantine.get_column("reason").to_list()
    assert reasons == [
        "conflicting_duplicate",
        "missing_personal_id",
        "invalid_personal_id",
        "invalid_date",
        "unknown_school_unit",
        "invalid_grade",
        "minutes_out_of_range",
        "minutes_out_of_range",
        "unknown_absence_type",
        "invalid_number",
        "unknown_absence_type",
    ]
    assert (result.received, result.clean, result.quarantined, result.duplicates) == (13, 1, 11, 1)
    # Quarantined rows keep their original values (the id only as its pseudonym).
    row = result.quarantine.filter(pl.col("reason") == "invalid_date").row(0, named=True)
    assert row["Datum"] == "2025-02-30" and row["Frånvaro (min)"] == "0"
    assert len(row["pupil_key"]) == 64 and row["pupil_id_kind"] == "personnummer"


def test_a_load_split_in_row_batches_gives_the_same_result(tmp_path):
    """A large export is read lazily and typed a few rows at a time: the same rows, the
    same quarantine (a conflict two batches after the row it conflicts with), the same
    counts as typed whole."""
    ok = f"{PUPIL};N;12345678;S;7;7A;2025-09-01;08:10;45;0;"
    write_csv(
        tmp_path / "attendance/skola24/d.csv",
        [
            ok,
            f"{PUPIL};N;12345678;S;7;7A;2025-09-01;09:10;45;5;Ogiltig frånvaro",
            f"{PUPIL};N;99999999;S;7;7A;2025-09-01;09:10;45;0;",  # unknown school
            ok,  # exact duplicate, in the second batch
            f"{PUPIL};N;12345678;S;7;7A;2025-09-02;08:10;40;0;",
            f"{PUPIL};N;12345678;S;7;7A;2025-09-01;08:10;45;5;Ogiltig frånvaro",  # conflict
            f"{PUPIL};N;12345678;S;7;7A;2025-09-02;09:10;40;40;Giltig frånvaro",
        ],
    )
    batch = read_export(export_file(tmp_path, "d.csv", "skola24_csv"), KEY)
    path = tmp_path / "landed.parquet"
    batch.rows.write_parquet(path)
    layout = LAYOUTS["skola24_csv"]
    whole = split_load(batch.rows, layout, SCHOOLS, "L1")
    batched = split_load(pl.scan_parquet(path), layout, SCHOOLS, "L1", batch_rows=2)
    assert (batched.received, batched.clean, batched.quarantined, batched.duplicates) == (
        7,
        4,
        2,
        1,
    )
    assert (whole.received, whole.clean, whole.quarantined, whole.duplicates) == (7, 4, 2, 1)
    assert batched.rows.equals(whole.rows)
    assert batched.quarantine.equals(whole.quarantine)
    assert batched.quarantine.get_column("reason").to_list() == [
        "unknown_school_unit",
        "conflicting_duplicate",
    ]
    assert batched.quarantine.get_column("_source_row").to_list() == [3, 6]
    assert batched.periods == ["2025-09"]


def test_day_totals_of_each_load_give_the_same_pupil_days_as_its_lessons(tmp_path):
    """A period holds each load's pupil-days, not its lessons: the latest load that has a
    pupil's day still wins it, loads with other days add up, lessons are counted."""
    first = [
        f"{PUPIL};N;12345678;S;7;7A;2025-09-01;08:10;45;0;",
        f"{PUPIL};N;12345678;S;7;7A;2025-09-01;09:10;45;5;Ogiltig frånvaro",
        f"{PUPIL};N;12345678;S;7;7A;2025-09-02;08:10;40;0;",
    ]
    write_csv(tmp_path / "attendance/skola24/e1.csv", first)
    write_csv(  # a corrected re-export of the 1st only
        tmp_path / "attendance/skola24/e2.csv",
        [f"{PUPIL};N;12345678;S;7;7A;2025-09-01;08:10;45;45;Giltig frånvaro"],
    )
    layout = LAYOUTS["skola24_csv"]
    loads = [
        split_load(read_export(export_file(tmp_path, f"e{n}.csv", "skola24_csv"), KEY).rows,
                   layout, SCHOOLS, f"L{n}").rows
        for n in (1, 2)
    ]  # fmt: skip
    from_lessons = pupil_days(pl.concat(loads))
    from_days = pupil_days(pl.concat([day_totals(rows) for rows in loads]))
    assert from_days.equals(from_lessons)
    assert from_days.select("date", "offered_minutes", "valid_absence_minutes", "lessons",
                            "load_id").rows() == [
        (date(2025, 9, 1), 45.0, 45.0, 1, "L2"),
        (date(2025, 9, 2), 40.0, 0.0, 1, "L1"),
    ]  # fmt: skip
    assert sorted(day_totals(loads[0]).get_column("lessons").to_list()) == [1, 2]


@pytest.mark.parametrize("budget", [None, 0])
def test_exports_are_read_concurrently_in_order_with_ids_hashed_once(tmp_path, monkeypatch, budget):
    """Files are read by a bounded pool (a budget of 0 bytes: one at a time) and yielded in
    the order they were found; a pupil in several files is pseudonymised once per run."""
    from connectors import personal_ids
    from connectors.attendance_export import resources

    for n in range(5):
        write_csv(
            tmp_path / f"attendance/skola24/f{n}.csv",
            [f"{PUPIL};N;12345678;S;7;7A;2025-09-0{n + 1};08:10;45;0;"],
        )
    hashed = []
    real = personal_ids.pseudonym
    monkeypatch.setattr(
        personal_ids,
        "pseudonym",
        lambda key, canonical: hashed.append(canonical) or real(key, canonical),
    )
    batches = list(
        resources.read_new_exports(
            tmp_path, {"skola24_csv": LAYOUTS["skola24_csv"]}, Landed(), KEY,
            workers=2, memory_budget=budget,
        )
    )  # fmt: skip
    assert [b.file.path.name for b in batches] == [f"f{n}.csv" for n in range(5)]
    assert len(hashed) == 1
    keys = {b.rows.get_column("pupil_key").item() for b in batches}
    assert len(keys) == 1 and len(keys.pop()) == 64


def test_xlsx_layout_checks_minutes_add_up(tmp_path):
    path = tmp_path / "attendance/ist/x.xlsx"
    path.parent.mkdir(parents=True)
    workbook = xlsxwriter.Workbook(path)
    sheet = workbook.add_worksheet("Närvaro")
    sheet.write_row(0, 0, list(LAYOUTS["ist_xlsx"].columns))  # the layout, in its order
    twelve = "20" + PUPIL.replace("-", "")
    sheet.write_row(1, 0, [twelve, "87654321", "F", "20250901", "08:10", 40, 30, 0, 10, 0])
    sheet.write_row(2, 0, [twelve, "87654321", "F", "20250901", "09:00", 40, 30, 0, 5, 0])
    sheet.write_row(3, 0, ["20150304TF01", "87654321", "F", "20250901", "08:10", 40, 40, 0, 0, 0])
    workbook.close()
    batch = read_export(export_file(tmp_path, "x.xlsx", "ist_xlsx"), KEY)
    result = split_load(batch.rows, LAYOUTS["ist_xlsx"], SCHOOLS, "L1")
    assert result.quarantine.get_column("reason").to_list() == ["minutes_do_not_add_up"]
    assert sorted(batch.rows.get_column("pupil_id_kind").to_list()) == [
        "personnummer",
        "personnummer",
        "temporary",
    ]
    days = pupil_days(result.rows)
    assert days.height == 2 and days.get_column("offered_minutes").to_list() == [40, 40]


def test_a_full_excel_sheet_is_taken_for_a_cut_off_export(tmp_path, monkeypatch):
    """An export that reaches a sheet's last row (1,048,576) has most likely lost rows:
    nothing of it is loaded. Shown with the limit lowered to 4 rows."""
    from connectors import drop_files

    path = tmp_path / "attendance/ist/full.xlsx"
    path.parent.mkdir(parents=True)
    workbook = xlsxwriter.Workbook(path)
    sheet = workbook.add_worksheet("Närvaro")
    sheet.write_row(0, 0, list(LAYOUTS["ist_xlsx"].columns))
    for row in range(1, 4):
        sheet.write_row(row, 0, ["x", "87654321", "F", "20250901", "08:10", 40, 40, 0, 0, 0])
    workbook.close()
    read_export(export_file(tmp_path, "full.xlsx", "ist_xlsx"), KEY)  # 4 rows in all: fine
    monkeypatch.setattr(drop_files, "EXCEL_MAX_ROWS", 4)
    with pytest.raises(LayoutError, match=r"fills all 4 rows .* cut off\. Export it in parts"):
        read_export(export_file(tmp_path, "full.xlsx", "ist_xlsx"), KEY)


def test_unknown_and_missing_columns_give_one_clear_error(tmp_path):
    path = tmp_path / "attendance/skola24/d.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes((HEADER_A.replace("Frånvarotyp", "Orsak") + "\r\n").encode("cp1252"))
    with pytest.raises(
        LayoutError,
        match=r"missing columns \['Frånvarotyp'\]; unknown columns "
        r"\['Orsak'\]",
    ):
        read_export(export_file(tmp_path, "d.csv", "skola24_csv"), KEY)


def test_discover_skips_landed_content(tmp_path):
    path = write_csv(tmp_path / "attendance/skola24/e.csv", [])
    assert discover(tmp_path, LAYOUTS, landed=Landed(frozenset({sha256_of(path)}))) == []
    assert [f.path.name for f in discover(tmp_path, LAYOUTS, landed=Landed())] == ["e.csv"]


def test_discover_does_not_rehash_a_file_landed_with_its_size_and_time(tmp_path):
    """rsync's quick check: same name, size and modification time = the landed file. Shown
    by a file rewritten with other content but the same size and time (which the quick
    check cannot see), and by the same content touched (hashed again, found landed)."""
    path = write_csv(tmp_path / "attendance/skola24/e.csv", [])
    (found,) = discover(tmp_path, LAYOUTS, landed=Landed())
    assert found.stat == file_stat(path)
    seen = Landed(frozenset({found.sha256}), frozenset({("attendance/skola24/e.csv", *found.stat)}))
    mtime = found.stat[1]
    path.write_bytes(path.read_bytes().replace(b"Elev", b"ELEV"))  # same size, other bytes
    os.utime(path, ns=(mtime, mtime))
    assert discover(tmp_path, LAYOUTS, landed=seen) == []  # not hashed: taken as landed
    os.utime(path, ns=(mtime + 1, mtime + 1))
    (changed,) = discover(tmp_path, LAYOUTS, landed=seen)  # hashed: the content is new
    assert changed.sha256 != found.sha256
    path.write_bytes(path.read_bytes().replace(b"ELEV", b"Elev"))
    assert discover(tmp_path, LAYOUTS, landed=seen) == []  # hashed: the content was landed


def test_excel_date_and_time_cells_and_numeric_ids(tmp_path):
    """Real IST exports may hold date/time cells and ids kept as numbers."""
    path = tmp_path / "attendance/ist/typed.xlsx"
    path.parent.mkdir(parents=True)
    workbook = xlsxwriter.Workbook(path)
    sheet = workbook.add_worksheet("Närvaro")
    sheet.write_row(0, 0, list(LAYOUTS["ist_xlsx"].columns))
    born_2005 = pnr("050304123").replace("-", "")  # 10 digits with a leading zero
    sheet.write_number(1, 0, int(born_2005))  # Excel drops the zero
    sheet.write_row(1, 1, ["87654321", "5"])
    sheet.write_datetime(
        1, 3, datetime(2025, 9, 1), workbook.add_format({"num_format": "yyyy-mm-dd"})
    )
    sheet.write_datetime(
        1, 4, datetime(1899, 12, 31, 8, 10), workbook.add_format({"num_format": "hh:mm"})
    )
    sheet.write_row(1, 5, [40, 40, 0, 0, 0])
    workbook.close()
    batch = read_export(export_file(tmp_path, "typed.xlsx", "ist_xlsx"), KEY)
    result = split_load(batch.rows, LAYOUTS["ist_xlsx"], SCHOOLS, "L1")
    assert result.quarantine.is_empty(), result.quarantine.to_dicts()
    assert result.rows.select("date", "lesson_start").row(0) == (date(2025, 9, 1), "08:10")
    assert batch.rows["pupil_id_kind"].to_list() == ["personnummer"]


def test_a_missing_header_row_is_reported_without_echoing_the_data(tmp_path):
    path = tmp_path / "attendance/skola24/nohead.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes(
        f"{PUPIL};Åsa Öberg;12345678;S;4;4A;2025-09-01;08:10;45;0;\r\n".encode("cp1252")
    )
    with pytest.raises(LayoutError, match="first row looks like data") as error:
        read_export(export_file(tmp_path, "nohead.csv", "skola24_csv"), KEY)
    assert PUPIL not in str(error.value) and "Öberg" not in str(error.value)


def test_an_unparsable_file_error_quotes_no_content(tmp_path):
    path = write_csv(
        tmp_path / "attendance/skola24/ragged.csv",
        [
            f"{PUPIL};Åsa Öberg;12345678;S;4;4A;2025-09-01;08:10;45;0;;extra;fields",
        ],
    )
    with pytest.raises(LayoutError) as error:
        read_export(export_file(tmp_path, path.name, "skola24_csv"), KEY)
    assert PUPIL not in str(error.value) and "Öberg" not in str(error.value)
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_loads_with_different_pupils_of_one_school_day_add_up():
    def lesson(load_id, pupil):
        return pl.DataFrame(
            {
                "pupil_key": [pupil],
                "school_unit_code": ["12345678"],
                "date": [date(2025, 9, 1)],
                "lesson_start": ["08:10"],
                "grade": ["7"],
                "offered_minutes": [45.0],
                "attended_minutes": [45.0],
                "valid_absence_minutes": [0.0],
                "invalid_absence_minutes": [0.0],
                "other_absence_minutes": [0.0],
                "source": ["skola24_csv"],
                "load_id": [load_id],
            }
        )

    days = pupil_days(pl.concat([lesson("L1", "class 7A pupil"), lesson("L2", "class 7B pupil")]))
    assert days["pupil_key"].to_list() == ["class 7A pupil", "class 7B pupil"]


def test_later_load_replaces_a_pupil_day():
    def lessons(load_id, minutes):
        return pl.DataFrame(
            {
                "pupil_key": ["p1"],
                "school_unit_code": ["12345678"],
                "date": [date(2025, 9, 1)],
                "lesson_start": ["08:10"],
                "grade": ["7"],
                "offered_minutes": [45.0],
                "attended_minutes": [45.0 - minutes],
                "valid_absence_minutes": [0.0],
                "invalid_absence_minutes": [minutes],
                "other_absence_minutes": [0.0],
                "source": ["skola24_csv"],
                "load_id": [load_id],
            }
        )

    days = pupil_days(pl.concat([lessons("L1", 45.0), lessons("L2", 10.0)]))
    assert days.height == 1 and days["invalid_absence_minutes"][0] == 10.0
    assert days["load_id"][0] == "L2"


def test_cli_refuses_to_run_without_a_pseudonym_key(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from lagesbild.cli import app

    monkeypatch.delenv("LAGESBILD_PSEUDONYM_KEY", raising=False)
    monkeypatch.setenv("LAGESBILD_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["run"])
    assert result.exit_code == 2
    assert "LAGESBILD_PSEUDONYM_KEY is not set" in " ".join(result.output.split())
