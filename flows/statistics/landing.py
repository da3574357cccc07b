"""Public statistics and survey tables → landing: Kolada, PxWeb (SCB, Folkhälsomyndigheten)
and survey files from the drop folder.

`land_statistics` lands every fetched release immutably (`landing/<source>/<dataset>/
period=<first year>/load_id=…/`), with what the source said about it in the manifest's
`release` (Kolada KPI publication dates, PxWeb table `updated`, the request). Fetches are
incremental: Kolada asks only for values updated since the last fetch (`from_date`; a KPI or
municipality new to the catalogue gets its whole history), a PxWeb table is skipped while its
`updated` is unchanged, a survey file is landed once (sha256). Cleaning is
`flows.statistics.dataset`.
"""

from __future__ import annotations

import hashlib
import logging
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta

import polars as pl

from connectors.kolada.client import KoladaClient
from connectors.pxweb.client import PxWebClient
from connectors.surveys.template import read_survey_file
from flows.layers.files import write_parquet_atomic
from flows.layers.landing import land, land_request, landed_loads, new_load_id
from flows.layers.manifest import Manifest
from flows.statistics.catalogue import Catalogue, contents_selection, load_catalogue
from lagesbild.settings import Settings, today

CLEAN_DIR = "statistics"  # clean/statistics/<table>.parquet
SURVEY_DIR = "surveys"  # <drop>/surveys/*.csv|xlsx
KPI_METADATA_FIELDS = ("title", "prel_publication_date", "publication_date", "publ_period")

log = logging.getLogger(__name__)


def catalogue_of(settings: Settings) -> Catalogue:
    return load_catalogue(settings.statistics.catalogue, settings.municipality.code)


def write_catalogue_tables(settings: Settings, catalogue: Catalogue) -> None:
    """The catalogue as clean reference tables (indicators, the municipalities' roles)."""
    target = settings.paths.clean / CLEAN_DIR
    write_parquet_atomic(catalogue.indicator_table(), target / "indicators.parquet")
    write_parquet_atomic(catalogue.roles(), target / "municipality_roles.parquet")
    ages = (
        catalogue.population.ages()
        if catalogue.population is not None
        else pl.DataFrame(schema={"age": pl.String, "is_total": pl.Boolean})
    )
    write_parquet_atomic(ages, target / "population_ages.parquet")


def _sha(rows: pl.DataFrame) -> str:
    return hashlib.sha256(rows.write_csv().encode()).hexdigest()


def _land(settings, source, dataset, rows, request, periods, release, now) -> Manifest:
    """Land a release; `request` describes what was asked, in words."""
    return land_request(
        settings.paths.landing,
        source,
        dataset,
        rows,
        _sha(rows),
        {"described": request},
        [str(p) for p in periods],
        "year",
        now,
        release=release,
    )


# -- landing -----------------------------------------------------------------------------------


def land_statistics(settings: Settings) -> list[Manifest]:
    catalogue = catalogue_of(settings)
    write_catalogue_tables(settings, catalogue)
    manifests = _land_surveys(settings)
    if not settings.statistics.enabled:
        log.info("statistics: Kolada and PxWeb are off (setting statistics.enabled)")
        return manifests
    manifests += _land_kolada(settings, catalogue)
    manifests += _land_pxweb(settings, catalogue)
    return manifests


def _land_kolada(settings: Settings, catalogue: Catalogue) -> list[Manifest]:
    s = settings.statistics
    kpis = [i.kpi for i in catalogue.of("kolada") if i.kpi]
    if not kpis:
        return []
    areas = catalogue.kolada_areas
    previous = [load.manifest for load in landed_loads(settings.paths.landing, "kolada")]
    fetched_before = {k for m in previous if m.release.get("areas") == areas
                      for k in m.release.get("kpis", [])}  # fmt: skip
    last_fetch = max((date.fromisoformat(m.extracted_at[:10]) for m in previous), default=None)
    # A day of overlap: values updated later on the day of the last fetch are not missed
    # whether Kolada's from_date is inclusive or not; repeats count as duplicates.
    since = last_fetch - timedelta(days=1) if last_fetch else None
    years = list(range(catalogue.first_year, today().year + 1))
    now = datetime.now(UTC)
    with KoladaClient(s) as client:
        metadata = {m["id"]: m for m in client.kpis(kpis)}
        new = [k for k in kpis if k not in fetched_before]
        known = [k for k in kpis if k in fetched_before]
        values = list(client.data(new, areas, years)) if new else []
        if known:
            values += client.data(known, areas, years, from_date=since)
    rows = pl.DataFrame(
        [
            {
                "kpi": v.kpi,
                "area": v.area,
                "period": v.period,
                "gender": v.gender,
                "value": v.value,
                "source_status": v.status,
                "count": v.count,
                "is_deleted": v.is_deleted,
            }
            for v in values
        ],
        schema={
            "kpi": pl.String,
            "area": pl.String,
            "period": pl.Int64,
            "gender": pl.String,
            "value": pl.Float64,
            "source_status": pl.String,
            "count": pl.Int64,
            "is_deleted": pl.Boolean,
        },
    )
    kpi_metadata = {k: {f: m.get(f) for f in KPI_METADATA_FIELDS} for k, m in metadata.items()}
    same_dates = bool(previous) and previous[-1].release.get("kpi_metadata") == kpi_metadata
    if same_dates and (rows.is_empty() or _sha(rows) in {m.sha256 for m in previous}):
        log.info("kolada: no values or publication dates changed since %s (already landed)", since)
        return []
    fetched = [f"whole history of {len(new)} KPIs"] if new else []
    fetched += [f"{len(known)} KPIs updated since {since}"] if known else []
    request = (
        f"GET {s.kolada_url}/data/kpi/…/municipality/…/year/… ({len(areas)} municipalities, "
        f"{years[0]}-{years[-1]}: {'; '.join(fetched)})"
    )
    release = {
        "kpis": kpis,
        "areas": areas,
        "from_date": since.isoformat() if since and known else None,
        "full_history_kpis": new,
        "kpi_metadata": kpi_metadata,
    }
    periods = sorted(rows["period"].unique().to_list())
    manifest = _land(settings, "kolada", "kpi_values", rows, request, periods, release, now)
    log.info(
        f"landed kolada: {rows.height:,} values (periods {', '.join(map(str, periods))})"
        if rows.height
        else "landed kolada: no values changed, KPI publication dates did (statuses follow)"
    )
    return [manifest]


def _land_pxweb(settings: Settings, catalogue: Catalogue) -> list[Manifest]:
    jobs = []  # (dataset, api, table, selection from the table's variables, period variable)
    for indicator in catalogue.of("pxweb"):
        d = indicator.dimensions
        wanted = list(catalogue.pxweb_areas())

        def select(variables, indicator=indicator, d=d, wanted=wanted):
            chosen = {}  # national/county tables have no area (or sex) variable to choose
            if "area" in d:
                chosen[d["area"]] = [c for c in variables[d["area"]] if c in wanted]
            if "sex" in d:
                chosen[d["sex"]] = [c for c in variables[d["sex"]] if c in indicator.sex_codes]
            return {
                **chosen,
                d["period"]: ["*"],
                **contents_selection(variables, indicator.contents),
                **indicator.selection,
            }

        jobs.append((indicator.id, indicator.api, indicator.table, select, d["period"]))
    if catalogue.population is not None:
        p = catalogue.population
        own = catalogue.own

        def select_population(variables, p=p, own=own):
            d = p.dimensions
            return {
                d["area"]: [c for c in variables[d["area"]] if c.startswith(own)],
                d["age"]: ["*"],
                d["sex"]: list(p.sex_codes),
                **contents_selection(variables, p.contents),
                d["period"]: ["*"],
            }

        jobs.append(("population", p.api, p.table, select_population, p.dimensions["period"]))

    previous = {load.manifest.dataset: load.manifest
                for load in landed_loads(settings.paths.landing, "pxweb")}  # fmt: skip
    manifests = []
    clients: dict[str, PxWebClient] = {}  # one per API: its rate limit covers every table
    with ExitStack() as stack:
        for dataset, api, table, select, period_variable in jobs:
            if api not in clients:
                clients[api] = stack.enter_context(PxWebClient(settings.statistics, api))
            info = clients[api].table(table)
            selection = select(info.variables)
            last = previous.get(dataset)
            if (
                last
                and last.release.get("updated") == info.updated
                and last.release.get("selection") == selection
            ):
                log.info("pxweb %s: unchanged since %s, not fetched", table, info.updated)
                continue
            now = datetime.now(UTC)
            data = clients[api].fetch(table, selection, info=info)
            manifests.append(_land_table(settings, dataset, api, table, info, selection, data,
                                         period_variable, now))  # fmt: skip
            log.info("landed pxweb %s: %s cells, updated %s", table, f"{data.frame.height:,}",
                     info.updated)  # fmt: skip
    return manifests


def _land_table(settings, dataset, api, table, info, selection, data, period_variable, now):
    rows = data.frame
    release = {
        "api": api,
        "table": table,
        "label": data.label or info.label,
        "updated": info.updated,
        "selection": selection,
        "indicator": None if dataset == "population" else dataset,
    }
    periods = sorted(rows[period_variable].unique().to_list())
    request = f"POST {table} (json-stat2)"
    return _land(settings, "pxweb", dataset, rows, request, periods, release, now)


def _land_surveys(settings: Settings) -> list[Manifest]:
    folder = settings.paths.drop / SURVEY_DIR
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".csv", ".xlsx"))
    landed = {load.manifest.sha256 for load in landed_loads(settings.paths.landing, "survey")}
    manifests = []
    for path in files:
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        if sha in landed:
            continue
        rows = read_survey_file(path)
        now = datetime.now(UTC)
        years = sorted({y for y in rows["year"].to_list() if y})
        manifest = Manifest(
            source="survey",
            dataset="survey_results",
            load_id=new_load_id(sha, now),
            partition_kind="year",
            partitions=[str(y) for y in years],
            file=path.relative_to(settings.paths.drop).as_posix(),
            sha256=sha,
            rows=rows.height,
            extracted_at=now.isoformat(timespec="seconds"),
            columns=rows.columns,
        )
        land(settings.paths.landing, manifest, rows)
        landed.add(sha)
        manifests.append(manifest)
        log.info("landed %s: %d survey rows", manifest.file, rows.height)
    return manifests
