"""Survey results typed in from reports (LUPP, Stockholmsenkäten, CAN, Folkhälsorapport barn
och unga ...): one CSV or XLSX template, read as text and validated row by row.

Columns (docs/sources/statistics.md, "Entering survey results"; an example is
`catalogue/survey_template.csv`):

| column | content |
|---|---|
| survey | name of the survey, e.g. `LUPP`, `CAN`, `Folkhälsorapport barn och unga` |
| year | year of the survey, 4 digits |
| area_code | kommunkod (4 digits; 0000 the country, 00LL a county) or a DeSO/RegSO code |
| grade | grade or age group, e.g. `åk 9`, `gy 2`, `13-19 år` |
| sex | `T` all, `K` girls/women, `M` boys/men (also `alla`, `flickor`, `pojkar`, …) |
| indicator | an indicator id of the catalogue with `source: survey` |
| value_pct | the share in percent, 0-100 (decimal comma allowed) |
| respondents | number of respondents behind the value |
| response_rate_pct | the survey's response rate in percent, 0-100 |

A CSV may use `,` or `;` and UTF-8 (with or without BOM) or Windows-1252.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

COLUMNS = [
    "survey",
    "year",
    "area_code",
    "grade",
    "sex",
    "indicator",
    "value_pct",
    "respondents",
    "response_rate_pct",
]
SEX_CODES = {
    "t": "T", "alla": "T", "totalt": "T", "total": "T", "samtliga": "T",
    "k": "K", "flickor": "K", "kvinnor": "K", "tjejer": "K",
    "m": "M", "pojkar": "M", "män": "M", "killar": "M",
}  # fmt: skip
AREA_CODE = r"^(\d{4}|\d{4}[ABC]\d{4}|\d{4}R\d{3,4})$"

# Reasons a row is rejected, in the order they are checked (one reason per row).
REASONS = {
    "missing_value": "survey, year, area_code, grade, sex, indicator or value_pct is empty",
    "bad_year": "year is not a 4-digit year between 1990 and next year",
    "bad_area_code": "area_code is not a kommunkod (4 digits) or a DeSO/RegSO code",
    "bad_sex": "sex is not T/K/M (or alla/flickor/pojkar …)",
    "unknown_indicator": "indicator is not a survey indicator of the catalogue",
    "bad_value": "value_pct is not a number between 0 and 100",
    "bad_respondents": "respondents is not a whole number ≥ 0",
    "bad_response_rate": "response_rate_pct is not a number between 0 and 100",
}


class TemplateError(ValueError):
    """The file does not follow the template at all (e.g. a column is missing)."""


def read_survey_file(path: Path) -> pl.DataFrame:
    """The file's rows as text, template columns only, plus `row_number` (1 = first data row)."""
    if path.suffix.lower() == ".xlsx":
        frame = pl.read_excel(path, infer_schema_length=0)
    elif path.suffix.lower() == ".csv":
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = raw.decode("cp1252")
        first = text.split("\n", 1)[0]
        separator = ";" if first.count(";") > first.count(",") else ","
        frame = pl.read_csv(text.encode(), separator=separator, infer_schema=False)
    else:
        raise TemplateError(f"{path.name}: survey results must be .csv or .xlsx")
    frame = frame.rename({c: c.strip().lower() for c in frame.columns})
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise TemplateError(
            f"{path.name}: missing template column(s) {', '.join(missing)}; the header must be "
            f"{','.join(COLUMNS)} (see catalogue/survey_template.csv)"
        )
    return frame.select(
        pl.col(COLUMNS).cast(pl.String).str.strip_chars(),
        row_number=pl.int_range(1, pl.len() + 1, dtype=pl.Int64),
    )


def _number(column: str) -> pl.Expr:
    return pl.col(column).str.replace(",", ".").str.replace("%", "").str.strip_chars()


def validate(
    rows: pl.DataFrame, survey_indicators: set[str], this_year: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(valid rows typed, rejected rows as read with `reason`); every row is in one of them."""
    typed = rows.with_columns(
        year_int=pl.col("year").cast(pl.Int64, strict=False),
        sex_code=pl.col("sex").str.to_lowercase().replace_strict(SEX_CODES, default=None),
        value=_number("value_pct").cast(pl.Float64, strict=False),
        respondents_int=pl.col("respondents").cast(pl.Int64, strict=False),
        rate=_number("response_rate_pct").cast(pl.Float64, strict=False),
    )
    required = ["survey", "year", "area_code", "grade", "sex", "indicator", "value_pct"]
    checks = {
        "missing_value": pl.any_horizontal(
            [pl.col(c).is_null() | (pl.col(c) == "") for c in required]
        ),
        "bad_year": ~pl.col("year_int").is_between(1990, this_year + 1).fill_null(False),
        "bad_area_code": ~pl.col("area_code").str.contains(AREA_CODE).fill_null(False),
        "bad_sex": pl.col("sex_code").is_null(),
        "unknown_indicator": ~pl.col("indicator").is_in(sorted(survey_indicators)),
        "bad_value": ~pl.col("value").is_between(0, 100).fill_null(False),
        "bad_respondents": ~(pl.col("respondents_int") >= 0).fill_null(False),
        "bad_response_rate": ~pl.col("rate").is_between(0, 100).fill_null(False),
    }
    reason = pl.lit(None, pl.String)
    for name, failed in reversed(checks.items()):  # the first failing check wins
        reason = pl.when(failed).then(pl.lit(name)).otherwise(reason)
    typed = typed.with_columns(reason=reason)
    rejected = typed.filter(pl.col("reason").is_not_null()).select(*COLUMNS, "row_number", "reason")
    valid = typed.filter(pl.col("reason").is_null()).select(
        "survey",
        pl.col("year_int").alias("year"),
        "area_code",
        "grade",
        pl.col("sex_code").alias("sex"),
        "indicator",
        "value",
        pl.col("respondents_int").alias("respondents"),
        pl.col("rate").alias("response_rate_pct"),
        "row_number",
    )
    return valid, rejected
