"""Public statistics and survey tables through the layers: fetch → landing → clean → gate → audit.

`land_statistics` lands every fetched release immutably (`landing/<source>/<dataset>/
period=<fetch day>/load_id=…/`), with what the source said about it in the manifest's
`release` (Kolada KPI publication dates, PxWeb table `updated`, the request). Fetches are
incremental: Kolada asks only for values updated since the last fetch (`from_date`; a KPI or
municipality new to the catalogue gets its whole history), a PxWeb table is skipped while its
`updated` is unchanged, a survey file is landed once (sha256).

`clean_statistics` rebuilds the clean statistics from every landed release (they are small:
thousands of rows), gates the frames, and only then replaces the files in `clean/statistics/`
and writes quarantine and audit rows for the loads not yet accounted. Statistics are one
dataset each, not partitioned by period: a release revises any period.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from connectors.kolada.client import KoladaClient
from connectors.pxweb.client import PxWebClient
from connectors.surveys.template import read_survey_file
from flows import gate
from flows.catalogue import PXWEB_APIS, Catalogue, load_catalogue
from flows.clean_statistics import (
    KEY,
    POPULATION_SCHEMA,
    VALUES_SCHEMA,
    ReleaseRows,
    history,
    kolada_release,
    population_release,
    pxweb_release,
    survey_release,
)
from flows.storage import (
    DATA_FILE,
    CleanOutcome,
    Manifest,
    append_audit,
    land,
    landed_loads,
    new_load_id,
    read_audit,
    write_parquet_atomic,
)
from lagesbild.settings import Settings

SOURCES = ("kolada", "pxweb", "survey")
CLEAN_DIR = "statistics"  # clean/statistics/<dataset>.parquet
SURVEY_DIR = "surveys"  # <drop>/surveys/*.csv|xlsx
KPI_METADATA_FIELDS = ("title", "prel_publication_date", "publication_date", "publ_period")
Log = Callable[[str], None]


def catalogue_of(settings: Settings) -> Catalogue:
    return load_catalogue(settings.statistics.catalogue, settings.municipality.code)


def _sha(rows: pl.DataFrame) -> str:
    return hashlib.sha256(rows.write_csv().encode()).hexdigest()


def _manifest(source, dataset, rows, request, periods, release, now) -> Manifest:
    sha = _sha(rows)
    return Manifest(
        source=source,
        dataset=dataset,
        load_id=new_load_id(sha, now),
        period=now.date().isoformat(),
        periods=[str(p) for p in periods],
        file=request,
        sha256=sha,
        rows=rows.height,
        extracted_at=now.isoformat(timespec="seconds"),
        columns=rows.columns,
        release=release,
    )


# -- landing -----------------------------------------------------------------------------------


def land_statistics(settings: Settings, log: Log) -> list[Manifest]:
    catalogue = catalogue_of(settings)
    manifests = _land_surveys(settings, catalogue, log)
    if not settings.statistics.enabled:
        log("statistics: Kolada and PxWeb are off (setting statistics.enabled)")
        return manifests
    manifests += _land_kolada(settings, catalogue, log)
    manifests += _land_pxweb(settings, catalogue, log)
    return manifests


def _land_kolada(settings: Settings, catalogue: Catalogue, log: Log) -> list[Manifest]:
    s = settings.statistics
    kpis = [i.kpi for i in catalogue.of("kolada") if i.kpi]
    if not kpis:
        return []
    areas = catalogue.kolada_areas
    previous = [m for m, _ in landed_loads(settings.paths.landing, "kolada")]
    fetched_before = {k for m in previous if m.release.get("areas") == areas
                      for k in m.release.get("kpis", [])}  # fmt: skip
    last_fetch = max((date.fromisoformat(m.extracted_at[:10]) for m in previous), default=None)
    # A day of overlap: values updated later on the day of the last fetch are not missed
    # whether Kolada's from_date is inclusive or not; repeats count as duplicates.
    since = last_fetch - timedelta(days=1) if last_fetch else None
    years = list(range(catalogue.first_year, date.today().year + 1))
    now = datetime.now(UTC)
    with KoladaClient(
        s.kolada_url,
        per_page=s.kolada_per_page,
        calls=s.kolada_calls,
        per_seconds=s.kolada_seconds,
        timeout=s.timeout,
        attempts=s.attempts,
        backoff=s.backoff,
    ) as client:
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
        log(f"kolada: no values or publication dates changed since {since} (already landed)")
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
    manifest = _manifest("kolada", "kpi_values", rows, request, periods, release, now)
    land(settings.paths.landing, manifest, rows)
    log(
        f"landed kolada: {rows.height:,} values (periods {', '.join(map(str, periods))})"
        if rows.height
        else "landed kolada: no values changed, KPI publication dates did (statuses follow)"
    )
    return [manifest]


def _pxweb_client(settings: Settings, api: str) -> PxWebClient:
    s = settings.statistics
    return PxWebClient(
        s.scb_url if api == "scb" else s.fohm_url,
        api_version=PXWEB_APIS[api],
        calls=s.pxweb_calls,
        per_seconds=s.pxweb_seconds,
        max_cells=s.pxweb_max_cells,
        timeout=s.timeout,
        attempts=s.attempts,
        backoff=s.backoff,
    )


def _land_pxweb(settings: Settings, catalogue: Catalogue, log: Log) -> list[Manifest]:
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
                "ContentsCode": [indicator.contents],
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
                "ContentsCode": [p.contents],
                d["period"]: ["*"],
            }

        jobs.append(("population", p.api, p.table, select_population, p.dimensions["period"]))

    previous = {m.dataset: m for m, _ in landed_loads(settings.paths.landing, "pxweb")}
    manifests = []
    clients: dict[str, PxWebClient] = {}  # one per API: its rate limit covers every table
    with ExitStack() as stack:
        for dataset, api, table, select, period_variable in jobs:
            if api not in clients:
                clients[api] = stack.enter_context(_pxweb_client(settings, api))
            info = clients[api].table(table)
            selection = select(info.variables)
            last = previous.get(dataset)
            if (
                last
                and last.release.get("updated") == info.updated
                and last.release.get("selection") == selection
            ):
                log(f"pxweb {table}: unchanged since {info.updated}, not fetched")
                continue
            now = datetime.now(UTC)
            data = clients[api].fetch(table, selection, info=info)
            manifests.append(_land_table(settings, dataset, api, table, info, selection, data,
                                         period_variable, now))  # fmt: skip
            log(f"landed pxweb {table}: {data.frame.height:,} cells, updated {info.updated}")
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
    manifest = _manifest(
        "pxweb", dataset, rows, f"POST {table} (json-stat2)", periods, release, now
    )
    land(settings.paths.landing, manifest, rows)
    return manifest


def _land_surveys(settings: Settings, catalogue: Catalogue, log: Log) -> list[Manifest]:
    folder = settings.paths.drop / SURVEY_DIR
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".csv", ".xlsx"))
    landed = {m.sha256 for m, _ in landed_loads(settings.paths.landing, "survey")}
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
            period=now.date().isoformat(),
            periods=years,
            file=str(path.relative_to(settings.paths.drop)),
            sha256=sha,
            rows=rows.height,
            extracted_at=now.isoformat(timespec="seconds"),
            columns=rows.columns,
        )
        land(settings.paths.landing, manifest, rows)
        landed.add(sha)
        manifests.append(manifest)
        log(f"landed {manifest.file}: {rows.height} survey rows")
    return manifests


# -- clean, gate, audit ------------------------------------------------------------------------


def _fetched_at(manifest: Manifest) -> datetime:
    return datetime.fromisoformat(manifest.extracted_at).astimezone(UTC)


def _split(
    manifest: Manifest, folder: Path, catalogue: Catalogue, newest_kolada: Manifest | None
) -> tuple[str, ReleaseRows]:
    raw = pl.read_parquet(folder / DATA_FILE)
    fetched = _fetched_at(manifest)
    if manifest.source == "kolada":
        assert newest_kolada is not None
        return "indicator_values", kolada_release(
            raw,
            newest_kolada.release.get("kpi_metadata", {}),
            _fetched_at(newest_kolada).date(),
            manifest.load_id,
            fetched,
            catalogue,
        )
    if manifest.source == "survey":
        return "indicator_values", survey_release(raw, manifest.load_id, fetched, catalogue)
    if manifest.dataset == "population":
        return "population", population_release(
            raw, manifest.release, manifest.load_id, fetched, catalogue
        )
    if manifest.dataset not in {i.id for i in catalogue.of("pxweb")}:
        return "indicator_values", ReleaseRows(
            raw.clear(), raw.select(pl.all().cast(pl.String), reason=pl.lit(
                "indicator_not_in_catalogue")), raw.height,
        )  # fmt: skip
    return "indicator_values", pxweb_release(
        raw, manifest.release, manifest.load_id, fetched, catalogue
    )


def _empty(schema: dict) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def clean_statistics(settings: Settings, run_id: str, log: Log) -> CleanOutcome:
    """Rebuild the clean statistics from every landed release; gate; then replace."""
    paths = settings.paths
    catalogue = catalogue_of(settings)
    target = paths.clean / CLEAN_DIR
    write_parquet_atomic(catalogue.indicator_table(), target / "indicators.parquet")
    write_parquet_atomic(catalogue.roles(), target / "municipality_roles.parquet")
    outcome = CleanOutcome()
    loads = [item for s in SOURCES for item in landed_loads(paths.landing, s)]
    loads.sort(key=lambda item: item[0].load_id)
    audit = read_audit(paths.audit)
    cleaned = set(audit.filter(pl.col("status") == "cleaned")["load_id"].to_list())
    pending = [(m, f) for m, f in loads if m.load_id not in cleaned]
    have_files = all((target / f"{d}.parquet").exists() for d in ("indicator_values", "population"))
    if not pending and have_files:
        log("statistics: no new releases to clean")
        return outcome
    started, clock = datetime.now(UTC), time.perf_counter()

    newest_kolada = next((m for m, _ in reversed(loads) if m.source == "kolada"), None)
    split = {m.load_id: (m, *_split(m, f, catalogue, newest_kolada)) for m, f in loads}
    frames = {"indicator_values": [], "population": []}
    for _, dataset, result in split.values():
        frames[dataset].append(result.rows)
    values, value_dups = history(frames["indicator_values"], KEY)
    population, population_dups = history(frames["population"], ["area_code", "age", "sex", "year"])
    values = values if values.height else _empty(VALUES_SCHEMA)
    population = population if population.height else _empty(POPULATION_SCHEMA)
    duplicates = pl.concat(
        [d.select("release_id") for d in (value_dups, population_dups) if d.height]
        or [pl.DataFrame(schema={"release_id": pl.String})]
    )["release_id"].value_counts()
    dup_by_load = dict(duplicates.iter_rows())

    if pending:
        report_dir = paths.validation / run_id
        outcome.gates.append(
            gate.validate_frame(
                values.with_columns(
                    percent_value=pl.when(
                        pl.col("indicator_id").is_in(
                            [i.id for i in catalogue.indicators if i.unit == "percent"]
                        )
                    ).then(pl.col("value"))
                ),
                settings.expectations_dir / "indicator_values.json",
                {"indicator_ids": [i.id for i in catalogue.indicators]},
                partition="statistics",
                report_dir=report_dir,
            )
        )
        outcome.gates.append(
            gate.validate_frame(
                population,
                settings.expectations_dir / "population.json",
                {},
                partition="statistics",
                report_dir=report_dir,
            )
        )
        for result in outcome.gates:
            log(f"gate {result.suite}: {result.status} ({result.rows:,} rows)")
    if outcome.gate_failed:
        status = "gate_failed"
    else:
        write_parquet_atomic(values, target / "indicator_values.parquet")
        write_parquet_atomic(population, target / "population.parquet")
        outcome.partitions_replaced = [
            f"{CLEAN_DIR}/indicator_values",
            f"{CLEAN_DIR}/population",
        ]
        status = "cleaned"

    finished = datetime.now(UTC)
    gate_status = next(
        (s for s in ("failed", "passed_with_warnings") if s in {g.status for g in outcome.gates}),
        "passed",
    )
    for manifest, _ in pending:
        _, _, result = split[manifest.load_id]
        dups = dup_by_load.get(manifest.load_id, 0)
        quarantined = result.quarantine.height
        if status == "cleaned" and quarantined:
            write_parquet_atomic(
                result.quarantine,
                paths.quarantine / manifest.dataset / f"period={manifest.period}"
                / f"load_id={manifest.load_id}" / "quarantine.parquet",
            )  # fmt: skip
        for reason, count in result.quarantine.group_by("reason").len().iter_rows():
            outcome.quarantine_reasons[reason] = outcome.quarantine_reasons.get(reason, 0) + count
        outcome.loads.append(
            {
                "run_id": run_id,
                "source": manifest.source,
                "dataset": manifest.dataset,
                "load_id": manifest.load_id,
                "file": manifest.file,
                "periods": ",".join(manifest.periods),
                "rows_received": result.received,
                "rows_clean": result.rows.height - dups,
                "rows_quarantined": quarantined,
                "rows_duplicate": dups,
                "status": status,
                "gate": gate_status,
                "started_at": started,
                "finished_at": finished,
                "seconds": round(time.perf_counter() - clock, 3),
            }
        )
    append_audit(paths.audit, outcome.loads)
    return outcome
