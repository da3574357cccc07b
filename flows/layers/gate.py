"""The Great Expectations gate on the clean frames of a load.

Suites are JSON files in `expectations/` named after the dataset; each expectation carries GX's
own `severity` (`critical` blocks the run, `warning` is reported). GX validates pandas frames
(its SQL datasource does not work with DuckDB). GX is imported lazily: the
import alone costs about 10 s.
"""

from __future__ import annotations

import functools
import gc
import itertools
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl


@dataclass
class ExpectationOutcome:
    expectation: str
    column: str | None
    severity: str
    success: bool
    unexpected_count: int | None
    sample: list[Any] = field(default_factory=list)


@dataclass
class GateResult:
    suite: str
    partition: str
    rows: int
    outcomes: list[ExpectationOutcome]
    report_path: Path | None = None
    seconds: float = 0.0  # wall time of the validation (the first one includes GX's import)
    startup_seconds: float = 0.0  # of which importing GX and making its context (first only)

    @property
    def critical_failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success and o.severity == "critical"]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success and o.severity != "critical"]

    @property
    def status(self) -> str:
        if self.critical_failures:
            return "failed"
        return "passed_with_warnings" if self.warnings else "passed"


class GateFailed(RuntimeError):
    """A critical expectation failed; nothing of the load was written or published."""


@functools.cache
def _context():
    """One in-memory GX context per process (making it imports GX: its start-up)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    # GX brings ~300,000 long-lived objects: kept out of the collection each validation ends
    # with (validate_frame), which then takes ~0 s instead of ~0.2 s
    gc.freeze()
    return context


_source_numbers = itertools.count()

# What GX keeps of the cells it found unexpected. A column's values are kept only when its
# suite lists it in meta `values_shown` (codes, dates; "*" for public statistics): a pupil key
# that holds a raw personnummer, a tenant's name or phone number must reach no report, page,
# log or JSON file; the count of unexpected values stays.
_VALUE_KEYS = (
    "partial_unexpected_list",
    "partial_unexpected_counts",
    "partial_unexpected_index_list",
    "unexpected_list",
    "unexpected_index_list",
    "unexpected_index_query",
    "unexpected_rows",
    "details",
)
MASKED = "(not shown: personal or free-text column)"


def _shows_values(column: str | None, shown: list[str]) -> bool:
    return "*" in shown or (column is not None and column in shown)


def _masked_json(result: dict, shown: list[str]) -> dict:
    """The GX result as JSON, without the values of columns whose values are not shown."""
    for item in result.get("results", []):
        kwargs = item.get("expectation_config", {}).get("kwargs", {})
        column = kwargs.get("column") or str(kwargs.get("column_list", ""))
        details = item.get("result") or {}
        if _shows_values(column, shown):
            continue
        for key in _VALUE_KEYS:
            details.pop(key, None)
        if isinstance(details.get("observed_value"), str | list | dict):
            details["observed_value"] = MASKED
    return result


def _columns_checked(frame: pl.DataFrame, expectations: list[dict]) -> pl.DataFrame:
    """Only the columns the suite's expectations name go to GX (as pandas objects a month of
    pupil-days' text columns take GBs); all of them when an expectation is about the table's
    columns."""
    needed: set[str] = set()
    for expectation in expectations:
        if expectation["type"].startswith("expect_table_column"):
            return frame
        kwargs = expectation.get("kwargs", {})
        for name in ("column", "column_A", "column_B"):
            if isinstance(kwargs.get(name), str):
                needed.add(kwargs[name])
        for name in ("column_list", "columns"):
            if isinstance(kwargs.get(name), list):
                needed.update(c for c in kwargs[name] if isinstance(c, str))
    kept = [c for c in frame.columns if c in needed]
    return frame.select(kept) if kept else frame


def validate_frame(
    frame: pl.DataFrame,
    suite_path: Path,
    parameters: dict[str, Any],
    partition: str,
    report_dir: Path | None = None,
) -> GateResult:
    """Validate one partition's frame against a suite; write the full GX result as JSON."""
    started = time.perf_counter()
    from great_expectations.core import ExpectationSuite

    context = _context()  # GX's start-up: ~10 s on the first call, then cached
    startup = time.perf_counter() - started
    spec = json.loads(suite_path.read_text(encoding="utf-8"))
    frame = _columns_checked(frame, spec["expectations"])
    suite = ExpectationSuite(
        name=spec["name"], expectations=spec["expectations"], meta=spec.get("meta")
    )
    name = spec["name"]
    shown = (spec.get("meta") or {}).get("values_shown", [])
    # A data source per frame, deleted afterwards: its execution engine caches the frame and
    # its metrics, which would otherwise stay alive for the whole run (GBs at 100,000 pupils).
    source = context.data_sources.add_pandas(f"lagesbild-{next(_source_numbers)}")
    try:
        batch = (
            source.add_dataframe_asset(f"{name}-{partition}")
            .add_batch_definition_whole_dataframe("frame")
            # numpy-backed: with arrow-backed string columns GX took 4× as long (1.2 s vs 0.3 s
            # a month at 10,000 pupils), though they would take less memory
            .get_batch(batch_parameters={"dataframe": frame.to_pandas()})
        )
        result = batch.validate(suite, expectation_parameters=parameters, result_format="SUMMARY")
    finally:
        context.data_sources.delete(source.name)

    outcomes = []
    for item in result.results:
        config = item.expectation_config
        column = config.kwargs.get("column") or str(config.kwargs.get("column_list", ""))
        values = item.result.get("partial_unexpected_list") or []
        outcomes.append(
            ExpectationOutcome(
                expectation=config.type,
                column=column,
                severity=getattr(config.severity, "value", str(config.severity)),
                success=bool(item.success),
                unexpected_count=item.result.get("unexpected_count"),
                sample=[str(v) for v in values[:5]] if _shows_values(column, shown) else [],
            )
        )
    gate = GateResult(name, partition, frame.height, outcomes)
    gate.startup_seconds = startup
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        gate.report_path = report_dir / f"{name}__{partition}.json"
        masked = _masked_json(result.to_json_dict(), shown)
        gate.report_path.write_text(json.dumps(masked, indent=2, default=str))
    # GX's batch, engine and validator hold the frame's pandas copy in reference cycles, which
    # only Python's cyclic collector frees, and polars' work (in Rust) seldom triggers it: at
    # 100,000 pupils a whole year kept 0.35 GB more per month cleaned without this.
    del result
    gc.collect()
    gate.seconds = time.perf_counter() - started
    return gate


def validate_loads(
    suite: Path, loads: list, max_quarantine_share: float, report_dir: Path
) -> GateResult:
    """Validate the loads themselves: a mostly-quarantined file (a changed date or amount
    format) blocks the run instead of publishing what little was left of it.

    `loads` holds (origin, LoadResult) pairs: the file or request, and its accounting.
    """
    frame = pl.DataFrame(
        {
            "file": [origin for origin, _ in loads],
            "rows_received": [result.received for _, result in loads],
            "rows_quarantined": [result.quarantined for _, result in loads],
        },
        schema={"file": pl.String, "rows_received": pl.Int64, "rows_quarantined": pl.Int64},
    ).with_columns(
        quarantine_share=pl.col("rows_quarantined") / pl.max_horizontal("rows_received", 1)
    )
    return validate_frame(
        frame,
        suite,
        {"max_quarantine_share": max_quarantine_share},
        partition="loads",
        report_dir=report_dir,
    )
