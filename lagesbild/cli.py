"""The `lagesbild` command line."""

from __future__ import annotations

import os
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lagesbild import runtime
from lagesbild.settings import (
    DEMO_PSEUDONYM_KEY,
    PROJECT_ROOT,
    TIMEZONE,
    ConfigError,
    Settings,
    today,
)

app = typer.Typer(
    help="lagesbild: a shared lägesbild for youth-prevention work.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


# Errors a user fixes (settings, layouts, reference files, the drop folder): one message and
# exit code 2, never a traceback.
def _user_errors() -> tuple[type[Exception], ...]:
    from connectors.drop_files import LayoutError
    from flows.layers.reference import ReferenceError

    return ConfigError, LayoutError, ReferenceError


def _read_settings() -> Settings:
    from pydantic import ValidationError

    from connectors.drop_files import describe_validation_error

    try:
        return Settings()
    except ValidationError as exc:  # named fields, without the values (a URL may hold a secret)
        console.print(
            f"[red]Configuration error[/red] (lagesbild.toml or LAGESBILD_* variables): "
            f"{describe_validation_error(exc)}",
            highlight=False,
        )
        raise typer.Exit(2) from None
    except Exception as exc:  # e.g. a lagesbild.toml that is not valid TOML
        console.print(f"[red]Configuration error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None


def _settings() -> Settings:
    settings = _read_settings()
    runtime.configure(settings.data_dir)
    return settings


def _preflight(settings: Settings) -> None:
    """User errors found before Prefect starts (~20 s): the drop folder and the layouts
    files. One line each, exit code 2."""
    from connectors.attendance_export.layouts import load_layouts
    from connectors.drop_files import LayoutError, check_drop_dir
    from connectors.housing_export.layouts import load_layouts as load_housing_layouts

    try:
        check_drop_dir(settings.paths.drop)
        load_layouts(settings.attendance_layouts)
        load_housing_layouts(settings.housing_layouts)
    except LayoutError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None


def _run_nightly(run_date: date | None, full_refresh: bool = False) -> None:
    api = runtime.start_temporary_api()  # boots while the flow's modules are imported
    from flows.nightly import nightly

    _run_flow(lambda: nightly(run_date=run_date, full_refresh=full_refresh), api)


def _temporary_api_dies_with_us() -> None:
    """Without PREFECT_API_URL, Prefect starts a temporary API server as a subprocess; if
    this process is killed (kill -9, the OOM killer) that server would run on, orphaned.
    Prefect takes its one temporary server from `SubprocessASGIServer._instances`: put one
    there that starts uvicorn under `setpriv --pdeathsig KILL` (as dbt is), so Linux ends it
    with us. The command is Prefect's own (prefect/server/api/server.py)."""
    import shutil
    import subprocess

    import prefect
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, get_current_settings

    setpriv = shutil.which("setpriv")
    if PREFECT_API_URL.value() or setpriv is None:  # a server of its own, or not Linux
        return

    class DiesWithParent(SubprocessASGIServer):
        def _run_uvicorn_command(self) -> subprocess.Popen:
            app_dir = str(prefect.__module_path__.parent)
            factory = "prefect.server.api.server:create_app"
            return subprocess.Popen(
                [setpriv, "--pdeathsig", "KILL", sys.executable, "-m", "uvicorn"]
                + ["--app-dir", app_dir, "--factory", factory, "--host", "127.0.0.1"]
                + ["--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
                env={
                    **os.environ,
                    "PREFECT_UI_ENABLED": "0",
                    "PREFECT__SERVER_EPHEMERAL": "1",
                    "PREFECT__SERVER_FINAL": "1",
                    **get_current_settings().to_environment_variables(exclude_unset=True),
                },
            )

    if None not in SubprocessASGIServer._instances:
        # registers itself as the one Prefect uses; started here, from the main thread:
        # the death signal follows the thread that started it, which must live as long
        DiesWithParent(None).start()


def _run_flow(start, api: runtime.TemporaryApi | None = None) -> None:
    if api is None:
        _temporary_api_dies_with_us()
    try:
        if api is not None:
            api.wait()
        summary = start()
    except _user_errors() as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        console.print("Nothing was published; fix the above and run again.")
        raise typer.Exit(2) from None
    except Exception as exc:
        console.print(f"\n[red bold]The run failed:[/red bold] {escape(str(exc))}")
        console.print(
            f"The served marts are unchanged. The run summary is under {Settings().paths.runs}."
        )
        raise typer.Exit(1) from exc
    console.print(f"\n[green bold]Run {summary.run_id} completed.[/green bold]")
    console.print(f"Run summary: {summary.report_path}")


@app.command()
def generate(
    pupils: Annotated[int, typer.Option(help="pupils enrolled per school year")] = 1500,
    years: Annotated[int, typer.Option(help="school years, ending with --last-school-year")] = 1,
    seed: Annotated[
        int, typer.Option(help="random seed; same arguments give the same files")
    ] = 2026,
    last_school_year: Annotated[int, typer.Option(help="2025 means 2025/26")] = 2025,
    through: Annotated[str | None, typer.Option(help="stop at this date (YYYY-MM-DD)")] = None,
    out: Annotated[Path | None, typer.Option(help="drop folder; default from settings")] = None,
    ss12000: Annotated[
        Path | None, typer.Option(help="also write the local SS 12000 server's data here")
    ] = None,
) -> None:
    """Generate the fictional demo municipality's source files into the drop folder."""
    from demo.generate import generate as run_generator

    settings = _settings()
    target = out or settings.paths.drop
    summary = run_generator(
        target,
        pupils=pupils,
        years=years,
        seed=seed,
        last_school_year=last_school_year,
        through=date.fromisoformat(through) if through else None,
        ss12000_dir=ss12000,
        progress=lambda message: console.print(f"  {message}"),
    )
    console.print(
        f"Generated {len(summary.files)} files into {target} ({summary.lesson_rows:,} lesson rows)."
    )


@app.command()
def run(
    run_date: Annotated[
        str | None,
        typer.Option(help="the day the run is for (YYYY-MM-DD); default: today in Sweden"),
    ] = None,
    full_refresh: Annotated[
        bool,
        typer.Option(
            "--full-refresh",
            help="rebuild every dbt table from scratch instead of only the changed months "
            "(done by itself when the dbt project changed)",
        ),
    ] = False,
) -> None:
    """Run the nightly flow once: land, clean, validate, build and publish."""
    settings = _settings()
    try:
        settings.require_pseudonym_key()
        day = date.fromisoformat(run_date) if run_date else None
    except (ConfigError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    _preflight(settings)
    _run_nightly(day, full_refresh)


@app.command()
def bench(
    pupils: Annotated[
        list[int] | None, typer.Option(help="pupils of a scale; repeat for several scales")
    ] = None,
    years: Annotated[
        list[int] | None, typer.Option(help="school years of each scale (one value: all)")
    ] = None,
    out: Annotated[Path, typer.Option(help="the results table")] = PROJECT_ROOT
    / "benchmarks"
    / "results.md",
    through: Annotated[
        list[str] | None,
        typer.Option(
            help="cut a scale's last school year at this first school day of a month "
            "(YYYY-MM-DD, or 'end' for the whole year); one value, or one per --pupils"
        ),
    ] = None,
    skip_pandas: Annotated[bool, typer.Option(help="leave out the pandas peer")] = False,
    skip_floors: Annotated[
        bool, typer.Option(help="leave out the extract floor and the floor (limit.sql)")
    ] = False,
    scale_out: Annotated[
        bool,
        typer.Option(
            help="also run each scale on the Spark + Dask path (clean on a Dask LocalCluster, "
            "dbt on Spark) and compare it with the default path; needs `uv sync --extra spark` "
            "and Java 17"
        ),
    ] = False,
    stop_at: Annotated[
        str | None,
        typer.Option(help="start no one-new-day run after this time (HH:MM, UTC)"),
    ] = None,
    fixed_costs: Annotated[
        bool, typer.Option(help="measure the start-up of Prefect, dbt and GX alone")
    ] = True,
    label: Annotated[str, typer.Option(help="a note at the top of the results")] = "",
) -> None:
    """Benchmark the nightly against the bare-DuckDB limit and a pandas peer (benchmarks/)."""
    pupils, years, through = pupils or [1500], years or [1], through or ["end"]
    if len(years) not in (1, len(pupils)) or len(through) not in (1, len(pupils)):
        console.print("[red]Give one --years (--through), or one per --pupils.[/red]")
        raise typer.Exit(2)
    try:
        cuts = [None if t == "end" else date.fromisoformat(t) for t in through]
    except ValueError:
        console.print("[red]--through takes a date (YYYY-MM-DD) or 'end'.[/red]")
        raise typer.Exit(2) from None
    try:
        now = datetime.now(UTC)
        stop = None if stop_at is None else datetime.combine(now, time.fromisoformat(stop_at), UTC)
    except ValueError:
        console.print("[red]--stop-at takes a time of day (HH:MM, UTC).[/red]")
        raise typer.Exit(2) from None
    _settings()
    if scale_out:
        from benchmarks.spark import missing_for_spark

        if missing := missing_for_spark():
            console.print(f"[red]--scale-out: {missing}.[/red]", highlight=False)
            raise typer.Exit(2)
    from benchmarks.run import BenchFailed, run_bench

    scales = list(
        zip(
            pupils,
            years * len(pupils) if len(years) == 1 else years,
            cuts * len(pupils) if len(cuts) == 1 else cuts,
            strict=True,
        )
    )
    try:
        results = run_bench(
            scales,
            out,
            skip_pandas=skip_pandas,
            scale_out=scale_out,
            stop_at=stop,
            fixed_costs=fixed_costs,
            skip_floors=skip_floors,
            label=label,
            log=console.print,
        )
    except BenchFailed as exc:
        console.print(f"[red]The benchmark failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"Results: {out}")
    if not results.all_equal:
        console.print("[red]Marts differ from the published ones: see the results.[/red]")
        raise typer.Exit(1)


@app.command()
def backfill(
    source: Annotated[str, typer.Option(help="source to re-run, e.g. attendance_export")],
    date_from: Annotated[str, typer.Option("--from", help="first day (YYYY-MM-DD)")],
    date_to: Annotated[str, typer.Option("--to", help="last day (YYYY-MM-DD)")],
) -> None:
    """Rebuild a source's periods in a window from what has landed, then publish once."""
    settings = _settings()
    from flows.nightly import BACKFILL_SOURCES
    from flows.nightly import backfill as backfill_flow

    try:
        settings.require_pseudonym_key()
        first, last = date.fromisoformat(date_from), date.fromisoformat(date_to)
        if source not in BACKFILL_SOURCES:
            raise ConfigError(
                f"unknown source '{source}' for backfill; known: {', '.join(BACKFILL_SOURCES)}"
            )
    except (ConfigError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    _preflight(settings)

    _run_flow(lambda: backfill_flow(source=source, date_from=first, date_to=last))


@app.command()
def retract(
    load: Annotated[
        str, typer.Argument(help="the load id, or the file's name or path in the drop folder")
    ],
    reason: Annotated[str, typer.Option(help="why it is taken out (kept in the audit)")],
) -> None:
    """Take a landed load out: its landing, its clean rows (its periods rebuilt without it)
    and its quarantine. The audit keeps who, when and why; the next run publishes."""
    import logging

    from flows.layers.audit import RunLocked
    from flows.layers.clean import CleanFailed
    from flows.layers.files import CorruptFile
    from flows.retract import RetractError, current_user
    from flows.retract import retract as retract_load

    settings = _settings()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        done = retract_load(settings, load, reason, by=current_user())
    except (RetractError, CleanFailed, CorruptFile, RunLocked, *_user_errors()) as exc:
        console.print(f"[red]{escape(str(exc))}[/red]", highlight=False)
        raise typer.Exit(2) from None
    if not done.dataset:
        console.print(f"Load {done.load_id} ({done.file}) is retracted already; nothing changed.")
        return
    periods = (
        f"periods {', '.join(done.periods)}"
        if done.periods
        else "it had rows in no clean period (no usable date)"
    )
    console.print(
        f"Retracted load {done.load_id} ({done.file}) by {current_user()}: {done.dataset} "
        f"rebuilt without it; {periods}.",
        highlight=False,
    )
    console.print("The served marts change with the next run (`lagesbild run` or the nightly).")


@app.command("check-layout")
def check_layout(
    file: Annotated[Path, typer.Argument(help="an export file, e.g. one just received")],
    run_date: Annotated[
        str | None, typer.Option(help="quarantine dates after this day (default: today in Sweden)")
    ] = None,
) -> None:
    """Dry run of one export: which layout reads it, how its columns map, the first rows as
    parsed (ids masked) and the quarantine it would give, or the layout change that would
    make it read. Lands and writes nothing."""
    from connectors.drop_files import LayoutError
    from flows.layout_check import check_layout as run_check
    from flows.layout_check import report_lines

    settings = _read_settings()  # no runtime.configure: it would create folders
    drop = settings.paths.drop
    try:
        result = run_check(
            file,
            attendance_layouts_file=settings.attendance_layouts,
            housing_layouts_file=settings.housing_layouts,
            drop_dir=drop if drop.is_dir() else None,
            run_date=date.fromisoformat(run_date) if run_date else None,
        )
    except (LayoutError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    for line in report_lines(result):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if not result.ok:
        raise typer.Exit(2)


@app.command()
def serve() -> None:
    """Serve the nightly (scheduled) and backfill deployments from this process, with a
    local Prefect server (started here unless one answers at PREFECT_API_URL)."""
    settings = _settings()
    from flows.deployments import SERVED_SUFFIX, serve_deployments

    url = runtime.api_url()
    log_file = settings.data_dir / "logs" / "prefect-server.log"
    try:
        with runtime.prefect_server(url, log_file) as started:
            # The flow runs are child processes: they must use this server, not start their own.
            os.environ["PREFECT_API_URL"] = url
            where = f"started here, log {log_file}" if started else "already running"
            console.print(f"Prefect server {url} ({where}); UI {url.removesuffix('/api')}")
            console.print(
                f"Serving 'nightly/nightly{SERVED_SUFFIX}' ({settings.nightly_cron}, "
                f"Europe/Stockholm) and 'backfill/backfill{SERVED_SUFFIX}'. "
                "Stop with Ctrl-C; the schedule stays active."
            )
            from prefect.settings import PREFECT_API_URL, temporary_settings

            with temporary_settings(updates={PREFECT_API_URL: url}):
                serve_deployments(settings)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]", markup=True, highlight=False)
        raise typer.Exit(2) from exc


automations = typer.Typer(help="Alerts the Prefect server sends itself.", no_args_is_help=True)
app.add_typer(automations, name="automations")


@automations.command("create")
def automations_create(
    missed_hours: Annotated[
        float, typer.Option(help="alert when no nightly run completed for this many hours")
    ] = 26,
) -> None:
    """Create (again) the Prefect automations: a run crashed or failed, a nightly late or
    missed; each POSTs to failure_webhook_url. Also puts every nightly and backfill
    deployment on the server under the shared build limit (run it after `prefect deploy`)."""
    from datetime import timedelta

    settings = _settings()
    url = runtime.api_url()
    if not settings.failure_webhook_url:
        console.print("[red]Set failure_webhook_url (LAGESBILD_FAILURE_WEBHOOK_URL) first.[/red]")
        raise typer.Exit(2)
    if not runtime.api_answers(url):
        console.print(
            f"[red]No Prefect server answers at {url}.[/red] Automations live on a server: "
            "start `lagesbild serve` (or your server) and set PREFECT_API_URL."
        )
        raise typer.Exit(2)
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deployments import BUILD_LIMIT, share_build_limit
    from flows.reports.automations import create_automations

    with temporary_settings(updates={PREFECT_API_URL: url}):
        created = create_automations(settings.failure_webhook_url, timedelta(hours=missed_hours))
        with get_client(sync_client=True) as client:
            linked = share_build_limit(client)
    for automation in created:
        console.print(f"  automation '{automation.name}' ({automation.id})")
    console.print(f"Deployments put under the shared limit '{BUILD_LIMIT}': {linked or 'none new'}")


@app.command()
def demo(
    pupils: Annotated[int, typer.Option(help="pupils enrolled per school year")] = 1500,
    years: Annotated[int, typer.Option(help="school years of data")] = 1,
    seed: Annotated[int, typer.Option()] = 2026,
    revise_statistics: Annotated[
        bool, typer.Option(help="let the demo statistics servers publish revisions first")
    ] = False,
) -> None:
    """Generate the demo municipality and run the nightly flow on it, end to end."""
    # The demo writes its exports and reads them at once: no wait for half-uploaded files.
    os.environ.setdefault("LAGESBILD_MIN_FILE_AGE_SECONDS", "0")
    if not os.environ.get("LAGESBILD_PSEUDONYM_KEY"):
        os.environ["LAGESBILD_PSEUDONYM_KEY"] = DEMO_PSEUDONYM_KEY
        console.print(
            "[yellow]Demo: using the fixed, public demo pseudonym key. Never use it "
            "for real data: set LAGESBILD_PSEUDONYM_KEY.[/yellow]"
        )
    settings = _settings()
    console.rule("1/2 Generating the demo municipality (Ekdala kommun, fictional)")
    generate(
        pupils=pupils,
        years=years,
        seed=seed,
        last_school_year=2025,
        through=None,
        out=settings.paths.drop,
        ss12000=settings.data_dir / "demo_ss12000",
    )
    from demo.statistics import local_statistics_servers, write_survey_results

    write_survey_results(settings.paths.drop)
    console.rule("2/2 Running the nightly flow (Prefect starts a local API first, ~20 s)")
    from demo.ss12000_server import serving_demo

    # The exports and a local SS 12000 server describe the same attendance; the API wins
    # (attendance_precedence) and the audit counts the export rows it superseded.
    with (
        serving_demo(settings.data_dir / "demo_ss12000") as url,
        local_statistics_servers(revise=revise_statistics) as servers,
    ):
        console.print(f"  local SS 12000 server on {url} (stopped after the run)")
        console.print(
            f"  local Kolada {servers['kolada_url']}/v3 and PxWeb {servers['pxweb_url']} "
            "(demo statistics servers, fictional values)"
        )
        _run_nightly(None)
    _headlines(settings)
    _statistics_headlines(settings)
    report = settings.paths.reports / "lagesbild" / "index.html"
    console.print(f"\n[bold]Lägesbild report (open it in a browser):[/bold] {report}")


def _statistics_headlines(settings: Settings) -> None:
    import duckdb

    con = duckdb.connect(str(settings.paths.marts_db), read_only=True)
    try:
        rows = con.execute(
            "select indicator_id, period, value, county_value, national_value,"
            " comparison_group_value, trend, status from marts.mart_indicator_values"
            " where area_level = 'municipality' and sex = 'T' and value is not null"
            " qualify period = max(period) over (partition by indicator_id)"
            " order by indicator_id"
        ).fetchall()
    finally:
        con.close()
    table = Table(title="Indicators, latest year (mart_indicator_values)")
    for column in ("indicator", "year", "own", "county", "country", "similar", "trend"):
        table.add_column(column, justify="left" if column in ("indicator", "trend") else "right")
    for indicator, period, *figures, trend, status in rows:
        cells = ["–" if v is None else f"{v:,.1f}" for v in figures]
        label = f"{trend or '–'}{' (prel.)' if status == 'preliminary' else ''}"
        table.add_row(indicator, str(period), *cells, label)
    console.print(table)


def _headlines(settings: Settings) -> None:
    import duckdb

    paths = settings.paths
    con = duckdb.connect(str(paths.marts_db), read_only=True)
    try:
        term, data_through = con.execute(
            "select term, max(data_through) from marts.mart_attendance_area_term "
            "group by term order by max(data_through) desc limit 1"
        ).fetchone()
        table = Table(title=f"Absence per area, term {term} (data through {data_through})")
        for column in ("area", "pupils", "total %", "valid %", "invalid %"):
            table.add_column(column, justify="right" if column != "area" else "left")
        rows = con.execute(
            "select area_name, pupils, total_absence_pct, valid_absence_pct, invalid_absence_pct "
            "from marts.mart_attendance_area_term where term = ? order by area_name",
            [term],
        ).fetchall()
        for row in rows:
            name, *figures = row
            table.add_row(
                name,
                *[
                    "–" if v is None else f"{v:,}" if isinstance(v, int) else f"{v:,.1f}"
                    for v in figures
                ],
            )
        console.print(table)
        shares = con.execute(
            "select threshold_pct, pupils_at_or_above, share_at_or_above_pct "
            "from marts.mart_problematic_absence_area_term "
            "where scope = 'municipality' and term = ? order by threshold_pct",
            [term],
        ).fetchall()
        for threshold, count, share in shares:
            figure = "suppressed (small cell)" if count is None else f"{count:,} ({share:.1f} %)"
            console.print(f"Pupils with at least {threshold:.0f} % absence in {term}: {figure}")
        vandalism = con.execute(
            "select year, data_through, vandalism_orders, vandalism_cost_sek, cost_change_pct "
            "from marts.mart_vandalism_municipality_year order by year"
        ).fetchall()
        for year, through, orders, cost, change in vandalism:
            figure = "suppressed (small cell)" if orders is None else f"{orders:,} orders, "
            figure += "" if cost is None else f"{cost:,.0f} SEK excl. VAT"
            figure += "" if change is None else f" ({change:+.1f} % on the same period before)"
            console.print(f"Vandalism in housing, {year} (through {through}): {figure}")
    finally:
        con.close()
    console.print(
        f"\nMarts: {paths.marts_db} (tables marts.<name>) and {paths.marts_parquet}/<name>.parquet"
    )
    console.print(
        "Open them: duckdb -readonly " + str(paths.marts_db) + "  — see docs/bi-access.md."
    )


def _local(column: str):
    import polars as pl

    return pl.col(column).dt.convert_time_zone(TIMEZONE).dt.strftime("%Y-%m-%d %H:%M")


def _print_table(title: str, frame, headers: dict[str, str]) -> None:
    table = Table(title=title, title_justify="left")
    for column, header in headers.items():
        numeric = frame.schema[column].is_numeric()
        table.add_column(header, justify="right" if numeric else "left")
    for row in frame.select(list(headers)).iter_rows():
        table.add_row(
            *[
                ""
                if v is None
                else f"{v:,}"
                if isinstance(v, int) and not isinstance(v, bool)
                else escape(str(v))  # an error's [brackets] are text, not markup
                for v in row
            ]
        )
    console.print(table)


def _verdict(paths, runs, loads) -> tuple[bool, list[str]]:
    """Whether the served marts include every cleaned load, and if not, why."""
    import polars as pl

    from flows.layers.landing import every_load

    reasons = []
    cleaned = loads.filter(pl.col("status") == "cleaned")
    published = (
        runs.filter(pl.col("published"))
        .select(pl.coalesce("published_at", "finished_at"))
        .to_series()
        .max()
    )
    newest = cleaned["finished_at"].max()
    if published is None:
        reasons.append("no run has published marts yet")
    elif newest is not None and newest > published:
        unpublished = cleaned.filter(pl.col("finished_at") > published)
        reasons.append(
            f"{unpublished['load_id'].n_unique()} loads cleaned after the last publish "
            f"({published:%Y-%m-%d %H:%M} UTC) are not in them"
        )
    out = loads.filter(pl.col("is_current") & (pl.col("status") == "retracted"))
    if published is not None and (out["finished_at"] > published).any():
        later = out.filter(pl.col("finished_at") > published)
        reasons.append(
            f"{later.height} loads retracted after the last publish are still in them (the "
            "next run publishes without them)"
        )
    gone = set(loads.filter(pl.col("status").is_in(["retracting", "retracted"]))["load_id"])
    waiting = {load.load_id for load in every_load(paths.landing)} - set(cleaned["load_id"]) - gone
    if waiting:
        reasons.append(
            f"{len(waiting)} landed loads are not cleaned yet (the next run cleans them; "
            "see the last run's error if it failed on them)"
        )
    return not reasons, reasons


@app.command()
def report(
    pdf: Annotated[
        bool, typer.Option("--pdf", help="also print it to an A4 PDF with headless Chromium")
    ] = False,
    run_date: Annotated[
        str | None,
        typer.Option(help="the day the report speaks of (YYYY-MM-DD); default: the last build's"),
    ] = None,
) -> None:
    """Write the lägesbild report from the served marts (HTML, and with --pdf a PDF)."""
    import duckdb

    from flows.reports import lagesbild as lagesbild_report

    settings = _settings()
    paths = settings.paths
    if not paths.marts_db.exists():
        console.print("[red]No marts are published yet:[/red] run `lagesbild run` first.")
        raise typer.Exit(2)
    if run_date:
        try:
            day = date.fromisoformat(run_date)
        except ValueError as exc:
            console.print(f"[red]--run-date {run_date!r} is not a date (YYYY-MM-DD).[/red]")
            raise typer.Exit(2) from exc
    else:  # the date the served marts were judged on, so text and figures agree
        con = duckdb.connect(str(paths.marts_db), read_only=True)
        try:
            (day,) = con.execute(
                "select max(checked_on) from marts.mart_source_freshness"
            ).fetchone()
        finally:
            con.close()
        day = day or today()
    html = lagesbild_report.build(paths, settings.municipality.name, day)
    console.print(f"Lägesbild report: {html}")
    if pdf:
        target = html.with_name(f"lagesbild-{day.isoformat()}.pdf")
        try:
            lagesbild_report.print_pdf(html, target)
        except lagesbild_report.ChromiumMissing as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from exc
        except Exception as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
        console.print(f"PDF (A4): {target}")


@app.command("audit-disclosure")
def audit_disclosure(
    marts: Annotated[
        Path | None, typer.Option(help="served marts file (default: the configured one)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="report file (markdown)")] = None,
) -> None:
    """Attack the served marts: the feasible interval of every withheld value, and a verdict."""
    import duckdb

    from flows import disclosure

    settings = _settings()
    marts = marts or settings.paths.marts_db
    if not marts.exists():
        console.print(f"[red]{marts} does not exist: run `lagesbild run` first.[/red]")
        raise typer.Exit(2)
    con = duckdb.connect(str(marts), read_only=True)
    try:
        result = disclosure.audit(con, min_persons=settings.suppression.min_persons)
    finally:
        con.close()
    out = out or settings.paths.reports / "disclosure-audit.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(disclosure.report_markdown(result))
    narrowest = result.narrowest()
    console.print(
        f"{len(result.quantities)} withheld values audited over {result.cells} cells; "
        + (
            f"narrowest count interval {narrowest.upper - narrowest.lower:g} wide; "
            if narrowest
            else ""
        )
        + (
            "[green]PASS[/green]"
            if result.passed
            else f"[red]FAIL: {len(result.failures)} can be narrowed[/red]"
        )
    )
    console.print(f"Report: {out}")
    if not result.passed:
        raise typer.Exit(1)


@app.command()
def status() -> None:
    """Last runs, last load per source, freshness, and whether the served marts are current."""
    from flows.layers.files import CorruptFile

    settings = _settings()
    try:
        _status(settings)
    except CorruptFile as exc:  # name the file and its repair, no traceback
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(1) from exc


def _status(settings: Settings) -> None:
    import duckdb
    import polars as pl

    from flows.layers.audit import read_audit, read_runs, with_crashed
    from flows.layers.files import CorruptFile

    paths = settings.paths
    runs, loads = with_crashed(read_runs(paths.audit)), read_audit(paths.audit)
    if runs.is_empty() and loads.is_empty():
        console.print("No runs yet. Run `lagesbild run` (or `lagesbild demo`).")
        return
    runs = runs.sort("started_at")
    _print_table(
        "Last runs",
        runs.tail(8).with_columns(
            _local("started_at"), _local("finished_at"), pl.col("error").str.slice(0, 60)
        ),
        {
            "started_at": "started",
            "finished_at": "finished",
            "flow": "flow",
            "window": "window",
            "status": "status",
            "published": "published",
            "loads": "loads",
            "error": "error",
        },
    )
    for row in runs.filter(pl.col("status") == "Running").iter_rows(named=True):
        console.print(f"A {row['flow']} run is running (pid {row['pid']} on {row['host']}).")
    ended = runs.filter(pl.col("status") != "Running")
    last_run = ended.row(-1, named=True) if ended.height else None
    if last_run and last_run["status"] != "Completed":
        verb = "was killed" if last_run["status"] == "Crashed" else "failed"
        console.print(f"[red]The last run ({last_run['flow']}) {verb}:[/red]")
        console.print(escape(last_run["error"] or ""), markup=True)  # verbatim
        summary = paths.runs / (last_run["run_id"] + ".md")
        if summary.exists():
            console.print(f"Its summary: {summary}")
    elif last_run and last_run["note"]:  # what a completed run did not do, and why
        console.print(f"The last run ({last_run['flow']}): {escape(last_run['note'])}")

    current = loads.filter(pl.col("is_current"))
    for row in current.filter(pl.col("status") == "failed").iter_rows(named=True):
        console.print(
            f"[red]Load {row['load_id']} ({escape(row['file'] or '')}) failed:[/red] "
            f"{escape(row['reason'] or '')}",
            highlight=False,
        )
    for row in current.filter(pl.col("status") == "retracting").iter_rows(named=True):
        console.print(
            f"The retraction of load {row['load_id']} ({escape(row['file'] or '')}) is not "
            f"finished: run `lagesbild retract {row['load_id']} --reason ...` again, or the "
            "next run finishes it.",
            highlight=False,
        )
    gone = current.filter(pl.col("status").is_in(["retracting", "retracted"]))["load_id"].to_list()
    cleaned = loads.filter((pl.col("status") == "cleaned") & ~pl.col("load_id").is_in(gone))
    last = cleaned.sort("finished_at").group_by("dataset").last().sort("dataset")
    _print_table(
        "Last successful load per source",
        last.with_columns(_local("finished_at"), pl.col("file").str.split("/").list.last()),
        {
            "dataset": "source",
            "finished_at": "loaded",
            "file": "file",
            "rows_received": "received",
            "rows_clean": "clean",
            "rows_quarantined": "quarantined",
            "rows_duplicate": "duplicates",
        },
    )

    if not paths.marts_db.exists():
        console.print("[red]No marts are published yet.[/red]")
        return
    try:
        con = duckdb.connect(str(paths.marts_db), read_only=True)
        try:
            freshness = con.sql("select * from marts.mart_source_freshness").pl()
        finally:
            con.close()
    except duckdb.Error as exc:
        raise CorruptFile(
            f"{paths.marts_db} cannot be read ({exc}). Run `lagesbild run`: it publishes "
            "the marts again from the work warehouse."
        ) from exc
    _print_table(
        "Freshness (as of the last publish)",
        freshness.sort("source_type", "source"),
        {
            "source_type": "kind",
            "source": "source",
            "latest_day": "latest day",
            "lag": "behind",
            "lag_unit": "unit",
            "max_lag": "allowed",
            "freshness_status": "status",
        },
    )
    outdated = freshness.filter(pl.col("is_calendar_outdated"))
    if outdated.height:  # one calendar for every source: say it once
        console.print(
            f"[yellow]The school calendar ends {outdated['calendar_through'][0]}: add the "
            "new school year to reference/school_calendar.csv.[/yellow]"
        )
    for row in freshness.filter(pl.col("freshness_status") == "behind").iter_rows(named=True):
        console.print(
            f"[red]{row['source']} is stale: latest day {row['latest_day']}, "
            f"{row['lag']} {row['lag_unit'].replace('_', ' ')} behind.[/red]"
        )

    current, reasons = _verdict(paths, runs, loads)
    if current:
        console.print(
            f"Served marts {paths.marts_db}: [green]current[/green] (they include every "
            "cleaned load)"
        )
    else:
        console.print(f"Served marts {paths.marts_db}: [red]behind[/red]: " + "; ".join(reasons))


@app.command()
def verify() -> None:
    """Check every landed file against the sha256 recorded when it was landed, and that every
    clean, audit and served file is readable. Names each damaged file and its repair."""
    import duckdb

    from flows.layers.audit import read_audit, read_runs
    from flows.layers.clean import clean_repair
    from flows.layers.files import CorruptFile, check_parquet
    from flows.layers.landing import every_load

    paths = _settings().paths
    problems: list[str] = []

    def attempt(check, *args) -> None:
        try:
            check(*args)
        except CorruptFile as exc:
            problems.append(str(exc))

    try:
        loads = every_load(paths.landing)
    except CorruptFile as exc:
        problems.append(str(exc))
        loads = []
    for load in loads:
        attempt(load.verify)
    hashed = sum(1 for load in loads if load.manifest.data_sha256)
    clean = sorted(p for p in paths.clean.rglob("*.parquet") if not p.name.startswith("."))
    for file in clean:
        attempt(check_parquet, file, None, clean_repair(paths.clean, file))
    attempt(read_audit, paths.audit)
    attempt(read_runs, paths.audit)
    served = sorted(paths.marts_parquet.glob("*.parquet")) if paths.marts_parquet.exists() else []
    again = "Run `lagesbild run`: it publishes the marts again."
    for file in served:
        attempt(check_parquet, file, None, again)
    if paths.marts_db.exists():
        try:
            duckdb.connect(str(paths.marts_db), read_only=True).close()
        except duckdb.Error as exc:
            problems.append(f"{paths.marts_db} cannot be read ({exc}). {again}")
    console.print(
        f"Checked {len(loads)} landed loads ({hashed} against their sha256; "
        f"{len(loads) - hashed} landed before hashes were recorded: size and footer only), "
        f"{len(clean)} clean files, the audit and {len(served)} served parquet files."
    )
    for problem in problems:
        console.print(f"[red]{escape(problem)}[/red]")
    if problems:
        raise typer.Exit(1)
    console.print("[green]Every file is intact.[/green]")


def _add_region() -> None:
    from lagesbild.region_cli import region

    app.add_typer(region, name="region")


_add_region()


def main() -> None:  # pragma: no cover - console script entry
    sys.exit(app())


if __name__ == "__main__":
    main()
