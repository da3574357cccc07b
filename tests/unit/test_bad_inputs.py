"""The bad-input table (docs/bad-inputs.md): real files as they come, each → a clear error
naming the file, the row or column and the fix, a file skipped with one line, or rows
quarantined with their reason, with the row accounting holding.

Tested at the level of the connectors and the cleaning rules (pure functions) on real files
written to tmp_path (CSV bytes, xlsxwriter workbooks, a real encrypted workbook), no Prefect.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest
import xlsxwriter

from connectors.attendance_export import resources as attendance
from connectors.attendance_export.layouts import Layout, load_layouts
from connectors.drop_files import LayoutError
from connectors.housing_export import resources as housing
from connectors.housing_export.layouts import HousingLayout
from connectors.housing_export.layouts import load_layouts as load_housing_layouts
from connectors.personal_ids import luhn_check_digit
from flows.attendance import rules as clean_attendance
from flows.housing import rules as clean_housing
from flows.layers.reference import ReferenceError, load_reference
from lagesbild.settings import PROJECT_ROOT

KEY = b"bad-input-test-key"
RUN_DATE = date(2025, 10, 31)
LAYOUTS = load_layouts(PROJECT_ROOT / "connectors/attendance_export/layouts.yml")
SKOLA24, IST = LAYOUTS["skola24_csv"], LAYOUTS["ist_xlsx"]
HOUSING = load_housing_layouts(PROJECT_ROOT / "connectors/housing_export/layouts.yml")
FAST2, EKBO = HOUSING["ekdalahem_fast2"], HOUSING["ekbo_vitec"]
SCHOOLS = {"12345678", "87654321"}
PROPERTIES = pl.DataFrame(
    {
        "company": ["ekdalahem", "ekbo"],
        "property_id": ["Eken 1", "EKBO-011"],
        "area_code": ["1299C0010", "1299C0030"],
    }
)


def pnr(nine: str, sep: str = "-") -> str:
    return f"{nine[:6]}{sep}{nine[6:]}{luhn_check_digit(nine)}"


PUPIL = pnr("150304123")  # 150304-1234 style, born 2015
SKOLA24_HEADER = [
    "Personnummer",
    "Elev",
    "Skolenhetskod",
    "Skola",
    "Årskurs",
    "Klass",
    "Datum",
    "Starttid",
    "Lektionslängd (min)",
    "Frånvaro (min)",
    "Frånvarotyp",
]


def lesson(
    pupil=PUPIL,
    day="2025-09-01",
    start="08:10",
    offered="45",
    absence="0",
    kind="",
    school="12345678",
    grade="4",
    name="Åsa Öberg",
) -> list[str]:
    return [pupil, name, school, "Ängsskolan", grade, "4A", day, start, offered, absence, kind]


def lessons(n: int = 3, **kwargs) -> list[list[str]]:
    return [lesson(start=f"{8 + i:02d}:10", **kwargs) for i in range(n)]


def csv_bytes(rows, sep=";", newline="\r\n", encoding="cp1252", header=SKOLA24_HEADER) -> bytes:
    lines = ([sep.join(header)] if header else []) + [sep.join(r) for r in rows]
    return (newline.join(lines) + newline).encode(encoding)


# -- outcomes ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    kind: str  # clean | quarantine | error | empty
    clean: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    message: str = ""  # a regex the error or skip line must match
    skipped: dict[str, int] | None = None
    check: Callable | None = None  # extra assertions on the result


def clean(n, skipped=None, check=None, duplicates=0) -> Outcome:
    return Outcome("clean", n, {}, duplicates, skipped=skipped, check=check)


def quarantine(n_clean, reasons, check=None) -> Outcome:
    return Outcome("quarantine", n_clean, reasons, check=check)


def error(message) -> Outcome:
    return Outcome("error", message=message)


def empty(message) -> Outcome:
    return Outcome("empty", message=message)


@dataclass
class Result:
    received: int
    clean: int
    quarantined: int
    duplicates: int
    reasons: dict[str, int]
    rows: pl.DataFrame  # clean rows (lessons / versions)
    skipped: dict[str, int]


def run_attendance(path: Path, layout: Layout):
    batch = attendance.read_export(attendance.ExportFile(layout, path, ""), KEY)
    if batch.empty:
        return batch
    split = clean_attendance.split_load(batch.rows, layout, SCHOOLS, "L1", RUN_DATE)
    return _result(split, split.rows, batch)


def run_housing(path: Path, layout: HousingLayout):
    batch = housing.read_export(housing.ExportFile(layout, path, ""))
    if batch.empty:
        return batch
    split = clean_housing.split_load(batch.rows, layout, PROPERTIES, "L1", RUN_DATE)
    return _result(split, split.rows, batch)


def _result(split, rows, batch) -> Result:
    assert split.received == split.clean + split.quarantined + split.duplicates  # accounting
    reasons = dict(split.quarantine.group_by("reason").len().iter_rows())
    return Result(
        split.received, split.clean, split.quarantined, split.duplicates, reasons, rows,
        batch.skipped,
    )  # fmt: skip


def run_reference(folder: Path, _layout=None):
    return load_reference(folder.parent, folder.parent / "clean")


# -- files -------------------------------------------------------------------------------------


def write(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def workbook(tmp: Path, name: str, fill, options=None) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    book = xlsxwriter.Workbook(path, options or {})
    fill(book)
    book.close()
    return path


IST_HEADER = list(IST.columns)
TWELVE = "20" + PUPIL.replace("-", "")


def ist_row(start="08:10", day="20250901", minutes=(40, 30, 0, 10, 0)) -> list:
    return [TWELVE, "87654321", "Åk 7", day, start, *minutes]


def ist_sheet(book, name="Närvaro", header_at=0, rows=None):
    sheet = book.add_worksheet(name)
    sheet.write_row(header_at, 0, IST_HEADER)
    for i, row in enumerate(rows or [ist_row("08:10"), ist_row("09:10")]):
        sheet.write_row(header_at + 1 + i, 0, row)
    return sheet


def layout_variant(layout, **changes):
    return type(layout).model_validate({**layout.model_dump(), **changes})


# -- the no-other-absence CSV and its layout (the first file) ---------------------------

SPLIT_CSV = layout_variant(
    IST,
    name="split_csv",
    format="csv",
    encoding="cp1252",
    separator=";",
    sheet=None,
    columns={k: v for k, v in IST.columns.items() if v != "other_absence_minutes"},
    derived={"other_absence_minutes": "remainder"},
)
SPLIT_HEADER = [c for c in IST_HEADER if IST.columns[c] != "other_absence_minutes"]


def split_rows(*minutes) -> list[list[str]]:
    return [
        [TWELVE, "87654321", "7", "2025-09-01", f"{8 + i:02d}:10", *m]
        for i, m in enumerate(minutes)
    ]


# -- reference files ---------------------------------------------------------------------------

AREAS = (
    "area_code,area_name,area_type,municipality_code,municipality_name\n"
    "1299C0010,Centrum,deso,1299,Ekdala kommun\n"
)
SCHOOLS_CSV = (
    "school_unit_code,school_name,school_type,grades,area_code,municipality_code,"
    "attendance_system\n12345678,Ängsskolan,grundskola,F-9,1299C0010,1299,skola24\n"
)
CALENDAR = (
    "date,school_year,term,is_school_day,day_type,note\n"
    "2025-09-01,2025/26,HT2025,true,school_day,\n"
)


def reference(tmp: Path, **files: bytes) -> Path:
    folder = tmp / "drop" / "reference"
    folder.mkdir(parents=True, exist_ok=True)
    defaults = {"areas": AREAS.encode(), "schools": SCHOOLS_CSV.encode(), "school_calendar": CALENDAR.encode()}  # fmt: skip  # noqa: E501
    for name, data in {**defaults, **files}.items():
        (folder / f"{name}.csv").write_bytes(data)
    return folder


# -- housing -----------------------------------------------------------------------------------

FAST2_HEADER = [
    "Arbetsorder",
    "Typ",
    "Registrerad",
    "Utförd",
    "Ändrad",
    "Fastighet",
    "Byggnad",
    "Uppgång",
    "Status",
    "Fras",
    "Beskrivning",
    "Anmälare",
    "Kreditnota",
    "Kostnad inkl moms",
]


def order(n="100001", reported="2025-03-04", completed="2025-03-09", cost="1 250,00 kr",
          credit="", phrase="Klotter") -> list[str]:  # fmt: skip
    return [n, "F", reported, completed, "2025-03-09 14:22", "Eken 1", "01", "B", "UTFÖRD",
            phrase, "Klotter i trapphus", "Anna Andersson", credit, cost]  # fmt: skip


def fast2(rows, **kwargs) -> bytes:
    return csv_bytes(rows, header=FAST2_HEADER, **kwargs)


EKBO_HEADER = [*EKBO.columns, *EKBO.ignore]


# -- the table ---------------------------------------------------------------------------------

S24 = "attendance/skola24/export.csv"
XL = "attendance/ist/export.xlsx"
H = "housing/ekdalahem/orders.csv"


def case(id_, build, expect, runner=run_attendance, layout=SKOLA24):
    return pytest.param(build, expect, runner, layout, id=id_)


def _title_rows(book):
    sheet = ist_sheet(book, header_at=2)
    sheet.merge_range(0, 0, 0, 4, "Närvarorapport Ekdala kommun HT 2025")


def _totals_row(book):
    sheet = ist_sheet(book)
    sheet.write_row(3, 0, ["Summa", "", "", "", "", 80, 60, 0, 20, 0])


def _serial_dates(book, date1904=False):
    sheet = book.add_worksheet("Närvaro")
    sheet.write_row(0, 0, IST_HEADER)
    plain = book.add_format({"num_format": "0"})
    as_date = book.add_format({"num_format": "yyyy-mm-dd"})
    serial = 45901 - (1462 if date1904 else 0)  # 2025-09-01 in the workbook's date system
    sheet.write_row(1, 0, ist_row("08:10"))
    sheet.write_number(1, 3, serial, plain)  # a date column cell formatted as a number
    sheet.write_row(2, 0, ist_row("09:10"))
    sheet.write_datetime(2, 3, datetime(2025, 9, 1), as_date)  # a real date cell


def _time_fractions(book):
    sheet = book.add_worksheet("Närvaro")
    sheet.write_row(0, 0, IST_HEADER)
    plain = book.add_format({"num_format": "0.000000"})
    for i, minutes in enumerate((8 * 60 + 10, 13 * 60 + 5)):
        sheet.write_row(1 + i, 0, ist_row())
        sheet.write_number(1 + i, 4, minutes / 1440, plain)  # a time cell shown as a number


def _starts(expected):
    def check(result: Result):
        assert sorted(result.rows["lesson_start"].to_list()) == expected

    return check


def _formulas(book):
    sheet = book.add_worksheet("Närvaro")
    sheet.write_row(0, 0, IST_HEADER)
    sheet.write_row(1, 0, ist_row("08:10")[:5])
    sheet.write_formula(1, 5, "=20+20", None, 40)
    sheet.write_formula(1, 6, "=F2-I2", None, 30)
    sheet.write_row(1, 7, [0, 10, 0])


def _merged_header(book):
    sheet = book.add_worksheet("Närvaro")
    sheet.merge_range(0, 8, 0, 9, "Ogiltig frånvaro")  # one header over two columns
    sheet.write_row(0, 0, IST_HEADER[:8])
    sheet.write_row(1, 0, ist_row())


def _two_weeks(book):
    ist_sheet(book, "Vecka 36", rows=[ist_row("08:10")])
    ist_sheet(book, "Vecka 37", rows=[ist_row("08:10", day="20250908")])
    book.add_worksheet("Info").write(0, 0, "Exporterad från IST")


def _dates_check(expected):
    def check(result: Result):
        assert sorted(result.rows["date"].unique().to_list()) == expected

    return check


def _cost(expected_ore):
    def check(result: Result):
        assert result.rows["cost_excl_vat_ore"].to_list() == expected_ore

    return check


def _encrypted(tmp: Path) -> Path:
    from msoffcrypto.format.ooxml import OOXMLFile

    plain = workbook(tmp, "plain.xlsx", ist_sheet)
    out = io.BytesIO()
    with plain.open("rb") as handle:
        OOXMLFile(handle).encrypt("hemligt", out)
    return write(tmp, XL, out.getvalue())


CASES = [
    # encodings, BOMs, separators, line ends
    case(
        "cp1252-decimal-comma",
        lambda t: write(t, S24, csv_bytes(lessons(absence="12,5", kind="Ogiltig frånvaro"))),
        clean(3),
    ),
    case(
        "utf8-bom-wins-over-cp1252",
        lambda t: write(t, S24, b"\xef\xbb\xbf" + csv_bytes(lessons(), encoding="utf-8")),
        clean(3),
    ),
    case(
        "utf8-declared-cp1252",
        lambda t: write(t, S24, csv_bytes(lessons(), encoding="utf-8")),
        error(r"export\.csv .*looks like UTF-8.*Set `encoding: utf-8`"),
    ),
    case(
        "utf8-bom-with-cp1252-bytes",
        lambda t: write(
            t,
            S24,
            b"\xef\xbb\xbf"
            + csv_bytes(lessons()[:1], encoding="utf-8")
            + csv_bytes(lessons()[1:], header=None),
        ),
        error(r"export\.csv .*starts with a UTF-8 BOM but holds bytes that are not UTF-8"),
    ),
    case(
        "cp1252-declared-utf8",
        lambda t: write(t, S24, csv_bytes(lessons())),
        error(r"export\.csv .*not utf-8.*line 1.*looks like cp1252.*`encoding: cp1252`"),
        layout=layout_variant(SKOLA24, encoding="utf-8"),
    ),
    case(
        "utf16-bom",
        lambda t: write(
            t,
            S24,
            b"\xff\xfe"
            + "\r\n".join([";".join(SKOLA24_HEADER), *[";".join(r) for r in lessons()]]).encode(
                "utf-16-le"
            ),
        ),
        clean(3),
    ),
    case(
        "utf16-without-bom",
        lambda t: write(t, S24, ";".join(SKOLA24_HEADER).encode("utf-16-le")),
        error(r"export\.csv .*looks like UTF-16 without a BOM.*`encoding: utf-16`"),
    ),
    case(
        "comma-separated",
        lambda t: write(t, S24, csv_bytes(lessons(), sep=",")),
        error(r"export\.csv .*separator looks like ','.*`separator: \",\"`"),
    ),
    case("lf-line-ends", lambda t: write(t, S24, csv_bytes(lessons(), newline="\n")), clean(3)),
    case(
        "trailing-separator",
        lambda t: write(
            t, S24, csv_bytes([[*r, ""] for r in lessons()], header=[*SKOLA24_HEADER, ""])
        ),
        clean(3),
    ),
    case(
        "quoted-newline-in-a-name",
        lambda t: write(t, S24, csv_bytes([lesson(name='"Åsa\r\nÖberg"'), lesson(start="09:10")])),
        clean(2),
    ),
    case(
        "ragged-row",
        lambda t: write(t, S24, csv_bytes([[*lesson(), "x", "y"]])),
        error(r"export\.csv .*more fields than the header.*separator"),
    ),
    # header row, title rows, totals, blank rows, columns
    case(
        "title-rows-above-the-header",
        lambda t: write(t, S24, b"Franvarorapport HT 2025\r\n\r\n" + csv_bytes(lessons())),
        clean(3, {"above_header": 2}),
    ),
    case(
        "blank-rows-between",
        lambda t: write(t, S24, csv_bytes([lessons()[0], [""] * 11, lessons()[1]])),
        clean(2, {"blank": 1}),
    ),
    case(
        "totals-row-below",
        lambda t: write(
            t, S24, csv_bytes([*lessons(), ["Summa", "", "", "", "", "", "", "", "135", "0", ""]])
        ),
        clean(3, {"footer": 1}),
    ),
    case(
        "footer-note-below",
        lambda t: write(
            t, S24, csv_bytes(lessons()) + "Exporterad 2025-10-01 av Skola24\r\n".encode("cp1252")
        ),
        clean(3, {"footer": 1}),
    ),
    case(
        "no-header-row",
        lambda t: write(t, S24, csv_bytes(lessons(), header=None)),
        error(r"export\.csv .*first row looks like data.*Export the file with its header"),
    ),
    case(
        "renamed-column",
        lambda t: write(
            t,
            S24,
            csv_bytes(
                lessons(), header=[h.replace("Frånvarotyp", "Orsak") for h in SKOLA24_HEADER]
            ),
        ),
        error(
            r"export\.csv does not match layout 'skola24_csv' \(header on row 1\): missing columns \['Frånvarotyp'\]; unknown columns \['Orsak'\]\. Fix: map"  # noqa: E501
        ),
    ),
    case(
        "duplicate-header-names",
        lambda t: write(
            t,
            S24,
            csv_bytes([[*r, "5"] for r in lessons()], header=[*SKOLA24_HEADER, "Frånvaro (min)"]),
        ),
        error(
            r"export\.csv .*'Frånvaro \(min\)' appears 2 times on header row 1 \(columns J, L\)\. Rename"  # noqa: E501
        ),
    ),
    case(
        "empty-header-cell-with-values",
        lambda t: write(
            t, S24, csv_bytes([[*r, "x"] for r in lessons()], header=[*SKOLA24_HEADER, ""])
        ),
        error(r"export\.csv .*column L holds values but its header cell on row 1 is empty"),
    ),
    case("zero-bytes", lambda t: write(t, S24, b""), empty(r"is empty \(0 bytes\)")),
    case(
        "header-only",
        lambda t: write(t, S24, csv_bytes([])),
        empty(r"has a header row but no data rows"),
    ),
    # dates
    case(
        "mixed-date-formats",
        lambda t: write(t, S24, csv_bytes([lesson(day="2025-09-01"), lesson(day="20250902")])),
        clean(2, check=_dates_check([date(2025, 9, 1), date(2025, 9, 2)])),
    ),
    case(
        "text-and-foreign-dates",
        lambda t: write(
            t,
            S24,
            csv_bytes(
                [
                    lesson(),
                    lesson(start="09:10", day="1 sep 2025"),
                    lesson(start="10:10", day="09/01/2025"),
                ]
            ),
        ),
        quarantine(1, {"invalid_date": 2}),
    ),
    case(
        "date-after-the-run-date",
        lambda t: write(t, S24, csv_bytes([lesson(), lesson(day="2025-11-03")])),
        quarantine(1, {"date_after_run_date": 1}),
    ),
    case(
        "excel-serial-in-a-csv",
        lambda t: write(t, S24, csv_bytes([lesson(day="45901")])),
        clean(1, check=_dates_check([date(2025, 9, 1)])),
        layout=layout_variant(SKOLA24, date_formats=["%Y-%m-%d", "excel"]),
    ),
    # numbers
    case(
        "negative-minutes",
        lambda t: write(
            t,
            S24,
            csv_bytes([lesson(), lesson(start="09:10", absence="-5", kind="Ogiltig frånvaro")]),
        ),
        quarantine(1, {"minutes_out_of_range": 1}),
    ),
    case("zero-minutes", lambda t: write(t, S24, csv_bytes([lesson(offered="0")])), clean(1)),
    case(
        "huge-and-scientific-values",
        lambda t: write(
            t,
            S24,
            csv_bytes(
                [
                    lesson(offered="99999999999"),
                    lesson(start="09:10", offered="1e5"),
                    lesson(start="10:10", offered="inf"),
                ]
            ),
        ),
        quarantine(0, {"minutes_out_of_range": 1, "invalid_number": 2}),
    ),
    case(
        "thousands-separators-in-minutes",
        lambda t: write(
            t,
            S24,
            csv_bytes(
                [lesson(offered="1\u00a0000", absence="1 000", kind="Giltig frånvaro")],
                encoding="utf-8",
            ),
        ),
        clean(1),
        layout=layout_variant(SKOLA24, encoding="utf-8"),
    ),
    # personal ids
    case(
        "ids-with-and-without-century-dash-or-plus",
        lambda t: write(
            t,
            S24,
            csv_bytes(
                [
                    lesson(pupil=p, start=f"{8 + i}:10")
                    for i, p in enumerate(
                        [PUPIL, "20" + PUPIL, PUPIL.replace("-", ""), pnr("150304123", "+")]
                    )
                ]
            ),
        ),
        clean(4),
    ),
    case(
        "samordningsnummer",
        lambda t: write(t, S24, csv_bytes([lesson(pupil=pnr("150364123"))])),
        clean(1),
    ),
    case(
        "reserve-number",
        lambda t: write(t, S24, csv_bytes([lesson(pupil="20150304TF01")])),
        clean(1),
    ),
    case(
        "nine-digit-id-lost-its-leading-zero",
        lambda t: write(t, S24, csv_bytes([lesson(pupil=pnr("050304123").replace("-", "")[1:])])),
        clean(1),
    ),
    case(
        "bad-check-digit-and-missing-id",
        lambda t: write(
            t,
            S24,
            csv_bytes(
                [
                    lesson(pupil=PUPIL[:-1] + str((int(PUPIL[-1]) + 1) % 10)),
                    lesson(pupil="", start="09:10"),
                    lesson(start="10:10"),
                ]
            ),
        ),
        quarantine(1, {"invalid_personal_id": 1, "missing_personal_id": 1}),
    ),
    case(
        "exact-duplicate-and-conflict",
        lambda t: write(
            t, S24, csv_bytes([lesson(), lesson(), lesson(absence="5", kind="Ogiltig frånvaro")])
        ),
        Outcome("quarantine", 1, {"conflicting_duplicate": 1}, duplicates=1),
    ),
    # workbooks
    case(
        "xlsx-title-row-and-merged-title",
        lambda t: workbook(t, XL, _title_rows),
        clean(2, {"above_header": 2}),
        layout=IST,
    ),
    case(
        "xlsx-header-row-pinned",
        lambda t: workbook(t, XL, _title_rows),
        clean(2),
        layout=layout_variant(IST, header_row=3),
    ),
    case(
        "xlsx-header-row-pinned-wrong",
        lambda t: workbook(t, XL, _title_rows),
        error(
            r"export\.xlsx sheet 'Närvaro' \(layout 'ist_xlsx'\): row 2 \(`header_row: 2`\) holds none of the layout's column names; the header looks like row 3\. Correct"  # noqa: E501
        ),
        layout=layout_variant(IST, header_row=2),
    ),
    case(
        "xlsx-totals-row",
        lambda t: workbook(t, XL, _totals_row),
        clean(2, {"footer": 1}),
        layout=IST,
    ),
    case(
        "xlsx-serial-dates-1900",
        lambda t: workbook(t, XL, _serial_dates),
        clean(2, check=_dates_check([date(2025, 9, 1)])),
        layout=IST,
    ),
    case(
        "xlsx-serial-dates-1904",
        lambda t: workbook(t, XL, lambda b: _serial_dates(b, True), {"date_1904": True}),
        clean(2, check=_dates_check([date(2025, 9, 1)])),
        layout=IST,
    ),
    case(
        "xlsx-time-as-day-fraction",
        lambda t: workbook(t, XL, _time_fractions),
        clean(2, check=_starts(["08:10", "13:05"])),
        layout=IST,
    ),
    case("xlsx-formula-cells", lambda t: workbook(t, XL, _formulas), clean(1), layout=IST),
    case(
        "xlsx-merged-header-cells",
        lambda t: workbook(t, XL, _merged_header),
        error(
            r"export\.xlsx sheet 'Närvaro' \(layout 'ist_xlsx'\): column J holds values but its header cell on row 1 is empty \(a merged header cell\?\)"  # noqa: E501
        ),
        layout=IST,
    ),
    case(
        "xlsx-sheets-by-pattern",
        lambda t: workbook(t, XL, _two_weeks),
        clean(2, check=_dates_check([date(2025, 9, 1), date(2025, 9, 8)])),
        layout=layout_variant(IST, sheet="Vecka *"),
    ),
    case(
        "xlsx-sheet-by-index",
        lambda t: workbook(t, XL, _two_weeks),
        clean(1),
        layout=layout_variant(IST, sheet=1),
    ),
    case(
        "xlsx-sheet-missing",
        lambda t: workbook(t, XL, _two_weeks),
        error(
            r"export\.xlsx \(layout 'ist_xlsx'\): no sheet matches `sheet: Närvaro`; the workbook has 'Vecka 36', 'Vecka 37', 'Info'"  # noqa: E501
        ),
        layout=IST,
    ),
    case(
        "xlsx-empty-sheet",
        lambda t: workbook(t, XL, lambda b: b.add_worksheet("Närvaro")),
        empty(r"sheet 'Närvaro' is empty"),
        layout=IST,
    ),
    case(
        "xlsx-truncated",
        lambda t: write(t, XL, workbook(t, "whole.xlsx", ist_sheet).read_bytes()[:900]),
        error(
            r"export\.xlsx \(layout 'ist_xlsx'\): the workbook is damaged or cut off .*export it again"  # noqa: E501
        ),
        layout=IST,
    ),
    case(
        "xlsx-password-protected",
        _encrypted,
        error(
            r"export\.xlsx \(layout 'ist_xlsx'\): the workbook is password-protected.*Save it without a password"  # noqa: E501
        ),
        layout=IST,
    ),
    case(
        "csv-named-xlsx",
        lambda t: write(t, XL, csv_bytes(lessons())),
        error(r"export\.xlsx \(layout 'ist_xlsx'\): is not an xlsx workbook.*`format: csv`"),
        layout=IST,
    ),
    case(
        "xlsx-as-csv",
        lambda t: write(t, S24, workbook(t, "w.xlsx", ist_sheet).read_bytes()),
        error(r"export\.csv \(layout 'skola24_csv'\): is an Excel workbook, not a CSV"),
    ),
    # a split-minutes export without an other-absence column: derived from the others
    case(
        "derived-other-absence",
        lambda t: write(
            t,
            S24,
            csv_bytes(
                split_rows(("45", "30", "0", "10"), ("45", "45", "0", "0")), header=SPLIT_HEADER
            ),
        ),
        clean(2, check=lambda r: r.rows["other_absence_minutes"].to_list() == [5.0, 0.0]),
        layout=SPLIT_CSV,
    ),
    case(
        "derived-other-absence-negative",
        lambda t: write(
            t,
            S24,
            csv_bytes(
                split_rows(("45", "40", "0", "10"), ("45", "45", "0", "0,004")), header=SPLIT_HEADER
            ),
        ),
        quarantine(1, {"derived_minutes_negative": 1}),
        layout=SPLIT_CSV,
    ),
    case(
        "empty-cells-with-a-default",
        lambda t: write(t, S24, csv_bytes(split_rows(("45", "35", "", "10")), header=SPLIT_HEADER)),
        clean(1),
        layout=layout_variant(SPLIT_CSV, defaults={"valid_absence_minutes": 0}),
    ),
    # housing exports
    case(
        "housing-thousands-separators",
        lambda t: write(
            t,
            H,
            fast2(
                [
                    order(cost="12 500,00 kr"),
                    order("2", cost="1.250,00"),
                    order("3", cost="1,250.00"),
                    order("4", cost="1\u00a0250 kr"),
                ],
                encoding="utf-8",
            ),
        ),
        clean(4, check=_cost([1000000, 100000, 100000, 100000])),
        run_housing,
        layout_variant(FAST2, encoding="utf-8"),
    ),
    case(
        "housing-negative-zero-huge-costs",
        lambda t: write(
            t,
            H,
            fast2(
                [
                    order(cost="-100,00"),
                    order("2", cost="0"),
                    order("3", cost="2 000 000 kr"),
                    order("4", cost="99999999999999999999 kr"),
                ]
            ),
        ),
        quarantine(1, {"negative_total": 1, "implausible_amount": 1, "invalid_amount": 1}),
        run_housing,
        FAST2,
    ),
    case(
        "housing-dates-mixed-and-after-run-date",
        lambda t: write(
            t,
            H,
            fast2(
                [
                    order(),
                    order("2", reported="20250305", completed=""),
                    order("3", reported="2025-11-04", completed=""),
                    order("4", reported="4/3/2025"),
                ]
            ),
        ),
        quarantine(2, {"date_after_run_date": 1, "invalid_date": 1}),
        run_housing,
        FAST2,
    ),
    case(
        "housing-header-only",
        lambda t: write(t, H, fast2([])),
        empty(r"has a header row but no data rows"),
        run_housing,
        FAST2,
    ),
    case(
        "housing-xlsx-serial-date",
        lambda t: workbook(
            t,
            "housing/ekbo/q.xlsx",
            lambda b: (
                b.add_worksheet("Arbetsordrar").write_row(0, 0, EKBO_HEADER)
                or b.worksheets()[0].write_row(
                    1, 0, ["EB-1", 45720, "", "EKBO-011", "1", "GK", "Klar", "", 1500]
                )
            ),
        ),
        clean(1, check=lambda r: r.rows["reported_date"].to_list() == [date(2025, 3, 4)]),
        run_housing,
        EKBO,
    ),
    case(
        "housing-constant-category",
        lambda t: write(t, H, fast2([order(phrase="")])),
        clean(1, check=lambda r: r.rows["category"].to_list() == ["graffiti"]),
        run_housing,
        layout_variant(FAST2, defaults={"category": "Klotter"}),
    ),
    # reference files
    case(
        "reference-cp1252",
        lambda t: reference(t, schools=SCHOOLS_CSV.encode("cp1252")),
        error(r"schools\.csv is not UTF-8 \(line 2; .*looks like cp1252.*save it as UTF-8"),
        run_reference,
    ),
    case(
        "reference-semicolons",
        lambda t: reference(t, areas=AREAS.replace(",", ";").encode()),
        error(r"areas\.csv: missing columns .*separator looks like ';'"),
        run_reference,
    ),
    case(
        "reference-bom",
        lambda t: reference(t, schools=b"\xef\xbb\xbf" + SCHOOLS_CSV.encode()),
        Outcome("reference"),
        run_reference,
    ),
    case(
        "reference-bad-school-code",
        lambda t: reference(t, schools=SCHOOLS_CSV.replace("12345678", "1234567").encode()),
        error(r"schools\.csv: bad school_unit_code on lines \[2\]"),
        run_reference,
    ),
    case(
        "reference-empty-file",
        lambda t: reference(t, areas=b""),
        error(r"areas\.csv is empty"),
        run_reference,
    ),
    case(
        "reference-duplicate-key",
        lambda t: reference(t, schools=(SCHOOLS_CSV + SCHOOLS_CSV.splitlines()[1] + "\n").encode()),
        error(r"schools\.csv: school_unit_code repeated"),
        run_reference,
    ),
    case(
        "reference-impossible-date",
        lambda t: reference(
            t, school_calendar=(CALENDAR + "2025-02-30,2025/26,VT2026,true,school_day,\n").encode()
        ),
        error(r"school_calendar\.csv: bad date on lines \[3\]"),
        run_reference,
    ),
    case(
        "reference-exception-swedish-day-type",
        lambda t: reference(
            t,
            school_calendar_exceptions=b"school_unit_code,date,day_type,note\n"
            b"12345678,2025-09-01,studiedag,\n",
        ),
        error(
            r"school_calendar_exceptions\.csv: bad day_type on lines \[2\]; expected "
            r"study_day, closed or make_up_day"
        ),
        run_reference,
    ),
    case(
        "reference-exception-unknown-school",
        lambda t: reference(
            t,
            school_calendar_exceptions=b"school_unit_code,date,day_type,note\n"
            b"87654321,2025-09-01,closed,\n",
        ),
        error(r"school_calendar_exceptions\.csv: school_unit_code on lines \[2\] is not in"),
        run_reference,
    ),
    case(
        "reference-valid-to-day-first",
        lambda t: reference(
            t,
            schools=SCHOOLS_CSV.replace("attendance_system\n", "attendance_system,valid_to\n")
            .replace("skola24\n", "skola24,13/06/2025\n")
            .encode(),
        ),
        error(r"schools\.csv: bad valid_to on lines \[2\]; expected YYYY-MM-DD or empty"),
        run_reference,
    ),
    case(
        "reference-revision-unknown-area",
        lambda t: reference(
            t,
            area_revisions=b"old_area_code,new_area_code,revision\n1299C0010,1299C0099,DeSO 2025\n",
        ),
        error(r"area_revisions\.csv: new_area_code on lines \[2\] is not in areas\.csv"),
        run_reference,
    ),
]


def test_the_table_has_at_least_40_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize(("build", "expect", "runner", "layout"), CASES)
def test_bad_input(tmp_path, build, expect, runner, layout):
    path = build(tmp_path)
    if expect.kind == "error":
        with pytest.raises((LayoutError, ReferenceError)) as caught:
            runner(path, layout)
        message = str(caught.value)
        assert PUPIL not in message and PUPIL.replace("-", "") not in message
        assert "Öberg" not in message  # no cell value of the file
        assert caught.value.__cause__ is None  # no chained parser message
        assert len(message.splitlines()) == 1
        import re

        assert re.search(expect.message, message), message
        return
    result = runner(path, layout)
    if expect.kind == "reference":
        assert result.schools.height == 1
        return
    if expect.kind == "empty":
        import re

        assert result.rows.height == 0 and re.search(expect.message, result.empty), result.empty
        return
    assert (result.clean, result.reasons, result.duplicates) == (
        expect.clean,
        expect.reasons,
        expect.duplicates,
    )
    if expect.skipped is not None:
        assert result.skipped == expect.skipped
    if expect.check is not None:
        assert expect.check(result) is not False
