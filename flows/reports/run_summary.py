"""The run summary: rows per stage, gate results, freshness, what was published.

Written as markdown to `data/reports/runs/<run>.md` and, inside a flow, as a Prefect artifact.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from flows.layers.audit import AUDIT_OVERVIEW
from flows.layers.clean import CleanOutcome
from lagesbild.settings import Paths


@dataclass
class RunSummary:
    run_id: str
    run_date: date
    status: str  # Completed | Failed
    error: str | None = None
    landed: list[str] = field(default_factory=list)
    clean: CleanOutcome = field(default_factory=CleanOutcome)  # every dataset's, added up
    dbt_nodes: int = 0
    dbt_execution_seconds: float | None = None  # of the dbt stage: running nodes, not start-up
    dbt_mode: str = ""  # incremental or full refresh, and why
    published: list[str] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    report_path: Path | None = None
    docs_path: Path | None = None  # dbt docs: models, grains, tests, glossary
    lagesbild_path: Path | None = None  # the HTML report for coordinators
    skipped: list[str] = field(default_factory=list)  # stages a quiet night did not run
    note: str | None = None  # e.g. "nothing new: stages skipped (dbt, publish, report)"


FRESHNESS_COLUMNS = ["source", "latest_day", "lag", "lag_unit", "max_lag", "freshness_status"]


def freshness(paths: Paths) -> pl.DataFrame:
    """Every source's freshness as the served marts say it (`mart_source_freshness`): after a
    failed run, as of the last publish."""
    if not paths.marts_db.exists():
        return pl.DataFrame()
    con = duckdb.connect(str(paths.marts_db), read_only=True)
    try:
        columns = ", ".join(FRESHNESS_COLUMNS)
        return con.sql(f"select {columns} from mart_source_freshness order by source").pl()
    except duckdb.Error:  # marts published before the freshness mart had these columns
        return pl.DataFrame()
    finally:
        con.close()


def _table(frame: pl.DataFrame) -> list[str]:
    if frame.is_empty():
        return ["(none)"]
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * frame.width]
    for row in frame.iter_rows():
        lines.append(
            "| "
            + " | ".join(
                "" if v is None else f"{v:,}" if isinstance(v, int) else str(v) for v in row
            )
            + " |"
        )
    return lines


def _present(*lines: str | None) -> list[str]:
    """The lines that are there (a line is written `condition and text`)."""
    return [line for line in lines if line]


def render(summary: RunSummary, paths: Paths) -> str:
    out = [
        f"# lagesbild run {summary.run_id}",
        "",
        f"- status: **{summary.status}**",
        f"- run date: {summary.run_date}",
    ]
    out += _present(
        summary.error and f"- reason: {summary.error}",
        summary.note and f"- {summary.note}",
        summary.stage_seconds
        and "- seconds per stage: "
        + ", ".join(f"{k} {v:.1f}" for k, v in summary.stage_seconds.items()),
    )
    if summary.clean.gates:  # the benchmarks read this line (benchmarks/run.py)
        gates = summary.clean.gates
        out += [
            f"- gate seconds (within clean): {sum(g.seconds for g in gates):.1f}",
            "- gate start-up seconds (importing Great Expectations, within gate): "
            f"{sum(g.startup_seconds for g in gates):.1f}",
        ]
    if summary.dbt_execution_seconds is not None:
        out += [
            "- dbt execution seconds (running models and tests, within dbt; the rest is "
            f"dbt's start-up and parse): {summary.dbt_execution_seconds:.1f}"
        ]
    clean = summary.clean
    out += [
        f"- loads landed by this run: {len(summary.landed)} (drop-folder files and API answers)",
        f"- loads cleaned and accounted by this run: {len(clean.loads)}"
        + (
            f" ({earlier} of them landed by an earlier run)"
            if (earlier := len({r["file"] for r in clean.loads} - set(summary.landed)))
            else ""
        ),
        f"- clean partitions replaced: {', '.join(clean.partitions_replaced) or 'none'}",
        f"- dbt nodes built and tested: {summary.dbt_nodes}"
        + (f" ({summary.dbt_mode})" if summary.dbt_mode else ""),
        "",
        "## Loads",
        "",
    ]
    if clean.loads:
        loads = pl.DataFrame(clean.loads).select(AUDIT_OVERVIEW)
        totals = loads.select(pl.col("^rows_.*$").sum())
        out += _table(loads) + [
            "",
            "Totals: " + ", ".join(f"{k} {v:,}" for k, v in totals.row(0, named=True).items()),
        ]
    else:
        out += ["No new files in the drop folder."]
    if clean.quarantine_reasons:
        out += ["", "Quarantined rows by reason (files under `quarantine/`):", ""]
        out += [f"- {k}: {v:,}" for k, v in sorted(clean.quarantine_reasons.items())]
    out += ["", "## Gate (Great Expectations)", ""]
    for result in clean.gates:
        out.append(
            f"- {result.suite} {result.partition}: **{result.status}** "
            f"({result.rows:,} rows, report `{result.report_path}`)"
        )
        for failed in result.critical_failures + result.warnings:
            out.append(
                f"  - {failed.severity}: {failed.expectation} on {failed.column}: "
                f"{failed.unexpected_count} unexpected"
                + (f", e.g. {failed.sample}" if failed.sample else "")
            )
    if clean.gates:
        out.append(f"\nReadable page: `{paths.validation / summary.run_id / 'index.html'}`")
    else:
        out.append("Nothing to validate in this run.")
    out += ["", "## Freshness (served marts)", ""] + _table(freshness(paths))
    out += ["", "## Published", ""]
    if summary.published:
        out += _present(
            f"- `{paths.marts_db}`: {', '.join(summary.published)}",
            f"- parquet: `{paths.marts_parquet}/*.parquet`",
            summary.lagesbild_path and f"- lägesbild report: `{summary.lagesbild_path}`",
            summary.docs_path
            and f"- dbt docs (each mart, its grain and tests): `{summary.docs_path}`",
        )
    elif summary.skipped:
        out += [
            "Nothing new since the last completed run on this run date: the served marts "
            "and the report are those it published, unchanged (not rewritten)."
        ]
    else:
        out += ["Nothing was published in this run; the served marts are unchanged."]
    return "\n".join(out) + "\n"


def validation_html(summary: RunSummary) -> str:
    """A readable page of every expectation of this run's gate, beside the GX JSON results."""
    rows = []
    for result in summary.clean.gates:
        for o in result.outcomes:
            colour = (
                "#d4edda" if o.success else "#f8d7da" if o.severity == "critical" else "#fff3cd"
            )
            cells = [
                result.partition,
                o.expectation,
                o.column or "",
                o.severity,
                "passed" if o.success else "FAILED",
                "" if o.unexpected_count is None else str(o.unexpected_count),
                ", ".join(o.sample),
            ]
            rows.append(
                f'<tr style="background:{colour}">'
                + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
                + "</tr>"
            )
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "partition",
            "expectation",
            "column",
            "severity",
            "result",
            "unexpected",
            "examples",
        )
    )
    return (
        f"<!doctype html><meta charset=utf-8><title>Gate {summary.run_id}</title>"
        f"<h1>Gate results, run {html.escape(summary.run_id)}</h1>"
        "<p>Full Great Expectations results: the JSON files in this folder.</p>"
        f"<table border=1 cellpadding=4><tr>{head}</tr>{''.join(rows)}</table>"
    )


def write(summary: RunSummary, paths: Paths) -> Path:
    if summary.clean.gates:
        folder = paths.validation / summary.run_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "index.html").write_text(validation_html(summary), encoding="utf-8")
    paths.runs.mkdir(parents=True, exist_ok=True)
    path = paths.runs / f"{summary.run_id}.md"
    path.write_text(render(summary, paths), encoding="utf-8")
    summary.report_path = path
    return path
