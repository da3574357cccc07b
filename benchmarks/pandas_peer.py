"""The pandas peer: the attendance marts straight from the raw exports in one pandas script,
the way many municipalities do it today (no orchestration, no landing, no validation suite).

    python benchmarks/pandas_peer.py --drop data/drop --out out/ [--timings timings.json]

It reads the Skola24 CSV (pandas) and IST XLSX (fastexcel → pandas) exports, replaces each
personnummer by HMAC-SHA256(LAGESBILD_PSEUDONYM_KEY, normalised id), drops the rows the
pipeline would quarantine (same rules, same order), keeps the first of repeated lessons, lets
the later file win a pupil-day, aggregates and suppresses small cells like the dbt marts, and
writes the three attendance marts as parquet. Rejected rows are counted per reason, not kept.

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


def pseudonymise(ids: pd.Series, key: bytes) -> tuple[pd.Series, pd.Series]:
    """(pupil_key, kind) per row, computed once per distinct id."""
    today = date.today()
    keys, kinds = {}, {}
    for raw in ids.unique():
        kind, canonical = classify_id(raw, today)
        kinds[raw] = kind
        keys[raw] = (
            hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest() if canonical else None
        )
    return ids.map(keys), ids.map(kinds)


# -- reading --------------------------------------------------------------------------------


def read_exports(drop: Path) -> pd.DataFrame:
    """Every lesson row of every export, as text, in the pipeline's common column names."""
    frames = []
    order = 0
    for path in sorted((drop / "attendance" / "skola24").glob("*.csv")):
        encoding = "utf-8-sig" if path.read_bytes()[:3] == b"\xef\xbb\xbf" else "cp1252"
        raw = pd.read_csv(path, sep=";", encoding=encoding, dtype=str, keep_default_na=False)
        frames.append(
            pd.DataFrame(
                {
                    "file_order": order,
                    "row": np.arange(1, len(raw) + 1),
                    "layout": "skola24",
                    "personal_id": raw["Personnummer"],
                    "school_unit_code": raw["Skolenhetskod"],
                    "grade": raw["Årskurs"],
                    "date": raw["Datum"],
                    "lesson_start": raw["Starttid"],
                    "offered": raw["Lektionslängd (min)"],
                    "absence": raw["Frånvaro (min)"],
                    "absence_type": raw["Frånvarotyp"],
                }
            )
        )
        order += 1
    for path in sorted((drop / "attendance" / "ist").glob("*.xlsx")):
        sheet = fastexcel.read_excel(path).load_sheet_by_name("Närvaro", dtypes="string")
        raw = sheet.to_pandas().fillna("")
        frames.append(
            pd.DataFrame(
                {
                    "file_order": order,
                    "row": np.arange(1, len(raw) + 1),
                    "layout": "ist",
                    "personal_id": raw["Elev-ID"],
                    "school_unit_code": raw["Skolenhet"],
                    "grade": raw["Åk"],
                    "date": raw["Datum"],
                    "lesson_start": raw["Lektion"],
                    "offered": raw["Schemalagd tid"],
                    "attended": raw["Närvarande"],
                    "valid": raw["Giltig frånvaro"],
                    "invalid": raw["Ogiltig frånvaro"],
                    "other": raw["Övrig frånvaro"],
                }
            )
        )
        order += 1
    return pd.concat(frames, ignore_index=True)


# -- cleaning -------------------------------------------------------------------------------


def _strip(column: pd.Series) -> pd.Series:
    return column.fillna("").astype(str).str.strip()


def _number(column: pd.Series) -> pd.Series:
    text = column.str.replace(r"[\s\xa0]", "", regex=True).str.replace(",", ".", n=1, regex=False)
    return pd.to_numeric(text.mask(text == ""), errors="coerce")


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


def clean(rows: pd.DataFrame, schools: set[str]) -> tuple[pd.DataFrame, dict[str, int]]:
    """Clean lesson rows and the count of rejected rows per reason."""
    is_skola24 = rows["layout"] == "skola24"
    raw = {c: _strip(rows[c]) for c in ["school_unit_code", "grade", "date", "lesson_start"]}
    raw["offered"] = _strip(rows["offered"])
    lessons = pd.DataFrame(
        {
            "file_order": rows["file_order"],
            "row": rows["row"],
            "pupil_key": rows["pupil_key"],
            "school_unit_code": raw["school_unit_code"],
            "grade": _grade(raw["grade"]),
            "date": _date(raw["date"], ["%Y-%m-%d", "%Y%m%d"]).where(
                is_skola24, _date(raw["date"], ["%Y%m%d", "%Y-%m-%d"])
            ),
            "lesson_start": _time(raw["lesson_start"]),
            "offered": _number(raw["offered"]),
        }
    )
    # Skola24: one absence amount and its type; IST: minutes per kind.
    absence = _number(_strip(rows["absence"]))
    category = _strip(rows["absence_type"]).map(SKOLA24_TYPES)
    for kind in ("valid", "invalid", "other"):
        from_type = absence.where(category == kind, 0.0)
        lessons[kind] = from_type.where(is_skola24, _number(_strip(rows[kind])))
    lessons["attended"] = (lessons["offered"] - absence).where(
        is_skola24, _number(_strip(rows["attended"]))
    )
    numbers_missing = lessons["offered"].isna() | (
        absence.isna().where(
            is_skola24, lessons[["attended", "valid", "invalid", "other"]].isna().any(axis=1)
        )
    )
    unknown_type = is_skola24 & (
        category.isna() | ((category == "none") & (absence != 0) & absence.notna())
    )
    minutes = lessons[["offered", "attended", "valid", "invalid", "other"]]
    out_of_range = (
        (minutes < 0).any(axis=1)
        | (lessons["offered"] > 24 * 60)
        | (lessons[["valid", "invalid", "other"]].gt(lessons["offered"], axis=0)).any(axis=1)
    )
    total = lessons["attended"] + lessons["valid"] + lessons["invalid"] + lessons["other"]
    not_adding_up = (total - lessons["offered"]).abs() > 0.01
    checks = {
        "missing_personal_id": rows["id_kind"] == "missing",
        "invalid_personal_id": rows["id_kind"] == "invalid",
        "missing_value": pd.concat([c == "" for c in raw.values()], axis=1).any(axis=1),
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
        index=rows.index,
    )
    rejected = reason.value_counts().drop("", errors="ignore").to_dict()
    usable = lessons[reason == ""]
    # Per file: exact repeats are duplicates, other values for the same lesson a conflict.
    values = ["file_order", *LESSON_KEY, "grade", *MINUTES]
    usable = usable[~usable.duplicated(values)]
    conflicts = usable.duplicated(["file_order", *LESSON_KEY])
    rejected["conflicting_duplicate"] = int(conflicts.sum())
    return usable[~conflicts], rejected


def pupil_days(lessons: pd.DataFrame) -> pd.DataFrame:
    """One row per pupil × school unit × day; the later file wins a pupil-day."""
    latest = lessons.groupby(DAY_KEY)["file_order"].transform("max")
    current = lessons[lessons["file_order"] == latest]
    return current.groupby(DAY_KEY, as_index=False).agg(
        grade=("grade", "max"),
        offered=("offered", "sum"),
        valid=("valid", "sum"),
        invalid=("invalid", "sum"),
        other=("other", "sum"),
    )


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
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        seconds[stage] = time.perf_counter() - clock
        clock = time.perf_counter()

    rows = read_exports(drop)
    lap("read")
    rows["pupil_key"], rows["id_kind"] = pseudonymise(_strip(rows.pop("personal_id")), key)
    lap("pseudonymise")
    reference = drop / "reference"
    schools = pd.read_csv(reference / "schools.csv", dtype=str, keep_default_na=False)
    areas = pd.read_csv(reference / "areas.csv", dtype=str, keep_default_na=False)
    calendar = pd.read_csv(reference / "school_calendar.csv", dtype=str, keep_default_na=False)
    schools, areas = schools.apply(lambda c: c.str.strip()), areas.apply(lambda c: c.str.strip())
    calendar = calendar.apply(lambda c: c.str.strip()).replace({"term": {"": None}})
    calendar["date"] = pd.to_datetime(calendar["date"], format="%Y-%m-%d")
    lessons, rejected = clean(rows, set(schools["school_unit_code"]))
    days = pupil_days(lessons)
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
