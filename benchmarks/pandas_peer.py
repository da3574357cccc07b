"""The pandas peer: the attendance marts straight from the raw exports in one pandas script,
the way many municipalities do it today (no orchestration, no landing, no validation suite).

    python benchmarks/pandas_peer.py --drop data/drop --out out/ [--timings timings.json]

It reads the Skola24 CSV (pandas) and IST XLSX (fastexcel → pandas) exports one file at a
time, only the columns it uses and each as a category (a month's export repeats few distinct
values), replaces each personnummer by HMAC-SHA256(LAGESBILD_PSEUDONYM_KEY, normalised id)
computed once per distinct id, drops the rows the pipeline would quarantine (same rules, same
order; ids, dates, times, grades and numbers are parsed once per distinct text), keeps the
first of repeated lessons within the file and sums the file's lessons to pupil-days before
the next file is read. The later file wins a pupil-day; it then aggregates and suppresses small
cells like the dbt marts and writes the three attendance marts as parquet. Rejected rows are
counted per reason, not kept. Memory is bounded by one file's lessons plus every pupil-day,
not by every lesson.

Where it cannot equal the pipeline: it has no load history, so "the later load wins" is the
later file in (system, file name) order, which is the pipeline's landing order only when files
arrive in that order (as in the demo); and its rules cover the two demo layouts only.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import time
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import fastexcel
import numpy as np
import pandas as pd

HUNDREDTH = Decimal("0.01")

GRADES = ["F", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
MINUTES = ["offered", "attended", "valid", "invalid", "other"]
LESSON_KEY = ["pupil_key", "school_unit_code", "date", "lesson_start"]
DAY_KEY = ["pupil_key", "school_unit_code", "date"]
ID_FORM = re.compile(
    r"^(?P<century>\d{2})?(?P<yymmdd>\d{6})(?P<sep>[-+])?(?P<serial>[0-9A-Z]{3})(?P<check>[0-9A-Z])$"
)
SKOLA24_TYPES = {"": "none", "Giltig frånvaro": "valid", "Ogiltig frånvaro": "invalid"}
SKOLA24_TYPES["Ej bedömd"] = "other"


# -- personnummer ---------------------------------------------------------------------------


def _luhn(digits: str) -> int:
    total = 0
    for i, ch in enumerate(digits):
        product = int(ch) * (2 if i % 2 == 0 else 1)
        total += product // 10 + product % 10
    return (10 - total % 10) % 10


def classify_id(raw: str, today: date) -> tuple[str, str]:
    """(kind, canonical 12-character id) of a personnummer as Skatteverket defines it."""
    text = re.sub(r"\s", "", raw).upper()
    if not text:
        return "missing", ""
    if len(text) == 9 and text.isdigit():
        text = "0" + text
    match = ID_FORM.match(text)
    if not match:
        return "invalid", text
    yymmdd, serial, check = match["yymmdd"], match["serial"], match["check"]
    century = match["century"]
    if century is None:
        yy, month, day = int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:6]) % 60
        year = (today.year // 100) * 100 + yy
        if (year, month, day) > (today.year, today.month, today.day):
            year -= 100
        if match["sep"] == "+":
            year -= 100
        century = str(year // 100)
    canonical = f"{century}{yymmdd}{serial}{check}"
    kind, day = "personnummer", int(yymmdd[4:6])
    if day > 60:
        kind, day = "samordningsnummer", day - 60
    try:
        date(int(canonical[:4]), int(yymmdd[2:4]), day)
    except ValueError:
        return "invalid", text
    if not (serial + check).isdigit():
        return ("temporary", canonical) if serial[:2].isalpha() else ("invalid", text)
    if _luhn(yymmdd + serial) != int(check):
        return "invalid", text
    return kind, canonical


class Pseudonyms:
    """Each distinct id is classified and pseudonymised once over all files. A pupil is kept
    as the number of its pseudonym (int32), not as the 64-character hex digest per row."""

    def __init__(self, key: bytes) -> None:
        self.key, self.today = key, date.today()
        self.seen: dict[str, tuple[int, str]] = {}  # id as exported → (pupil number, kind)
        self.numbers: dict[str, int] = {}  # pseudonym → pupil number

    def _one(self, raw: str) -> tuple[int, str]:
        if raw not in self.seen:
            kind, canonical = classify_id(raw, self.today)
            number = -1
            if canonical:
                pseudonym = hmac.new(self.key, canonical.encode(), hashlib.sha256).hexdigest()
                number = self.numbers.setdefault(pseudonym, len(self.numbers))
            self.seen[raw] = number, kind
        return self.seen[raw]

    def __call__(self, ids: pd.Series) -> tuple[pd.Series, pd.Series]:
        """(pupil_key, kind) per row of a categorical column of ids."""
        pupils = _per_value(ids, lambda v: pd.Series([self._one(x)[0] for x in v], dtype="int32"))
        kinds = _per_value(ids, lambda v: pd.Series([self._one(x)[1] for x in v]))
        return pupils, kinds


# -- reading --------------------------------------------------------------------------------

# The columns the peer uses, by their name in each layout → the pipeline's common name.
SKOLA24_COLUMNS = {
    "Personnummer": "personal_id",
    "Skolenhetskod": "school_unit_code",
    "Årskurs": "grade",
    "Datum": "date",
    "Starttid": "lesson_start",
    "Lektionslängd (min)": "offered",
    "Frånvaro (min)": "absence",
    "Frånvarotyp": "absence_type",
}
IST_COLUMNS = {
    "Elev-ID": "personal_id",
    "Skolenhet": "school_unit_code",
    "Åk": "grade",
    "Datum": "date",
    "Lektion": "lesson_start",
    "Schemalagd tid": "offered",
    "Närvarande": "attended",
    "Giltig frånvaro": "valid",
    "Ogiltig frånvaro": "invalid",
    "Övrig frånvaro": "other",
}


def exports(drop: Path) -> list[tuple[str, Path]]:
    """(layout, path) of every export, in the order in which the later one wins a pupil-day."""
    folder = drop / "attendance"
    return [("skola24", p) for p in sorted((folder / "skola24").glob("*.csv"))] + [
        ("ist", p) for p in sorted((folder / "ist").glob("*.xlsx"))
    ]


def read_export(layout: str, path: Path) -> pd.DataFrame:
    """The columns the peer uses of one export, in the pipeline's names, each a category of
    text: a month's export repeats few distinct values (pupils, schools, dates, minutes)."""
    if layout == "skola24":
        with path.open("rb") as file:
            encoding = "utf-8-sig" if file.read(3) == b"\xef\xbb\xbf" else "cp1252"
        raw = pd.read_csv(
            path,
            sep=";",
            encoding=encoding,
            usecols=list(SKOLA24_COLUMNS),
            dtype="category",
            keep_default_na=False,
        )
        return pd.DataFrame({name: raw[column] for column, name in SKOLA24_COLUMNS.items()})
    sheet = fastexcel.read_excel(path).load_sheet_by_name(
        "Närvaro", use_columns=list(IST_COLUMNS), dtypes="string"
    )
    raw = sheet.to_pandas()
    return pd.DataFrame(
        {name: raw.pop(column).astype("category") for column, name in IST_COLUMNS.items()}
    )


# -- cleaning -------------------------------------------------------------------------------


def _per_value(column: pd.Series, convert) -> pd.Series:
    """convert() of a categorical column, run once per distinct value instead of per row."""
    values = pd.Series([*column.cat.categories, ""])  # the last one: an empty cell (code -1)
    codes = column.cat.codes.to_numpy()
    codes = np.where(codes < 0, len(values) - 1, codes)
    return convert(values).take(codes).set_axis(column.index)


def _strip(column: pd.Series) -> pd.Series:
    return column.fillna("").astype(str).str.strip()


def _number(column: pd.Series) -> pd.Series:
    text = column.str.replace(r"[\s\xa0]", "", regex=True).str.replace(",", ".", n=1, regex=False)
    return pd.to_numeric(text.mask(text == ""), errors="coerce")


def _minutes(column: pd.Series) -> pd.Series:
    return _number(_strip(column))


def _is_empty(column: pd.Series) -> pd.Series:
    return _strip(column) == ""


def _date(column: pd.Series, formats: list[str]) -> pd.Series:
    day = column.str.replace(r"[ T]00:00(:00(\.0+)?)?$", "", regex=True)
    parsed = pd.Series(pd.NaT, index=column.index, dtype="datetime64[us]")
    for fmt in formats:
        parsed = parsed.fillna(pd.to_datetime(day, format=fmt, errors="coerce"))
    return parsed


def _grade(column: pd.Series) -> pd.Series:
    text = column.str.upper().str.replace(r"^(ÅK|AK|ÅRSKURS)\s*", "", regex=True)
    text = text.str.strip().str.lstrip("0")
    return text.where(~text.isin(["", "F", "FK", "FSK"]), "F")


def _time(column: pd.Series) -> pd.Series:
    parts = column.str.extract(r"^(?:\d{4}-\d{2}-\d{2}[ T])?(\d{1,2})[:.](\d{2})(?::\d{2})?$")
    hour = pd.to_numeric(parts[0], errors="coerce")
    minute = pd.to_numeric(parts[1], errors="coerce")
    valid = hour.between(0, 23) & minute.between(0, 59)
    text = (
        hour.astype("Int64").astype(str).str.zfill(2)
        + ":"
        + minute.astype("Int64").astype(str).str.zfill(2)
    )
    return text.where(valid)


def clean(
    raw: pd.DataFrame, layout: str, pupils: pd.Series, id_kinds: pd.Series, schools: set[str]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """One export's usable lesson rows and the count of its rejected rows per reason."""
    formats = ["%Y-%m-%d", "%Y%m%d"] if layout == "skola24" else ["%Y%m%d", "%Y-%m-%d"]
    lessons = pd.DataFrame(
        {
            "pupil_key": pupils,
            "school_unit_code": _per_value(raw["school_unit_code"], _strip),
            "grade": _per_value(raw["grade"], lambda v: _grade(_strip(v))),
            "date": _per_value(raw["date"], lambda v: _date(_strip(v), formats)),
            "lesson_start": _per_value(raw["lesson_start"], lambda v: _time(_strip(v))),
            "offered": _per_value(raw["offered"], _minutes),
        }
    )
    if layout == "skola24":  # one absence amount and its type
        absence = _per_value(raw["absence"], _minutes)
        category = _per_value(raw["absence_type"], lambda v: _strip(v).map(SKOLA24_TYPES))
        for kind in ("valid", "invalid", "other"):
            lessons[kind] = absence.where(category == kind, 0.0)
        lessons["attended"] = lessons["offered"] - absence
        numbers_missing = lessons["offered"].isna() | absence.isna()
        unknown_type = category.isna() | ((category == "none") & (absence != 0) & absence.notna())
    else:  # IST: minutes per kind
        for kind in ("attended", "valid", "invalid", "other"):
            lessons[kind] = _per_value(raw[kind], _minutes)
        numbers_missing = lessons[MINUTES].isna().any(axis=1)
        unknown_type = pd.Series(False, index=raw.index)
    minutes = lessons[MINUTES]
    out_of_range = (
        (minutes < 0).any(axis=1)
        | (lessons["offered"] > 24 * 60)
        | (lessons[["valid", "invalid", "other"]].gt(lessons["offered"], axis=0)).any(axis=1)
    )
    total = lessons["attended"] + lessons["valid"] + lessons["invalid"] + lessons["other"]
    not_adding_up = (total - lessons["offered"]).abs() > 0.01
    required = ["school_unit_code", "grade", "date", "lesson_start", "offered"]
    checks = {
        "missing_personal_id": id_kinds == "missing",
        "invalid_personal_id": id_kinds == "invalid",
        "missing_value": pd.concat([_per_value(raw[c], _is_empty) for c in required], axis=1).any(
            axis=1
        ),
        "invalid_date": lessons["date"].isna(),
        "unknown_school_unit": ~lessons["school_unit_code"].isin(schools),
        "invalid_grade": ~lessons["grade"].isin(GRADES),
        "invalid_lesson_start": lessons["lesson_start"].isna(),
        "invalid_number": numbers_missing,
        "unknown_absence_type": unknown_type,
        "minutes_out_of_range": out_of_range,
        "minutes_do_not_add_up": not_adding_up,
    }
    reason = pd.Series(
        np.select([c.fillna(False).to_numpy(bool) for c in checks.values()], list(checks), ""),
        index=raw.index,
    )
    rejected = {k: int(v) for k, v in reason.value_counts().drop("", errors="ignore").items()}
    usable = lessons[reason == ""]
    # Within the file: exact repeats are duplicates, other values for the same lesson a conflict.
    usable = usable[~usable.duplicated([*LESSON_KEY, "grade", *MINUTES])]
    conflicts = usable.duplicated(LESSON_KEY)
    rejected["conflicting_duplicate"] = int(conflicts.sum())
    return usable[~conflicts], rejected


def file_days(lessons: pd.DataFrame, order: int, schools: list[str]) -> pd.DataFrame:
    """One row per pupil × school unit × day of one file's lessons, in compact types."""
    days = lessons.groupby(DAY_KEY, as_index=False).agg(
        grade=("grade", "max"),
        offered=("offered", "sum"),
        valid=("valid", "sum"),
        invalid=("invalid", "sum"),
        other=("other", "sum"),
    )
    days["school_unit_code"] = pd.Categorical(days["school_unit_code"], categories=schools)
    days["grade"] = pd.Categorical(days["grade"], categories=GRADES)
    days["file_order"] = np.int16(order)
    return days


def pupil_days(per_file: list[pd.DataFrame]) -> pd.DataFrame:
    """One row per pupil × school unit × day; the later file wins a pupil-day."""
    days = pd.concat(per_file, ignore_index=True)  # in file order
    days = days[~days.duplicated(DAY_KEY, keep="last")].drop(columns="file_order")
    return days.astype({"school_unit_code": str, "grade": str})


# -- marts ----------------------------------------------------------------------------------


def _round2(values: pd.Series) -> pd.Series:
    """Round to 2 decimals as DuckDB's round() does: the double's exact decimal value, half
    away from zero. Scaling by 100 first would not do: 4.585 is stored as 4.58499…, which
    DuckDB rounds to 4.58 while `4.585 * 100` is exactly 458.5. Marts are small: per value."""

    def exact(value: float) -> float:
        if value != value:  # NaN: a rate with no denominator
            return value
        return float(Decimal(value).quantize(HUNDREDTH, rounding=ROUND_HALF_UP))

    return values.map(exact)


def _pct(minutes: pd.Series, offered: pd.Series) -> pd.Series:
    return _round2(100.0 * minutes / offered.where(offered != 0))


def _absence_measures(frame: pd.DataFrame, min_persons: int, min_denominator: int):
    small = frame["pupils"] < min_persons
    withheld = (frame["pupils"] < min_denominator) | small
    measures = {
        "pupils": frame["pupils"].astype("Int64").mask(small),
        "offered_minutes": frame["offered"].mask(small),
    }
    for kind in ("valid", "invalid", "other", "total"):
        measures[f"{kind}_absence_pct"] = _pct(frame[kind], frame["offered"]).mask(withheld)
    no_time = frame["offered"].isna() | (frame["offered"] == 0)
    measures["absence_pct_status"] = (
        pd.Series("ok", index=frame.index).mask(no_time, "missing").mask(withheld, "withheld")
    )
    measures["is_suppressed"] = small | withheld
    return pd.DataFrame(measures, index=frame.index)


def school_grade_month(days, schools, min_persons, min_denominator) -> pd.DataFrame:
    grouped = days.groupby(["school_unit_code", "grade", "month"], as_index=False).agg(
        school_days=("date", "nunique"),
        pupils=("pupil_key", "nunique"),
        offered=("offered", "sum"),
        valid=("valid", "sum"),
        invalid=("invalid", "sum"),
        other=("other", "sum"),
        total=("total", "sum"),
    )
    grouped = grouped.merge(schools[["school_unit_code", "school_name", "area_code"]], how="left")
    return pd.concat(
        [
            grouped[["school_unit_code", "school_name", "area_code", "grade", "month"]],
            grouped["school_days"],
            _absence_measures(grouped, min_persons, min_denominator),
        ],
        axis=1,
    )


def pupil_terms(days: pd.DataFrame, municipality_code: str) -> pd.DataFrame:
    in_term = days[days["term"].notna()]
    scoped = pd.concat(
        [
            in_term.assign(scope="area"),
            in_term.assign(scope="municipality", area_code=municipality_code),
        ]
    )
    return scoped.groupby(
        ["scope", "area_code", "pupil_key", "school_year", "term"], as_index=False, dropna=False
    ).agg(
        last_date=("date", "max"),
        offered=("offered", "sum"),
        valid=("valid", "sum"),
        invalid=("invalid", "sum"),
        other=("other", "sum"),
        total=("total", "sum"),
    )


def area_term(terms, areas, min_persons, min_denominator) -> pd.DataFrame:
    grouped = (
        terms[terms["scope"] == "area"]
        .groupby(["area_code", "school_year", "term"], as_index=False)
        .agg(
            data_through=("last_date", "max"),
            pupils=("pupil_key", "nunique"),
            offered=("offered", "sum"),
            valid=("valid", "sum"),
            invalid=("invalid", "sum"),
            other=("other", "sum"),
            total=("total", "sum"),
        )
    )
    grouped = grouped.merge(areas[["area_code", "area_name"]], how="left")
    return pd.concat(
        [
            grouped[["area_code", "area_name", "school_year", "term", "data_through"]],
            _absence_measures(grouped, min_persons, min_denominator),
        ],
        axis=1,
    )


def _secondary(frame: pd.DataFrame, flag: str, order: list[str]) -> pd.Series:
    """Per term and threshold: one withheld area beside a published municipality row → the
    smallest published area row is withheld too."""
    result = pd.Series(False, index=frame.index)
    for _, group in frame.groupby(["school_year", "term", "threshold_pct"]):
        parts = group[group["scope"] == "area"]
        town = group[group["scope"] == "municipality"]
        if parts[flag].sum() == 1 and (~town[flag]).any():
            published = parts[~parts[flag]].sort_values(order)
            if len(published):
                result[published.index[0]] = True
    return result


def problematic(terms, areas, thresholds, municipality_name, min_persons, min_denominator):
    rows = []
    for threshold in thresholds:
        above = (terms["offered"] > 0) & (100 * terms["total"] >= threshold * terms["offered"])
        counted = (
            terms.assign(above_key=terms["pupil_key"].where(above))
            .groupby(["scope", "area_code", "school_year", "term"], as_index=False)
            .agg(pupils=("pupil_key", "nunique"), pupils_at_or_above=("above_key", "nunique"))
        )
        rows.append(counted.assign(threshold_pct=threshold))
    frame = pd.concat(rows, ignore_index=True)
    frame = frame.merge(areas[["area_code", "area_name"]], how="left")
    frame.loc[frame["scope"] == "municipality", "area_name"] = municipality_name
    frame["is_small_group"] = frame["pupils"] < min_persons
    frame["is_primary"] = (
        (frame["pupils"] < min_denominator)
        | frame["is_small_group"]
        | (frame["pupils_at_or_above"] < min_persons)
    )
    # Bands: going up the thresholds, withhold a count 1 to min_persons - 1 below the last
    # published one (the group's pupils to start with).
    frame = frame.sort_values(["scope", "area_code", "school_year", "term", "threshold_pct"])
    band = pd.Series(False, index=frame.index)
    for _, group in frame.groupby(["scope", "area_code", "school_year", "term"]):
        last = group["pupils"].iloc[0]
        for index, count, primary in zip(
            group.index, group["pupils_at_or_above"], group["is_primary"], strict=True
        ):
            if primary:
                continue  # already withheld: neither banded nor the new reference
            if 1 <= last - count <= min_persons - 1:
                band[index] = True
            else:
                last = count
    frame["is_band"] = band
    frame["is_count_withheld"] = frame["is_primary"] | frame["is_band"]
    secondary = _secondary(frame, "is_count_withheld", ["pupils_at_or_above", "area_code"])
    group_secondary = _secondary(frame, "is_small_group", ["pupils", "area_code"])
    withheld = frame["is_count_withheld"] | secondary | group_secondary
    pupils_withheld = frame["is_small_group"] | group_secondary
    share = _round2(
        100.0 * frame["pupils_at_or_above"] / frame["pupils"].where(frame["pupils"] != 0)
    )
    return pd.DataFrame(
        {
            "scope": frame["scope"],
            "area_code": frame["area_code"],
            "area_name": frame["area_name"],
            "school_year": frame["school_year"],
            "term": frame["term"],
            "threshold_pct": frame["threshold_pct"],
            "pupils": frame["pupils"].astype("Int64").mask(pupils_withheld),
            "pupils_at_or_above": frame["pupils_at_or_above"].astype("Int64").mask(withheld),
            "share_at_or_above_pct": share.mask(withheld),
            "is_suppressed": pupils_withheld | withheld,
        }
    )


# -- the script -----------------------------------------------------------------------------


def run(
    drop: Path,
    out: Path,
    key: bytes,
    *,
    thresholds_csv: Path,
    municipality_code: str,
    municipality_name: str,
    min_persons: int,
    min_denominator: int,
) -> tuple[dict[str, float], dict[str, int]]:
    """Write the marts to out/<mart>.parquet; return seconds per stage and rejected rows."""
    seconds = dict.fromkeys(["read", "pseudonymise", "clean"], 0.0)
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - clock
        clock = time.perf_counter()

    reference = drop / "reference"
    schools = pd.read_csv(reference / "schools.csv", dtype=str, keep_default_na=False)
    areas = pd.read_csv(reference / "areas.csv", dtype=str, keep_default_na=False)
    calendar = pd.read_csv(reference / "school_calendar.csv", dtype=str, keep_default_na=False)
    schools, areas = schools.apply(lambda c: c.str.strip()), areas.apply(lambda c: c.str.strip())
    calendar = calendar.apply(lambda c: c.str.strip()).replace({"term": {"": None}})
    calendar["date"] = pd.to_datetime(calendar["date"], format="%Y-%m-%d")
    school_codes = sorted(set(schools["school_unit_code"]))
    pseudonyms = Pseudonyms(key)
    # One file at a time: its lessons become pupil-days before the next file is read.
    per_file: list[pd.DataFrame] = []
    rejected: dict[str, int] = {}
    for order, (layout, path) in enumerate(exports(drop)):
        raw = read_export(layout, path)
        lap("read")
        pupils, id_kinds = pseudonyms(raw.pop("personal_id"))
        lap("pseudonymise")
        lessons, counts = clean(raw, layout, pupils, id_kinds, set(school_codes))
        del raw
        per_file.append(file_days(lessons, order, school_codes))
        del lessons
        for reason, count in counts.items():
            rejected[reason] = rejected.get(reason, 0) + count
        lap("clean")
    days = pupil_days(per_file)
    del per_file
    lap("clean")

    days["total"] = days["valid"] + days["invalid"] + days["other"]
    days["month"] = days["date"].dt.to_period("M").dt.to_timestamp()
    days = days.merge(schools[["school_unit_code", "area_code"]], how="left").merge(
        calendar[["date", "school_year", "term"]], how="left"
    )
    persons, denominator = min_persons, min_denominator
    thresholds = pd.read_csv(thresholds_csv)["threshold_pct"].tolist()
    terms = pupil_terms(days, municipality_code)
    marts = {
        "mart_attendance_school_grade_month": school_grade_month(
            days, schools, persons, denominator
        ),
        "mart_attendance_area_term": area_term(terms, areas, persons, denominator),
        "mart_problematic_absence_area_term": problematic(
            terms, areas, thresholds, municipality_name, persons, denominator
        ),
    }
    lap("marts")
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in marts.items():
        frame.to_parquet(out / f"{name}.parquet", index=False)
    lap("write")
    return seconds, rejected


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--drop", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timings", type=Path, help="write seconds per stage here (JSON)")
    parser.add_argument(
        "--thresholds", type=Path, default=root / "dbt_project/seeds/absence_thresholds.csv"
    )
    parser.add_argument("--municipality-code", default="1299")
    parser.add_argument("--municipality-name", default="Ekdala kommun")
    parser.add_argument("--min-persons", type=int, default=5)
    parser.add_argument("--min-denominator", type=int, default=10)
    options = parser.parse_args()
    key = os.environ.get("LAGESBILD_PSEUDONYM_KEY")
    if not key:
        parser.error("set LAGESBILD_PSEUDONYM_KEY (the same key as the pipeline)")
    seconds, rejected = run(
        options.drop,
        options.out,
        key.encode(),
        thresholds_csv=options.thresholds,
        municipality_code=options.municipality_code,
        municipality_name=options.municipality_name,
        min_persons=options.min_persons,
        min_denominator=options.min_denominator,
    )
    print(f"rejected rows: {rejected}")
    if options.timings:
        options.timings.write_text(json.dumps(seconds))
    print(", ".join(f"{k} {v:.2f} s" for k, v in seconds.items()))


if __name__ == "__main__":
    main()
