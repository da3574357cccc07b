"""`lagesbild region ...`: several municipalities on one installation and their regional
layer (docs/region.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from lagesbild import runtime
from lagesbild.errors import ConfigError
from lagesbild.settings import PROJECT_ROOT

region = typer.Typer(
    help="Several municipalities on one installation, and their regional comparison.",
    no_args_is_help=True,
)
console = Console(soft_wrap=True)  # paths in messages stay whole

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", help="the region file; default LAGESBILD_REGION_CONFIG or region.toml"
    ),
]
DEFAULT_YAML = PROJECT_ROOT / "deployments" / "region.yaml"
# Settings every municipality's run reads from its own file; set in the worker's
# environment they would apply to all of them.
SHARED_OK = {"LAGESBILD_CONFIG", "LAGESBILD_HOME", "LAGESBILD_REGION_CONFIG"}


def _region(path: Path | None):
    from lagesbild.region_settings import load_region

    try:
        return load_region(path)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None


def _write_yaml(path: Path | None, out: Path):
    from flows.region.deployments import write_region_yaml

    region = _region(path)
    try:
        written = write_region_yaml(region, path or Path("region.toml"), out)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    codes = ", ".join(m.code for m in region.municipalities)
    console.print(f"{len(region.municipalities) * 2} deployments ({codes}) written to {written}")
    return region, written


@region.command("deployments")
def deployments(
    config: ConfigOption = None,
    out: Annotated[Path, typer.Option(help="the prefect.yaml to write")] = DEFAULT_YAML,
) -> None:
    """Write the prefect.yaml of every municipality's nightly and backfill deployments."""
    _write_yaml(config, out)


@region.command("link-limits")
def link_limits() -> None:
    """Put each municipality's deployments under its own build limit on the Prefect server
    (`lagesbild-build-<code>`; the single-municipality deployments keep `lagesbild-build`)."""
    from prefect.client.orchestration import get_client

    from flows.deployments import share_build_limit

    with get_client(sync_client=True) as client:
        linked = share_build_limit(client)
    console.print(f"Deployments linked to their build limit now: {', '.join(linked) or 'none'}")


@region.command("deploy")
def deploy(
    config: ConfigOption = None,
    out: Annotated[Path, typer.Option(help="the prefect.yaml to write")] = DEFAULT_YAML,
) -> None:
    """Write the deployments, `prefect deploy` them to the server (PREFECT_API_URL) and
    link each municipality's to its build limit. The work pool must exist."""
    if not runtime.api_answers(runtime.api_url()):
        console.print(
            f"[red]No Prefect server answers at {runtime.api_url()}[/red]: start one and set "
            "PREFECT_API_URL (docs/region.md)."
        )
        raise typer.Exit(2)
    shared = sorted(k for k in os.environ if k.startswith("LAGESBILD_") and k not in SHARED_OK)
    if shared:
        console.print(
            f"[yellow]Set here: {', '.join(shared)}. If the workers' environment sets them "
            "too, they apply to every municipality.[/yellow]"
        )
    _region_settings, written = _write_yaml(config, out)
    prefect = Path(sys.executable).parent / "prefect"
    result = subprocess.run(
        [str(prefect), "--no-prompt", "deploy", "--all", "--prefect-file", str(written)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "LAGESBILD_HOME": os.environ.get("LAGESBILD_HOME", str(PROJECT_ROOT))},
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        console.print(f"[red]prefect deploy failed:[/red]\n{result.stdout}{result.stderr}")
        raise typer.Exit(1)
    link_limits()


@region.command("build")
def build(config: ConfigOption = None) -> None:
    """Build the regional comparison marts from the municipalities' published marts only."""
    runtime.configure()
    from flows.layers.audit import RunLocked
    from flows.region.build import build_region

    settings = _region(config)
    try:
        result = build_region(settings)
    except (ConfigError, RunLocked) as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    for table, rows in result.tables.items():
        console.print(f"  {table}: {rows} rows")
    console.print(f"Published {result.marts_db} and {result.marts_parquet}/")
