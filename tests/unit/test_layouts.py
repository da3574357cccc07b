"""Layouts that describe real files, their errors, half-uploaded files, and
`lagesbild check-layout` on two real-world files: a CSV without an other-absence column
and a workbook with a title row above its header."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import xlsxwriter
from typer.testing import CliRunner

from connectors.attendance_export.layouts import load_layouts
from connectors.drop_files import Landed, LayoutError, new_files
from connectors.housing_export.layouts import load_layouts as load_housing_layouts
from connectors.personal_ids import luhn_check_digit
from lagesbild.cli import app
from lagesbild.settings import PROJECT_ROOT

ATTENDANCE = PROJECT_ROOT / "connectors/attendance_export/layouts.yml"
HOUSING = PROJECT_ROOT / "connectors/housing_export/layouts.yml"
PUPIL = "20150304123" + str(luhn_check_digit("150304123"))
SPLIT_HEADER = "Personnr;Skolenhet;Årskurs;Datum;Lektion;Schemalagt;Närvaro;Giltig;Ogiltig"
SPLIT_LAYOUT = """
school_x_csv:
  files: attendance/school_x/*.csv
  format: csv
  encoding: cp1252
  columns:
    Personnr: personal_id
    Skolenhet: school_unit_code
    Årskurs: grade
    Datum: date
    Lektion: lesson_start
    Schemalagt: offered_minutes
    Närvaro: attended_minutes
    Giltig: valid_absence_minutes
    Ogiltig: invalid_absence_minutes
"""


def layouts_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "layouts.yml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_layout_without_other_absence_says_how_to_derive_it(tmp_path):
    with pytest.raises(LayoutError) as caught:
        load_layouts(layouts_file(tmp_path, SPLIT_LAYOUT))
    message = str(caught.value)
    assert message == (
        f"attendance layouts file {tmp_path / 'layouts.yml'}, layout 'school_x_csv': no column "
        "maps other_absence_minutes: map it, give it a value under `defaults` (e.g. 0), or "
        "derive it (`derived: {other_absence_minutes: remainder}`)"
    )
    layout = load_layouts(
        layouts_file(tmp_path, SPLIT_LAYOUT + "  derived: {other_absence_minutes: remainder}\n")
    )["school_x_csv"]
    assert layout.derived == {"other_absence_minutes": "remainder"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "a:\n  files: x\n  format: csv\n  columns: {A: b\n",
            r"attendance layouts file .*layouts\.yml: line 5, column 1: not valid YAML",
        ),
        (
            SPLIT_LAYOUT.replace("format: csv", "format: xls"),
            r"layout 'school_x_csv': `format` Input should be 'csv' or 'xlsx'",
        ),
        (
            SPLIT_LAYOUT.replace("  encoding: cp1252", "  encodng: cp1252"),
            r"layout 'school_x_csv': `encodng` is not a layout setting \(misspelt\?",
        ),
        (
            SPLIT_LAYOUT + "  defaults: {personal_id: x}\n",
            r"\['personal_id'\] must be mapped from a column",
        ),
        ("- a\n- b\n", r"expected layouts by name"),
    ],
)
def test_layout_file_errors_name_the_file_the_layout_and_the_field(tmp_path, text, expected):
    with pytest.raises(LayoutError, match=expected) as caught:
        load_layouts(layouts_file(tmp_path, text))
    assert "pydantic" not in str(caught.value) and "input_value" not in str(caught.value)


def test_a_missing_layouts_file_and_drop_folder_say_so_in_one_line(tmp_path):
    with pytest.raises(LayoutError, match=r"^housing layouts file .* does not exist: point"):
        load_housing_layouts(tmp_path / "nope.yml")
    from connectors.attendance_export.resources import discover

    with pytest.raises(LayoutError, match=r"^drop folder .*missing does not exist: set `drop_dir`"):
        discover(tmp_path / "missing", load_layouts(ATTENDANCE), Landed())


def test_young_and_growing_files_are_left_for_the_next_run(tmp_path):
    young = tmp_path / "a.csv"
    young.write_bytes(b"x")
    old = tmp_path / "b.csv"
    old.write_bytes(b"y")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    skipped = []
    found = new_files(tmp_path, "*.csv", Landed(), min_age_seconds=60,
                      on_skip=lambda p, why: skipped.append((p.name, why)))  # fmt: skip
    assert [p.name for p, _, _ in found] == ["b.csv"]
    assert skipped[0][0] == "a.csv" and "left for the next run" in skipped[0][1]
    assert [p.name for p, _, _ in new_files(tmp_path, "*.csv", Landed())] == ["a.csv", "b.csv"]


def _title_workbook(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    layout = load_layouts(ATTENDANCE)["ist_xlsx"]
    book = xlsxwriter.Workbook(path)
    sheet = book.add_worksheet("Närvaro")
    sheet.merge_range(0, 0, 0, 5, "Närvarorapport Ekdala kommun HT 2025")
    sheet.write_row(2, 0, list(layout.columns))
    sheet.write_row(3, 0, [PUPIL, "87654321", "Åk 7", "20250901", "08:10", 40, 30, 0, 10, 0])
    sheet.write_row(4, 0, [PUPIL, "87654321", "Åk 7", "20990901", "09:10", 40, 40, 0, 0, 0])
    book.close()
    return path


def run_cli(monkeypatch, tmp_path, *args, layouts=ATTENDANCE):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LAGESBILD_DROP_DIR", str(tmp_path / "drop"))
    monkeypatch.setenv("LAGESBILD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LAGESBILD_ATTENDANCE_LAYOUTS", str(layouts))
    result = CliRunner().invoke(app, ["check-layout", *map(str, args)])
    return result.exit_code, result.output


def test_check_layout_reads_a_workbook_with_a_title_row(monkeypatch, tmp_path):
    path = _title_workbook(tmp_path / "drop/attendance/ist/ht.xlsx")
    code, output = run_cli(monkeypatch, tmp_path, path, "--run-date", "2025-10-31")
    assert code == 0, output
    assert "Layout: attendance 'ist_xlsx' reads it (header on row 3)" in output
    assert "Rows left out: 2 above header" in output
    assert "  Elev-ID → personal_id" in output
    assert "Rows: 2 received → 1 clean, 1 quarantined, 0 duplicates" in output
    assert "  date_after_run_date: 1" in output
    assert "to pin it add `header_row: 3` to layout 'ist_xlsx'" in output
    assert PUPIL not in output and "personnummer" in output  # ids masked: their kind only
    assert not (tmp_path / "data").exists()  # nothing written


def test_check_layout_says_what_to_set_for_a_csv_without_other_absence(monkeypatch, tmp_path):
    """The user's first try maps a column the export does not have; check-layout says how
    to derive it; with that setting the file reads and the remainder is exact."""
    layouts = layouts_file(
        tmp_path,
        SPLIT_LAYOUT.replace(
            "Ogiltig: invalid_absence_minutes",
            "Ogiltig: invalid_absence_minutes\n    Övrig: other_absence_minutes",
        ),
    )
    path = tmp_path / "drop/attendance/school_x/sep.csv"
    path.parent.mkdir(parents=True)
    rows = [f"{PUPIL};12345678;7;2025-09-01;08:10;45;30;0,0;10,0"]
    path.write_bytes("\r\n".join([SPLIT_HEADER, *rows]).encode("cp1252"))
    code, output = run_cli(monkeypatch, tmp_path, path, layouts=layouts)
    assert code == 2
    assert "No layout reads this file." in output
    assert (
        "`columns`: the export has no column 'Övrig' (other_absence_minutes): map the export's "
        "own name for it, or remove it and add `derived: {other_absence_minutes: remainder}`"
    ) in " ".join(output.split())
    fixed = layouts_file(tmp_path, SPLIT_LAYOUT + "  derived: {other_absence_minutes: remainder}\n")
    code, output = run_cli(monkeypatch, tmp_path, path, "--run-date", "2025-10-31", layouts=fixed)
    assert code == 0, output
    assert "(no column) → other_absence_minutes = remainder of offered minutes" in output
    assert "Rows: 1 received → 1 clean, 0 quarantined, 0 duplicates" in output
    first_row = [c.strip() for c in next(x for x in output.splitlines() if "│ 1 " in x).split("┆")]
    assert first_row[1:] == ["personnummer", "12345678", "7", "2025-09-01", "08:10", "45.0",
                             "30.0", "0.0", "10.0", "5.0", "null   │"]  # fmt: skip


def test_check_layout_names_the_encoding(monkeypatch, tmp_path):
    path = tmp_path / "drop/attendance/skola24/utf8.csv"
    path.parent.mkdir(parents=True)
    path.write_text("Personnummer;Skolenhetskod;Årskurs\r\n", encoding="utf-8")
    code, output = run_cli(monkeypatch, tmp_path, path)
    assert code == 2
    assert "the encoding looks like UTF-8" in output and "Set `encoding: utf-8`" in output
    assert "Traceback" not in output


def test_files_without_rows_are_reported_and_not_yielded(tmp_path):
    """A 0-byte or header-only export lands nothing: one line naming the file, every run
    until it is replaced, and the files next to it are read as usual."""
    from connectors.attendance_export.resources import read_new_exports

    folder = tmp_path / "attendance/skola24"
    folder.mkdir(parents=True)
    header = (
        "Personnummer;Elev;Skolenhetskod;Skola;Årskurs;Klass;Datum;Starttid;"
        "Lektionslängd (min);Frånvaro (min);Frånvarotyp"
    )
    (folder / "a_empty.csv").write_bytes(b"")
    (folder / "b_header.csv").write_bytes((header + "\r\n").encode("cp1252"))
    (folder / "c_rows.csv").write_bytes(
        (header + f"\r\n{PUPIL};N;12345678;S;4;4A;2025-09-01;08:10;45;0;\r\n").encode("cp1252")
    )
    skipped = []
    batches = list(
        read_new_exports(
            tmp_path, {"skola24_csv": load_layouts(ATTENDANCE)["skola24_csv"]}, Landed(), b"k",
            on_skip=lambda path, why: skipped.append(f"{path.name}: {why}"),
        )
    )  # fmt: skip
    assert [b.file.path.name for b in batches] == ["c_rows.csv"]
    assert skipped == [
        "a_empty.csv: is empty (0 bytes): nothing to load",
        "b_header.csv: has a header row but no data rows: nothing to load",
    ]


def test_a_missing_drop_folder_stops_reference_loading_in_one_line(tmp_path):
    from flows.layers.reference import ReferenceError, load_reference

    with pytest.raises(ReferenceError, match=r"^drop folder .*nowhere does not exist: set"):
        load_reference(tmp_path / "nowhere", tmp_path / "clean")


def test_a_bad_setting_is_one_line_without_pydantic_text(monkeypatch, tmp_path):
    monkeypatch.setenv("LAGESBILD_MAX_QUARANTINE_SHARE", "5")
    code, output = run_cli(monkeypatch, tmp_path, tmp_path / "x.csv")
    assert code == 2
    assert " ".join(output.split()) == (
        "Configuration error (lagesbild.toml or LAGESBILD_* variables): "
        "`max_quarantine_share` Input should be less than or equal to 1"
    )


def test_check_layout_suggests_date_formats_and_labels(monkeypatch, tmp_path):
    path = tmp_path / "drop/attendance/skola24/new_format.csv"
    path.parent.mkdir(parents=True)
    header = (
        "Personnummer;Elev;Skolenhetskod;Skola;Årskurs;Klass;Datum;Starttid;"
        "Lektionslängd (min);Frånvaro (min);Frånvarotyp"
    )
    rows = [
        f"{PUPIL};N;12345678;S;4;4A;01.09.2025;08:10;45;0;",
        f"{PUPIL};N;12345678;S;4;4A;2025-09-01;09:10;45;45;Sjuk",
        f"{PUPIL};N;12345678;S;4;4A;2025-09-01;10:10;45;45;Giltig frånvaro",
    ]
    path.write_bytes("\r\n".join([header, *rows]).encode("cp1252"))
    code, output = run_cli(monkeypatch, tmp_path, path, "--run-date", "2025-10-31")
    assert code == 0, output
    assert "Quarantine by reason:\n  invalid_date: 1\n  unknown_absence_type: 1" in output
    assert (
        "Layout changes that would take rows out of quarantine:\n"
        '  - 1 rows have dates the layout cannot read; add "%d.%m.%Y" to `date_formats`\n'
        "  - add to `absence_types`: 'Sjuk' (each mapped to none, valid, invalid or other)"
    ) in output


def test_run_stops_before_prefect_on_a_missing_drop_folder(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LAGESBILD_DROP_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("LAGESBILD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LAGESBILD_PSEUDONYM_KEY", "a-key-for-this-test-0123456789")
    result = CliRunner().invoke(app, ["run"])
    assert result.exit_code == 2
    assert " ".join(result.output.split()) == (
        f"drop folder {tmp_path / 'nowhere'} does not exist: set `drop_dir` in lagesbild.toml "
        "(or LAGESBILD_DROP_DIR) to the folder the exports arrive in"
    )
