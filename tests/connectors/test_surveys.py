"""The survey template: reading CSV (UTF-8/cp1252, `,`/`;`) and XLSX, and each error kind."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from connectors.surveys.template import (
    COLUMNS,
    REASONS,
    TemplateError,
    read_survey_file,
    validate,
)

INDICATORS = {"alcohol_last_month_y9", "feel_safe_outdoors_evening"}
HEADER = ",".join(COLUMNS)
GOOD = "CAN,2024,1299,åk 9,T,alcohol_last_month_y9,21.5,212,71"
ROWS = {  # one row per error kind, in REASONS' order
    "missing_value": "CAN,2024,1299,,T,alcohol_last_month_y9,21.5,212,71",
    "bad_year": "CAN,24,1299,åk 9,T,alcohol_last_month_y9,21.5,212,71",
    "bad_area_code": "CAN,2024,Ekdala,åk 9,T,alcohol_last_month_y9,21.5,212,71",
    "bad_sex": "CAN,2024,1299,åk 9,X,alcohol_last_month_y9,21.5,212,71",
    "unknown_indicator": "CAN,2024,1299,åk 9,T,alcohol,21.5,212,71",
    "bad_value": "CAN,2024,1299,åk 9,T,alcohol_last_month_y9,121.5,212,71",
    "bad_respondents": "CAN,2024,1299,åk 9,T,alcohol_last_month_y9,21.5,ca 200,71",
    "bad_response_rate": "CAN,2024,1299,åk 9,T,alcohol_last_month_y9,21.5,212,",
}


def write(tmp_path: Path, lines: list[str], name="results.csv", **encoding) -> Path:
    path = tmp_path / name
    path.write_bytes("\n".join([HEADER, *lines]).encode(encoding.get("encoding", "utf-8")))
    return path


def test_each_error_kind_has_its_reason(tmp_path):
    assert list(ROWS) == list(REASONS)
    rows = read_survey_file(write(tmp_path, [GOOD, *ROWS.values()]))
    valid, rejected = validate(rows, INDICATORS, this_year=2026)
    assert valid.height == 1 and rejected.height == len(ROWS)
    assert rejected.select("row_number", "reason").rows() == [
        (i, reason) for i, reason in enumerate(ROWS, start=2)
    ]
    # rejected rows keep what the file said
    assert rejected.filter(pl.col("reason") == "bad_respondents")["respondents"].item() == "ca 200"
    assert valid.row(0, named=True) == {
        "survey": "CAN", "year": 2024, "area_code": "1299", "grade": "åk 9", "sex": "T",
        "indicator": "alcohol_last_month_y9", "value": 21.5, "respondents": 212,
        "response_rate_pct": 71.0, "row_number": 1,
    }  # fmt: skip


def test_swedish_spreadsheet_habits(tmp_path):
    line = "LUPP;2023;1299C0010;13-19 år;Flickor;feel_safe_outdoors_evening;68,5 %;41;58,0"
    path = tmp_path / "lupp.csv"
    path.write_bytes(("\n".join([HEADER.replace(",", ";"), line])).encode("cp1252"))
    valid, rejected = validate(read_survey_file(path), INDICATORS, this_year=2026)
    assert rejected.is_empty()
    assert valid.select("area_code", "sex", "value", "response_rate_pct").row(0) == (
        "1299C0010", "K", 68.5, 58.0,
    )  # fmt: skip


def test_xlsx_template(tmp_path):
    frame = pl.DataFrame([dict(zip(COLUMNS, GOOD.split(","), strict=True))])
    path = tmp_path / "results.xlsx"
    frame.write_excel(path)
    valid, rejected = validate(read_survey_file(path), INDICATORS, this_year=2026)
    assert valid.height == 1 and rejected.is_empty()


def test_a_file_without_the_template_columns_is_refused(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("survey,year,kommun,value\nCAN,2024,1299,21.5\n", encoding="utf-8")
    with pytest.raises(TemplateError, match="missing template column"):
        read_survey_file(path)
    with pytest.raises(TemplateError, match=r"\.csv or \.xlsx"):
        read_survey_file(tmp_path / "results.ods")


def test_the_documented_example_is_valid():
    example = Path(__file__).resolve().parents[2] / "catalogue" / "survey_template.csv"
    indicators = INDICATORS | {"meaningful_leisure"}
    valid, rejected = validate(read_survey_file(example), indicators, this_year=2026)
    assert rejected.is_empty() and valid.height == 4
