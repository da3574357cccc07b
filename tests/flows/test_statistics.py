"""Public statistics end to end: the nightly against the local Kolada and PxWeb servers.

Expected figures come from the demo servers' own data model (`KoladaData.original`,
`population_value`, `alcohol_value`: what the servers answer), combined here with the rules
the marts document, never from the pipeline's output.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import duckdb
import polars as pl
import pytest

from demo import kolada_server, pxweb_server
from demo.kolada_server import KoladaData
from demo.pxweb_server import AGES, alcohol_value, population_value
from demo.servers import serve
from flows.layers.audit import read_audit
from flows.layers.landing import landed_loads
from flows.nightly import nightly
from lagesbild.settings import Settings
from tests.flows.conftest import copy_baseline, pipeline_at

# `make test-scenarios`: Kolada, PxWeb and surveys over several runs
pytestmark = pytest.mark.scenario

OWN, COUNTY, COUNTRY = "1299", "0012", "0000"
COMPARISON = ["1261", "1263", "1264", "1267", "1273"]
AREAS = [OWN, COUNTY, COUNTRY, *COMPARISON]
KPI_OF = {
    "vandalism_reported": "U07452",
    "youth_mental_ill_health": "N33820",
    "grade9_all_subjects_passed": "N15419",
    "grade8_safe_in_school": "N15643",
    "youth_neet": "N02797",
    "upper_secondary_truancy": "N17625",
    "sports_club_participation": "U09802",
}
HIGHER_IS_BETTER = {"grade9_all_subjects_passed", "grade8_safe_in_school",
                    "sports_club_participation"}  # fmt: skip
YEARS = range(2019, 2026)
SURVEY = """survey,year,area_code,grade,sex,indicator,value_pct,respondents,response_rate_pct
CAN,2024,1299,åk 9,T,alcohol_last_month_y9,21.5,212,71
CAN,2024,1299,åk 9,K,alcohol_last_month_y9,23,104,71
CAN,2024,1299,åk 9,M,alcohol_last_month_y9,19.9,8,71
CAN,2024,0012,åk 9,T,alcohol_last_month_y9,24.0,5120,68
CAN,2024,1299C0010,åk 9,T,alcohol_last_month_y9,"30,5",41,44
CAN,2022,1299,åk 9,T,alcohol_last_month_y9,25.0,198,75
CAN,2024,1299,åk 9,X,alcohol_last_month_y9,20.0,100,71
LUPP,2024,1299,åk 9,T,no_such_indicator,20.0,100,71
"""


def close(published: float | None, exact: float | None) -> bool:
    """Equal to the published two decimals (DuckDB rounds half away from zero)."""
    if published is None or exact is None:
        return published is exact
    return abs(float(published) - exact) <= 0.005 + 1e-9  # DECIMAL or DOUBLE


def published(paths) -> dict[str, pl.DataFrame]:
    con = duckdb.connect(str(paths.marts_db), read_only=True)
    try:
        return {
            name: con.sql(f"select * from marts.{name}").pl()
            for name in ("mart_indicator_values", "mart_indicator_releases", "dim_indicator")
        }
    finally:
        con.close()


@pytest.fixture(scope="module")
def servers():
    kolada = kolada_server.KoladaState()
    pxweb = pxweb_server.PxWebState(max_cells=2000)  # the population table needs 3 requests
    with (
        serve(kolada_server.create_app(kolada)) as kolada_url,
        serve(pxweb_server.create_app(pxweb)) as pxweb_url,
    ):
        yield {"kolada": kolada, "pxweb": pxweb, "kolada_url": kolada_url, "pxweb_url": pxweb_url}


@pytest.fixture(scope="module")
def stats_env(baseline, servers, tmp_path_factory):
    """A copy of the baseline run (exports landed and published) that now switches the public
    statistics on and gets a survey file: the first run below lands only these."""
    copy = copy_baseline(baseline, tmp_path_factory.mktemp("stats"))
    data, drop = copy["data"], copy["drop"]
    (drop / "surveys").mkdir()
    (drop / "surveys" / "can_2024.csv").write_text(SURVEY, encoding="utf-8")
    with pipeline_at(
        data,
        drop,
        statistics__enabled="true",
        statistics__kolada_url=f"{servers['kolada_url']}/v3",
        statistics__scb_url=f"{servers['pxweb_url']}/api/v2",
        statistics__fohm_url=f"{servers['pxweb_url']}/Folkhalsodata/api/v1/sv",
        statistics__pxweb_calls="20",
        statistics__pxweb_seconds="1",
        statistics__kolada_calls="50",
        statistics__attempts="3",
        statistics__backoff="0.05",
    ):
        yield data


@pytest.fixture(scope="module")
def first_run(stats_env):
    state = nightly(return_state=True)
    assert state.is_completed(), state.message
    return Settings().paths


def _expected_kolada(data: KoladaData) -> pl.DataFrame:
    rows = []
    for indicator, kpi in KPI_OF.items():
        for year in YEARS:
            for sex in data.genders(kpi):
                values = {a: data.value(kpi, a, year, sex) for a in AREAS}
                own, own_deleted = values[OWN]
                if own_deleted:
                    continue
                members = [v for a in COMPARISON for v, gone in [values[a]] if not gone
                           and v is not None]  # fmt: skip
                rows.append({
                    "indicator_id": indicator, "period": year, "sex": sex, "value_exp": own,
                    "county_exp": values[COUNTY][0], "national_exp": values[COUNTRY][0],
                    "group_exp": sum(members) / len(members) if members else None,
                    "members_exp": len(members),
                })  # fmt: skip
    frame = pl.DataFrame(rows).sort("indicator_id", "sex", "period")
    previous = pl.col("value_exp").shift(1).over("indicator_id", "sex")
    return frame.with_columns(previous_exp=previous)


def _trend(row) -> str | None:
    if row["value_exp"] is None or row["previous_exp"] is None:
        return None
    if row["value_exp"] == row["previous_exp"]:
        return "unchanged"
    better = (row["value_exp"] > row["previous_exp"]) == (row["indicator_id"] in HIGHER_IS_BETTER)
    return "better" if better else "worse"


def assert_kolada_rows(mart: pl.DataFrame, data: KoladaData) -> None:
    expected = _expected_kolada(data)
    actual = mart.filter(pl.col("source") == "kolada")
    assert actual.height == expected.height
    assert set(actual["area_code"]) == {OWN}
    joined = expected.join(actual, on=["indicator_id", "period", "sex"], how="left")
    for row in joined.iter_rows(named=True):
        assert row["value"] == row["value_exp"], row
        assert row["county_value"] == row["county_exp"], row
        assert row["national_value"] == row["national_exp"], row
        assert close(row["comparison_group_value"], row["group_exp"]), row
        assert row["comparison_group_members"] == row["members_exp"], row
        assert row["previous_value"] == row["previous_exp"], row
        assert row["trend"] == _trend(row), row
        preliminary = KPI_OF[row["indicator_id"]] in ("U07452", "N02797") and row["period"] == 2025
        assert row["status"] == ("preliminary" if preliminary else "final"), row
        assert row["is_suppressed"] is False


def test_kolada_values_with_comparisons_and_trend(first_run, servers):
    mart = published(first_run)["mart_indicator_values"]
    assert_kolada_rows(mart, servers["kolada"].data)
    # The demo has some null values (Kolada's missing/secret): kept as null, never dropped.
    assert mart.filter((pl.col("source") == "kolada") & pl.col("value").is_null()).height > 0


def test_pxweb_indicator_from_the_v1_table(first_run):
    mart = published(first_run)["mart_indicator_values"]
    rows = mart.filter(pl.col("indicator_id") == "risky_alcohol_16_29")
    assert rows.height == 3 * 4  # T/K/M × 2021-2024
    code = {"T": "3", "K": "2", "M": "1"}
    for row in rows.iter_rows(named=True):
        year, sex = str(row["period"]), code[row["sex"]]
        assert row["value"] == alcohol_value("1299", sex, "16-29", year, "Andel")
        assert row["county_value"] == alcohol_value("12", sex, "16-29", year, "Andel")
        assert row["national_value"] == alcohol_value("00", sex, "16-29", year, "Andel")
        members = [alcohol_value(c, sex, "16-29", year, "Andel") for c in COMPARISON]
        members = [m for m in members if m is not None]  # 1264 has no value for 2021
        assert row["comparison_group_members"] == len(members)
        assert close(row["comparison_group_value"], sum(members) / len(members))


def test_survey_values_suppressed_and_bad_rows_quarantined(first_run):
    mart = published(first_run)["mart_indicator_values"]
    survey = mart.filter(pl.col("source") == "survey").sort("area_code", "period", "sex")
    got = {
        (r["area_code"], r["period"], r["sex"]): (
            r["value"],
            r["respondents"],
            r["is_suppressed"],
            r["suppression_reason"],
            r["value_status"],
        )
        for r in survey.iter_rows(named=True)
    }
    assert got == {
        ("1299", 2022, "T"): (25.0, 198, False, None, "ok"),
        ("1299", 2024, "T"): (21.5, 212, False, None, "ok"),
        ("1299", 2024, "K"): (None, 104, True, "secondary", "withheld"),  # T, K would reveal M
        ("1299", 2024, "M"): (None, 8, True, "few_respondents", "withheld"),  # 8 < 10
        ("1299C0010", 2024, "T"): (None, 41, True, "low_response_rate", "withheld"),  # 44 %
    }
    names = dict(zip(survey["area_code"], survey["area_name"], strict=True))
    assert names == {"1299": "Ekdala kommun", "1299C0010": "Centrum"}  # reference areas
    own_2024 = survey.filter((pl.col("area_code") == "1299") & (pl.col("period") == 2024))
    county = dict(zip(own_2024["sex"], own_2024["county_value"], strict=True))
    assert county == {"T": 24.0, "K": None, "M": None}  # the county's survey row is T only
    trend = survey.filter((pl.col("area_code") == "1299") & (pl.col("sex") == "T"))
    assert trend.sort("period")["trend"].to_list() == [None, "better"]  # 25.0 → 21.5, lower

    audit = read_audit(first_run.audit).filter(pl.col("source") == "survey")
    assert audit.select("rows_received", "rows_clean", "rows_quarantined").row(0) == (8, 6, 2)
    quarantine = pl.read_parquet(first_run.quarantine / "indicator_values" / "**" / "*.parquet")
    assert sorted(quarantine["reason"]) == ["bad_sex", "unknown_indicator"]


def test_every_load_accounted(first_run, servers):
    audit = read_audit(first_run.audit).filter(pl.col("source").is_in(["kolada", "pxweb"]))
    data = servers["kolada"].data
    kolada_values = sum(len(data.genders(k)) * len(AREAS) * len(YEARS) for k in KPI_OF.values())
    rows = {r["dataset"]: r for r in audit.iter_rows(named=True)}
    assert rows["kpi_values"]["rows_received"] == kolada_values
    assert rows["risky_alcohol_16_29"]["rows_received"] == 8 * 3 * 4  # regions × sexes × years
    assert rows["population"]["rows_received"] == 9 * 101 * 2 * 3 + 9 * 2 * 3  # ages + tot
    for row in audit.iter_rows(named=True):
        assert row["rows_received"] == (
            row["rows_clean"] + row["rows_quarantined"] + row["rows_duplicate"]
        )
        assert row["status"] == "cleaned"


def test_population_denominators(first_run):
    con = duckdb.connect(str(first_run.work_db), read_only=True)
    try:
        actual = con.sql("select * from intermediate.int_population_area_year").pl()
    finally:
        con.close()
    areas = [code for code, _ in pxweb_server.AREAS]
    assert actual.height == (len(areas) + 1) * 3
    for row in actual.iter_rows(named=True):
        area, year = row["area_code"], str(row["year"])

        def people(ages, area=area, year=year):
            return sum(population_value(area, a, s, year) for a in ages for s in ("1", "2"))

        assert row["inhabitants"] == people(["tot"]), row
        assert row["inhabitants_0_19"] == people([str(a) for a in range(20)])
        assert row["inhabitants_13_19"] == people([str(a) for a in range(13, 20)])
        assert row["inhabitants_16_24"] == people([str(a) for a in range(16, 25)])
        assert row["municipality_inhabitants"] == sum(
            population_value("1299", "tot", s, year) for s in ("1", "2")
        )
        assert row["area_level"] == ("municipality" if area == "1299" else "area")
    assert len(AGES) == 101


def test_area_profile_joins_every_source_exactly(first_run, municipality):
    """mart_area_profile against the sources: the PxWeb server's population, the vandalism
    mart, the survey values and attendance recomputed from the generator's truth."""
    from tests.flows.test_nightly import ABSENCES, truth_days

    con = duckdb.connect(str(first_run.marts_db), read_only=True)
    try:
        profile = con.sql("select * from mart_area_profile").pl()
        vandalism = con.sql("select * from mart_vandalism_area_year where scope = 'area'").pl()
        values = con.sql(
            "select * from mart_indicator_values where area_level = 'area' and sex = 'T'"
        ).pl()
    finally:
        con.close()
    assert profile.select("area_code", "year").is_duplicated().sum() == 0
    # Attendance per area over school year 2025/26 (counted for 2026), from the truth.
    pupils = (
        truth_days(municipality)
        .group_by("pupil_id", "area_code", "school_year")
        .agg(pl.col("offered_minutes", *ABSENCES).sum())
        .with_columns(absence=pl.sum_horizontal(ABSENCES))
    )
    attendance = {
        row["area_code"]: row
        for row in pupils.group_by("area_code")
        .agg(
            pupils=pl.len(),
            absence=pl.col("absence").sum(),
            offered=pl.col("offered_minutes").sum(),
            at_15=(100 * pl.col("absence") >= 15 * pl.col("offered_minutes")).sum(),
        )
        .iter_rows(named=True)
    }
    checked = {"population": 0, "vandalism": 0, "survey": 0, "attendance": 0}
    for row in profile.iter_rows(named=True):
        area, year = row["area_code"], row["year"]
        if 2022 <= year <= 2024:  # the years the demo PxWeb server publishes
            assert row["inhabitants"] == sum(
                population_value(area, "tot", s, str(year)) for s in ("1", "2")
            ), row
            checked["population"] += 1
        else:
            assert row["inhabitants"] is None, row
        match = vandalism.filter((pl.col("area_code") == area) & (pl.col("year") == year))
        if match.height:
            source = match.row(0, named=True)
            for column in ("vandalism_orders", "vandalism_cost_sek", "cost_per_apartment_sek"):
                assert row[column] == source[column], (column, row)
            if source["vandalism_cost_sek"] is not None and row["inhabitants"]:
                per_1000 = 1000 * float(source["vandalism_cost_sek"]) / row["inhabitants"]
                assert close(row["cost_per_1000_inhabitants_sek"], per_1000), row
                checked["vandalism"] += 1
        survey = values.filter(
            (pl.col("area_code") == area)
            & (pl.col("period") == year)
            & (pl.col("indicator_id") == "alcohol_last_month_y9")
        )
        expected = survey["value"][0] if survey.height else None
        assert row["alcohol_last_month_y9"] == expected, row
        checked["survey"] += survey.height
        truth = attendance.get(area) if year == 2026 else None
        if truth is None:
            assert row["school_absence_pct"] is None, row
            assert row["school_absence_pct_status"] == "missing", row
            continue
        small = truth["pupils"] < 10
        assert row["school_absence_pct_status"] == ("withheld" if small else "ok"), row
        assert close(
            row["school_absence_pct"], None if small else 100 * truth["absence"] / truth["offered"]
        )
        few = small or truth["at_15"] < 5
        share = None if few else 100 * truth["at_15"] / truth["pupils"]
        assert close(row["problematic_absence_15_pct"], share), row
        assert row["problematic_absence_15_pct_status"] == ("withheld" if few else "ok"), row
        assert row["is_school_year_in_progress"] is True
        checked["attendance"] += 1
    # Every source really took part (the survey file has one area value, 1299C0010).
    assert checked["population"] >= 8 * 3 and checked["attendance"] == len(attendance)
    assert checked["vandalism"] > 0 and checked["survey"] == 1, checked


def test_second_run_fetches_increments_revisions_and_deletions(first_run, servers):
    kolada, pxweb = servers["kolada"], servers["pxweb"]
    today = date.today()
    kolada.data.revise("U07452", OWN, 2024, "T", 812.5, today)
    kolada.data.delete("N33820", "1264", 2023, today)
    pxweb.touch(pxweb_server.POPULATION, datetime(2025, 3, 14, 7, 0))
    kolada.log.clear()
    pxweb.log.clear()
    first = [x.manifest for x in landed_loads(first_run.landing, "kolada")]
    first_fetch = max(date.fromisoformat(m.extracted_at[:10]) for m in first)

    state = nightly(return_state=True)
    assert state.is_completed(), state.message

    data_calls = [q for _, path, q in kolada.log.calls if path.startswith("GET /v3/data/")]
    since = (first_fetch - timedelta(days=1)).isoformat()  # the last fetch's day, a day's overlap
    assert data_calls and all(q.get("from_date") == since for q in data_calls)
    loads = [x.manifest for x in landed_loads(first_run.landing, "kolada")]
    assert len(loads) == 2
    assert loads[1].rows == 1 + 3  # the revised value; the deleted row's K, M and T
    assert loads[1].release["from_date"] == since
    posted = [p for _, p, _ in pxweb.log.calls if p.startswith("POST")]
    assert not any(p.endswith("hlv1alkoxreg.px") for p in posted)  # `updated` unchanged
    assert posted.count("POST /api/v2/tables/TAB6574/data") == 3  # new version, in 3 parts

    marts = published(first_run)
    mart = marts["mart_indicator_values"]
    assert_kolada_rows(mart, kolada.data)  # revised value, and 1264 2023 gone from the group
    revised = mart.filter(
        (pl.col("indicator_id") == "vandalism_reported") & (pl.col("period") == 2024)
    ).row(0, named=True)
    assert revised["value"] == 812.5 and revised["is_revised"] is True
    history = (
        marts["mart_indicator_releases"]
        .filter(
            (pl.col("indicator_id") == "vandalism_reported")
            & (pl.col("area_code") == OWN)
            & (pl.col("period") == 2024)
        )
        .sort("release_id")
    )
    original = kolada.data.original("U07452", OWN, 2024, "T")
    assert history["value"].to_list() == [original, 812.5]
    assert history["is_latest_release"].to_list() == [False, True]
    withdrawn = marts["mart_indicator_releases"].filter(
        (pl.col("area_code") == "1264") & (pl.col("period") == 2023) & pl.col("is_deleted")
    )
    assert withdrawn.height == 3

    audit = read_audit(first_run.audit).filter(pl.col("source") == "kolada").sort("load_id")
    assert audit.select("rows_received", "rows_clean", "rows_duplicate").row(-1) == (4, 4, 0)


def test_a_source_that_keeps_failing_leaves_the_marts_as_they_were(first_run, servers):
    before = published(first_run)
    served_bytes = first_run.marts_db.read_bytes()
    servers["kolada"].faults.add("503", times=None)
    try:
        state = nightly(return_state=True)
    finally:
        servers["kolada"].faults.clear()
    assert state.is_failed()
    assert "Kolada" in str(state.message) or "503" in str(state.message)
    assert first_run.marts_db.read_bytes() == served_bytes
    after = published(first_run)
    for name, frame in before.items():
        assert after[name].sort(pl.all()).equals(frame.sort(pl.all())), name
    summaries = sorted(first_run.runs.glob("*.md"))
    assert "Kolada" in summaries[-1].read_text(encoding="utf-8")


# -- SCB's population table as it is published: 5-year age bands and `totalt` ---------------


@pytest.fixture(scope="module")
def banded_run(municipality, tmp_path_factory):
    """TAB6574 with the age codes of the real table (totalt, 0-4, …, 80-); the catalogue
    names `totalt` as a total code, and dbt reads the bands by their form."""
    from flows.statistics.catalogue import PROJECT_CATALOGUE

    pxweb = pxweb_server.PxWebState(max_cells=2000, tables=pxweb_server._tables(age_bands=True))
    kolada = kolada_server.KoladaState()
    data = tmp_path_factory.mktemp("banded-data")
    catalogue = data.parent / f"{data.name}-indicators.yml"
    text = PROJECT_CATALOGUE.read_text(encoding="utf-8")
    catalogue.write_text(text.replace("total_age: tot ", "total_age: [tot, totalt] "), "utf-8")
    assert catalogue.read_text(encoding="utf-8") != text
    with (
        serve(kolada_server.create_app(kolada)) as kolada_url,
        serve(pxweb_server.create_app(pxweb)) as pxweb_url,
        pipeline_at(
            data,
            municipality["drop"],
            statistics__enabled="true",
            statistics__catalogue=str(catalogue),
            statistics__kolada_url=f"{kolada_url}/v3",
            statistics__scb_url=f"{pxweb_url}/api/v2",
            statistics__fohm_url=f"{pxweb_url}/Folkhalsodata/api/v1/sv",
            statistics__pxweb_calls="20",
            statistics__pxweb_seconds="1",
            statistics__kolada_calls="50",
        ),
    ):
        state = nightly(return_state=True)
        assert state.is_completed(), state.message
        yield Settings().paths


def test_population_in_age_bands_gives_denominators(banded_run):
    con = duckdb.connect(str(banded_run.work_db), read_only=True)
    try:
        actual = con.sql("select * from intermediate.int_population_area_year").pl()
    finally:
        con.close()
    assert actual.height == (len(pxweb_server.AREAS) + 1) * 3
    shares = {  # band → its share of each range (years inside / years of the band)
        "0_19": {"0-4": 1, "5-9": 1, "10-14": 1, "15-19": 1},
        "13_19": {"10-14": 2 / 5, "15-19": 1},
        "16_24": {"15-19": 4 / 5, "20-24": 1},
    }
    for row in actual.iter_rows(named=True):
        area, year = row["area_code"], str(row["year"])
        assert row["inhabitants"] == sum(
            population_value(area, "totalt", s, year) for s in ("1", "2")
        )
        for name, bands in shares.items():
            exact = sum(
                population_value(area, band, s, year) * share
                for band, share in bands.items()
                for s in ("1", "2")
            )
            assert row[f"inhabitants_{name}"] is not None
            assert abs(float(row[f"inhabitants_{name}"]) - exact) <= 0.5, (name, row)
