"""The `lagesbild` command line."""

from __future__ import annotations

import os
import sys
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lagesbild import runtime
from lagesbild.settings import DEMO_PSEUDONYM_KEY, ConfigError, Settings

app = typer.Typer(
    help="lagesbild: a shared lägesbild for youth-prevention work.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


def _settings() -> Settings:
    try:
        settings = Settings()
    except Exception as exc:  # pydantic's message names the field and the source
        console.print(f"[red]Configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc
    runtime.configure(settings.data_dir)
    return settings


def _run_nightly(run_date: date | None) -> None:
    from flows.nightly import nightly

    try:
        summary = nightly(run_date=run_date)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    except Exception as exc:
        console.print(f"\n[red bold]The run failed:[/red bold] {exc}")
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
        progress=lambda message: console.print(f"  {message}"),
    )
    console.print(
        f"Generated {len(summary.files)} files into {target} ({summary.lesson_rows:,} lesson rows)."
    )


@app.command()
def run(
    run_date: Annotated[
        str | None, typer.Option(help="the day the run is for (YYYY-MM-DD)")
    ] = None,
) -> None:
    """Run the nightly flow once: land, clean, validate, build and publish."""
    try:
        _settings().require_pseudonym_key()
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    _run_nightly(date.fromisoformat(run_date) if run_date else None)


@app.command()
def demo(
    pupils: Annotated[int, typer.Option(help="pupils enrolled per school year")] = 1500,
    years: Annotated[int, typer.Option(help="school years of data")] = 1,
    seed: Annotated[int, typer.Option()] = 2026,
) -> None:
    """Generate the demo municipality and run the nightly flow on it, end to end."""
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
    )
    console.rule("2/2 Running the nightly flow (Prefect starts a local API first, ~20 s)")
    _run_nightly(None)
    _headlines(settings)


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
                    "–" if v is None else f"{v:,.1f}" if isinstance(v, float) else f"{v:,}"
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
    finally:
        con.close()
    console.print(
        f"\nMarts: {paths.marts_db} (tables marts.<name>) and {paths.marts_parquet}/<name>.parquet"
    )
    console.print(
        "Open them: duckdb -readonly " + str(paths.marts_db) + "  — see README 'Reading the marts'."
    )


@app.command()
def status() -> None:
    """Show the latest loads from the audit table."""
    import polars as pl

    from flows.storage import read_audit

    settings = _settings()
    audit = read_audit(settings.paths.audit)
    if audit.is_empty():
        console.print("No loads yet. Run `lagesbild run` (or `lagesbild demo`).")
        return
    latest = (
        audit.sort("finished_at")
        .tail(15)
        .with_columns(
            pl.col("finished_at")
            .dt.convert_time_zone("Europe/Stockholm")
            .dt.strftime("%d/%m %H:%M"),
            pl.col("file").str.split("/").list.last(),
        )
    )
    table = Table(title=f"Latest loads ({settings.paths.audit / 'loads.parquet'})")
    headers = {
        "finished_at": "finished",
        "file": "file",
        "rows_received": "received",
        "rows_clean": "clean",
        "rows_quarantined": "quar.",
        "rows_duplicate": "dupl.",
        "status": "status",
        "gate": "gate",
    }
    for column, header in headers.items():
        table.add_column(
            header,
            justify="right" if column.startswith("rows") else "left",
            no_wrap=column == "file",
        )
    for row in latest.select(list(headers)).iter_rows():
        table.add_row(*[f"{v:,}" if isinstance(v, int) else str(v) for v in row])
    console.print(table)
    if settings.paths.marts_db.exists():
        console.print(f"Served marts: {settings.paths.marts_db}")


def main() -> None:  # pragma: no cover - console script entry
    sys.exit(app())
