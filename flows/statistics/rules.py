"""Cleaning rules for statistics releases: each landed release → indicator values.

Grain of the clean `indicator_values`: indicator × area × period × sex × population group ×
release. Every release stays (the history); dbt picks the latest release of each value for the
marts. A value a release repeats unchanged is a *duplicate* of the release before (counted,
not stored twice); a value Kolada withdrew (`isdeleted`) is stored as a deletion
(`is_deleted`, value null), so it leaves the marts and stays in the history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import polars as pl

from connectors.surveys.template import validate
from flows.statistics.catalogue import Catalogue
from lagesbild.settings import today

KEY = ["indicator_id", "area_code", "period", "sex", "population_group"]
VALUES_SCHEMA = {
    "indicator_id": pl.String,
    "source": pl.String,
    "area_code": pl.String,
    "period": pl.Int64,
    "sex": pl.String,  # T total, K women/girls (kvinnor), M men/boys (män)
    "population_group": pl.String,
    "value": pl.Float64,
    "status": pl.String,  # preliminary | final
    "source_status": pl.String,  # the source's own flag, kept as given
    "is_deleted": pl.Boolean,
    "survey": pl.String,
    "respondents": pl.Int64,
    "response_rate_pct": pl.Float64,
    "release_id": pl.String,  # the landing load
    "published_on": pl.Date,  # the source's publication / table update date
    "fetched_at": pl.Datetime("us", "UTC"),
}
POPULATION_SCHEMA = {
    "area_code": pl.String,
    "age": pl.String,  # single year of age, '100+', or the table's total code
    "sex": pl.String,
    "year": pl.Int64,
    "inhabitants": pl.Int64,
    "release_id": pl.String,
    "published_on": pl.Date,
    "fetched_at": pl.Datetime("us", "UTC"),
}


@dataclass
class ReleaseRows:
    """One release split: rows to keep and rows rejected with a reason (original values)."""

    rows: pl.DataFrame
    quarantine: pl.DataFrame
    received: int


def _day(text: str | None) -> date | None:
    return date.fromisoformat(text[:10]) if text else None


def _quarantine(frame: pl.DataFrame, reason: pl.Expr | str) -> pl.DataFrame:
    reason = pl.lit(reason) if isinstance(reason, str) else reason
    return frame.select(pl.all().cast(pl.String), reason=reason)


def kolada_release(
    raw: pl.DataFrame,
    kpi_metadata: dict,
    as_of: date,
    release_id: str,
    fetched_at: datetime,
    cat: Catalogue,
) -> ReleaseRows:
    """Kolada values → indicator values.

    Status comes from the newest KPI metadata (`kpi_metadata`, fetched on `as_of`): a value of
    the period a KPI's coming publication covers (`publ_period`) is preliminary when the KPI
    has a preliminary publication and its final `publication_date` was after `as_of`. It is
    evaluated for every release alike, so a value turns final when Kolada fixes it.
    """
    indicators = {i.kpi: i for i in cat.of("kolada")}
    known = raw.filter(pl.col("kpi").is_in(list(indicators)))
    unknown = raw.filter(~pl.col("kpi").is_in(list(indicators)))
    meta, fetched = kpi_metadata, as_of

    def preliminary(kpi: str, period: int) -> bool:
        m = meta.get(kpi, {})
        final_on = _day(m.get("publication_date"))
        return bool(
            m.get("prel_publication_date")
            and str(period) == str(m.get("publ_period"))
            and (final_on is None or fetched < final_on)
        )

    def published_on(kpi: str, period: int) -> date | None:
        m = meta.get(kpi, {})
        return _day(m.get("prel_publication_date" if preliminary(kpi, period) else
                          "publication_date"))  # fmt: skip

    pairs = known.select("kpi", "period").unique()
    status = pairs.with_columns(
        status=pl.struct("kpi", "period").map_elements(
            lambda r: "preliminary" if preliminary(r["kpi"], r["period"]) else "final",
            return_dtype=pl.String,
        ),
        published_on=pl.struct("kpi", "period").map_elements(
            lambda r: published_on(r["kpi"], r["period"]), return_dtype=pl.Date
        ),
    )
    rows = known.join(status, on=["kpi", "period"], how="left").select(
        indicator_id=pl.col("kpi").replace_strict({k: i.id for k, i in indicators.items()}),
        source=pl.lit("kolada"),
        area_code=pl.col("area"),
        period=pl.col("period").cast(pl.Int64),
        sex=pl.col("gender"),
        population_group=pl.col("kpi").replace_strict({k: i.group for k, i in indicators.items()}),
        value=pl.col("value"),
        status=pl.col("status"),
        source_status=pl.col("source_status"),
        is_deleted=pl.col("is_deleted"),
        survey=pl.lit(None, pl.String),
        respondents=pl.lit(None, pl.Int64),
        response_rate_pct=pl.lit(None, pl.Float64),
        release_id=pl.lit(release_id),
        published_on=pl.col("published_on"),
        fetched_at=pl.lit(fetched_at, pl.Datetime("us", "UTC")),
    )
    return ReleaseRows(rows, _quarantine(unknown, "kpi_not_in_catalogue"), raw.height)


def pxweb_release(
    raw: pl.DataFrame, release: dict, release_id: str, fetched_at: datetime, cat: Catalogue
) -> ReleaseRows:
    """A PxWeb indicator table → indicator values (areas mapped to Kolada-style codes)."""
    indicator = next(i for i in cat.of("pxweb") if i.id == release["indicator"])
    d = indicator.dimensions
    areas = cat.pxweb_areas()
    fixed = cat.fixed_area(indicator)  # a national or county table: one area, no dimension
    typed = raw.with_columns(
        _area=pl.lit(fixed, pl.String)
        if fixed
        else pl.col(d["area"]).replace_strict(areas, default=None),
        _sex=pl.col(d["sex"]).replace_strict(indicator.sex_codes, default=None)
        if "sex" in d
        else pl.lit("T"),  # a table without a sex dimension is for both sexes
        _period=pl.col(d["period"]).cast(pl.Int64, strict=False),
    )
    reason = (
        pl.when(pl.col("_area").is_null())
        .then(pl.lit("area_not_in_catalogue"))
        .when(pl.col("_sex").is_null())
        .then(pl.lit("unknown_sex_code"))
        .when(pl.col("_period").is_null())
        .then(pl.lit("period_not_a_year"))
    )
    typed = typed.with_columns(_reason=reason)
    bad = typed.filter(pl.col("_reason").is_not_null())
    rows = typed.filter(pl.col("_reason").is_null()).select(
        indicator_id=pl.lit(indicator.id),
        source=pl.lit("pxweb"),
        area_code=pl.col("_area"),
        period=pl.col("_period"),
        sex=pl.col("_sex"),
        population_group=pl.lit(indicator.group),
        value=pl.col("value"),
        status=pl.lit("final"),
        source_status=pl.col("status").fill_null(""),
        is_deleted=pl.lit(False),
        survey=pl.lit(None, pl.String),
        respondents=pl.lit(None, pl.Int64),
        response_rate_pct=pl.lit(None, pl.Float64),
        release_id=pl.lit(release_id),
        published_on=pl.lit(_day(release.get("updated")), pl.Date),
        fetched_at=pl.lit(fetched_at, pl.Datetime("us", "UTC")),
    )
    quarantine = _quarantine(bad.drop("_area", "_sex", "_period", "_reason"), bad["_reason"])
    return ReleaseRows(rows, quarantine, raw.height)


def survey_release(
    raw: pl.DataFrame, release_id: str, fetched_at: datetime, cat: Catalogue
) -> ReleaseRows:
    """A survey template file → indicator values (rows failing the template quarantined)."""
    this_year = today(fetched_at).year  # the year in Sweden when the file was landed
    valid, rejected = validate(raw, {i.id for i in cat.of("survey")}, this_year=this_year)
    rows = valid.select(
        indicator_id=pl.col("indicator"),
        source=pl.lit("survey"),
        area_code=pl.col("area_code"),
        period=pl.col("year"),
        sex=pl.col("sex"),
        population_group=pl.col("grade"),
        value=pl.col("value"),
        status=pl.lit("final"),
        source_status=pl.lit(""),
        is_deleted=pl.lit(False),
        survey=pl.col("survey"),
        respondents=pl.col("respondents"),
        response_rate_pct=pl.col("response_rate_pct"),
        release_id=pl.lit(release_id),
        published_on=pl.lit(None, pl.Date),
        fetched_at=pl.lit(fetched_at, pl.Datetime("us", "UTC")),
    )
    return ReleaseRows(rows, _quarantine(rejected.drop("reason"), rejected["reason"]), raw.height)


def population_release(
    raw: pl.DataFrame, release: dict, release_id: str, fetched_at: datetime, cat: Catalogue
) -> ReleaseRows:
    spec = cat.population
    assert spec is not None
    d = spec.dimensions
    typed = raw.with_columns(
        _sex=pl.col(d["sex"]).replace_strict(spec.sex_codes, default=None),
        _year=pl.col(d["period"]).cast(pl.Int64, strict=False),
        _n=pl.col("value").cast(pl.Int64, strict=False),
    )
    reason = (
        pl.when(pl.col("_sex").is_null())
        .then(pl.lit("unknown_sex_code"))
        .when(pl.col("_year").is_null())
        .then(pl.lit("period_not_a_year"))
        .when(pl.col("_n").is_null() | (pl.col("_n") < 0))
        .then(pl.lit("inhabitants_missing_or_negative"))
    )
    typed = typed.with_columns(_reason=reason)
    bad = typed.filter(pl.col("_reason").is_not_null())
    rows = typed.filter(pl.col("_reason").is_null()).select(
        area_code=pl.col(d["area"]),
        age=pl.col(d["age"]),
        sex=pl.col("_sex"),
        year=pl.col("_year"),
        inhabitants=pl.col("_n"),
        release_id=pl.lit(release_id),
        published_on=pl.lit(_day(release.get("updated")), pl.Date),
        fetched_at=pl.lit(fetched_at, pl.Datetime("us", "UTC")),
    )
    quarantine = _quarantine(bad.drop("_sex", "_year", "_n", "_reason"), bad["_reason"])
    return ReleaseRows(rows, quarantine, raw.height)


def history(releases: list[pl.DataFrame], key: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """All releases in order, each value kept once per change.

    Returns (history, duplicates): a row that repeats the value, status and deletion of the
    same key in the release before it (or twice within one release, the last one wins) is a
    duplicate.
    """
    if not releases:
        return pl.DataFrame(), pl.DataFrame()
    frame = pl.concat(releases, how="vertical").with_row_index("_order")
    last = frame.group_by([*key, "release_id"]).agg(pl.col("_order").max())["_order"]
    frame = frame.with_columns(_last=pl.col("_order").is_in(last.to_list()))
    within = frame.filter(~pl.col("_last"))
    frame = frame.filter(pl.col("_last")).sort("release_id", "_order")
    same = ["value", "status", "is_deleted"] if "status" in frame.columns else ["inhabitants"]
    unchanged = (
        pl.all_horizontal([pl.col(c).eq_missing(pl.col(c).shift(1).over(key)) for c in same])
        & pl.col("release_id").shift(1).over(key).is_not_null()
    )
    frame = frame.with_columns(_unchanged=unchanged)
    duplicates = pl.concat(
        [within.drop("_last"), frame.filter(pl.col("_unchanged")).drop("_last", "_unchanged")]
    )
    kept = frame.filter(~pl.col("_unchanged")).drop("_order", "_last", "_unchanged")
    return kept, duplicates.drop("_order")
