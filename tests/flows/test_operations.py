"""Operations: backfill, one build at a time, failure webhook, reruns after kill -9.

Each scenario works in its own copy of a data folder, so they do not disturb each other.
Runs that must be killed run as real `lagesbild run` processes against the session's Prefect
API; everything else calls the flows in-process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import duckdb
import polars as pl
import pytest
import yaml

from flows.layers.audit import read_audit, read_runs
from flows.layers.landing import landed_loads
from flows.nightly import backfill, nightly
from lagesbild.settings import PROJECT_ROOT
from tests.flows.conftest import TEST_KEY, THROUGH, build_once, pipeline_at

OCTOBER = "2025-10"


def marts_content(db: Path) -> dict[str, pl.DataFrame]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        names = [
            r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()
        ]
        return {
            n: con.sql(f'select * from marts."{n}"').pl().sort(pl.all(), nulls_last=True)
            for n in sorted(names)
        }
    finally:
        con.close()


def same_marts(a: dict, b: dict) -> bool:
    assert not differing_marts(a, b), difference(a, b)
    return True


def differing_marts(a: dict, b: dict) -> list[str]:
    """The marts whose content differs (or that only one side has): for failure messages."""
    return sorted(
        k for k in a.keys() | b.keys() if k not in a or k not in b or not a[k].equals(b[k])
    )


def difference(a: dict, b: dict) -> str:
    """Which marts differ and, for the first few, the rows only one side has."""
    lines = []
    for name in differing_marts(a, b):
        if name not in a or name not in b:
            lines.append(f"{name}: only on one side")
            continue
        x, y = a[name], b[name]
        if x.schema != y.schema:
            lines.append(f"{name}: types {dict(x.schema)} != {dict(y.schema)}")
            continue
        only_a = x.join(y, on=x.columns, how="anti", nulls_equal=True)
        only_b = y.join(x, on=x.columns, how="anti", nulls_equal=True)
        with pl.Config(tbl_cols=-1, tbl_rows=6, fmt_str_lengths=30, tbl_width_chars=400):
            lines.append(f"{name}: first side only\n{only_a}\nsecond side only\n{only_b}")
    return "\n".join(lines)


def clean_content(data: Path) -> dict[str, pl.DataFrame]:
    """Clean partitions without load ids (a rerun lands the same files under new ids)."""
    return {
        p.parent.name: pl.read_parquet(p).drop("load_id")
        for p in sorted((data / "clean/attendance").glob("period=*/*.parquet"))
    }


def files_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="session")
def stages(municipality, tmp_path_factory):
    """A baseline (August and September published) and the reference: October added. Built
    once (also across pytest-xdist workers); each test works in copies under `root`."""

    def build(root: Path) -> None:
        drop = root / "drop"
        shutil.copytree(municipality["drop"], drop)
        october = {p: p.read_bytes() for p in drop.glob(f"attendance/*/*{OCTOBER}*")}
        for path in october:
            path.unlink()
        with pipeline_at(root / "baseline", drop):
            assert nightly(return_state=True).is_completed()
        for path, content in october.items():
            path.write_bytes(content)
        shutil.copytree(root / "baseline", root / "reference", symlinks=True)
        with pipeline_at(root / "reference", drop):
            assert nightly(return_state=True).is_completed()

    root = build_once(tmp_path_factory, "operations", build)
    return {
        "root": root,
        "drop": root / "drop",
        "baseline": root / "baseline",
        "reference": root / "reference",
    }


def copy_of(stages, name: str, source: str = "baseline") -> Path:
    target = stages["root"] / name
    shutil.copytree(stages[source], target, symlinks=True)
    return target


# -- backfill ----------------------------------------------------------------------------------


@pytest.mark.scenario
def test_backfill_over_a_loaded_window_changes_nothing(stages):
    data = copy_of(stages, "backfill-same", "reference")
    clean_before, marts_before = (
        files_of(data / "clean"),
        marts_content(data / "warehouse/marts.duckdb"),
    )
    with pipeline_at(data, stages["drop"]):
        state = backfill(
            source="attendance_export",
            date_from="2025-09-01",
            date_to="2025-09-30",
            return_state=True,
        )
    assert state.is_completed(), state.message
    assert files_of(data / "clean") == clean_before
    assert same_marts(marts_content(data / "warehouse/marts.duckdb"), marts_before)
    runs = read_runs(data / "audit")
    assert runs.filter(pl.col("flow") == "backfill")["window"].to_list() == [
        "attendance_export 2025-09-01..2025-09-30"
    ]


@pytest.mark.scenario
def test_backfill_over_a_changed_window_changes_exactly_that_window(stages, tmp_path):
    """The municipality decides 'Ej bedömd' counts as invalid absence from September on."""
    layouts = yaml.safe_load(
        (PROJECT_ROOT / "connectors/attendance_export/layouts.yml").read_text()
    )
    layouts["skola24_csv"]["absence_types"]["Ej bedömd"] = "invalid"
    changed = tmp_path / "layouts.yml"
    changed.write_text(yaml.safe_dump(layouts, allow_unicode=True))
    data = copy_of(stages, "backfill-changed", "reference")
    before = clean_content(data)
    with pipeline_at(data, stages["drop"], attendance_layouts=str(changed)):
        assert backfill(
            source="attendance_export",
            date_from="2025-09-10",
            date_to="2025-09-20",
            return_state=True,
        ).is_completed()
    assert rebuilt(data) == {"months": ["2025-09"], "terms": ["HT2025"]}  # dbt: September only
    after = clean_content(data)
    assert after.keys() == before.keys()
    for period in before:
        if period == "period=2025-09":
            moved = (
                before[period]
                .filter(pl.col("source") == "skola24_csv")["other_absence_minutes"]
                .sum()
            )
            assert moved > 0
            assert (
                after[period]["other_absence_minutes"].sum()
                == before[period]["other_absence_minutes"].sum() - moved
            )
            assert (
                after[period]["invalid_absence_minutes"].sum()
                == before[period]["invalid_absence_minutes"].sum() + moved
            )
        else:
            assert after[period].equals(before[period]), period
    marts = marts_content(data / "warehouse/marts.duckdb")["mart_attendance_school_grade_month"]
    old = marts_content(stages["reference"] / "warehouse/marts.duckdb")[
        "mart_attendance_school_grade_month"
    ]
    changed_months = old.join(
        marts, on=["school_unit_code", "grade", "month"], suffix="_new"
    ).filter(pl.col("invalid_absence_pct").ne_missing(pl.col("invalid_absence_pct_new")))
    assert set(changed_months["month"].dt.strftime("%Y-%m")) == {"2025-09"}
    audit = read_audit(data / "audit")
    accounted = audit.filter(pl.col("run_id") == audit["run_id"].max())
    assert sorted(accounted["file"].str.split("/").list.last()) == [
        "ist_narvaro_2025-09.xlsx",
        "skola24_franvaro_2025-09.csv",
    ]


@pytest.mark.scenario
def test_backfill_refuses_an_unknown_source_clearly(stages):
    with pipeline_at(stages["root"] / "unused", stages["drop"]):
        state = backfill(
            source="skolverket", date_from="2025-09-01", date_to="2025-09-30", return_state=True
        )
    # the parameter's type (an enum) refuses it before the run starts, naming the known ones
    assert state.is_failed()
    known = "'attendance_export', 'ss12000' or 'housing_export'"
    assert f"source: Input should be {known}" in state.message


# -- incremental dbt build ---------------------------------------------------------------------

# The incremental pupil-level tables and their version columns (which name files, so they
# differ between data folders that wrote the same rows at other times).
PUPIL_TABLES = {
    "int_pupil_days_enriched": "partition_version",
    "int_pupil_term_absence_summed": "term_version",
}


def rebuilt(data: Path) -> dict[str, list[str] | None]:
    """What the last dbt build of the incremental pupil-level models read, from the SQL it ran
    (run_results.json): the months of int_pupil_days_enriched and the terms of
    int_pupil_term_absence_summed; None for a model built in full."""
    results = json.loads((data / "warehouse/dbt_target/run_results.json").read_text())
    code = {r["unique_id"].split(".")[-1]: r["compiled_code"] for r in results["results"]}
    enriched, terms = code["int_pupil_days_enriched"], code["int_pupil_term_absence_summed"]
    return {
        "months": re.findall(r"attendance_date >= cast\('(\d{4}-\d{2})-01' as date\)", enriched)
        if "incremental run" in enriched
        else None,
        "terms": re.findall(r"term = '([^']+)'", terms) if "incremental run" in terms else None,
    }


def month_versions(data: Path) -> dict[str, str]:
    con = duckdb.connect(str(data / "warehouse/work.duckdb"), read_only=True)
    try:
        rows = con.execute(
            "select distinct strftime(month, '%Y-%m'), partition_version "
            "from intermediate.int_pupil_days_enriched"
        ).fetchall()
    finally:
        con.close()
    return dict(rows)


def pupil_tables(data: Path) -> dict[str, pl.DataFrame]:
    """The incremental tables, sorted, without their version columns and build times."""
    con = duckdb.connect(str(data / "warehouse/work.duckdb"), read_only=True)
    try:
        return {
            table: con.sql(f"select * exclude ({version}, built_at) from intermediate.{table}")
            .pl()
            .sort(pl.all(), nulls_last=True)
            for table, version in PUPIL_TABLES.items()
        }
    finally:
        con.close()


@pytest.fixture(scope="session")
def fresh_full(baseline):
    """A new data folder built in one run from the whole drop folder (October included): the
    session's baseline run, only read here."""
    return baseline["data"]


def test_a_new_month_is_built_alone_and_equals_a_full_build(stages, fresh_full):
    """The reference run added October to the baseline (August, September published): dbt read
    only October's file and summed only its term, and publishes what a full build does."""
    assert rebuilt(stages["baseline"]) == {"months": None, "terms": None}  # a first build
    assert rebuilt(stages["reference"]) == {"months": ["2025-10"], "terms": ["HT2025"]}
    before, after = month_versions(stages["baseline"]), month_versions(stages["reference"])
    assert sorted(after) == ["2025-08", "2025-09", "2025-10"]
    assert after == {**before, "2025-10": after["2025-10"]}  # August, September untouched

    assert rebuilt(fresh_full) == {"months": None, "terms": None}
    assert same_marts(
        marts_content(stages["reference"] / "warehouse/marts.duckdb"),
        marts_content(fresh_full / "warehouse/marts.duckdb"),
    )
    incremental, full = pupil_tables(stages["reference"]), pupil_tables(fresh_full)
    for table in PUPIL_TABLES:
        # load ids differ (each folder landed the files itself); everything else is equal
        assert (
            incremental[table]
            .drop("load_id", strict=False)
            .equals(full[table].drop("load_id", strict=False))
        ), table
    summary = max(
        (stages["reference"] / "reports/runs").glob("*.md"), key=lambda p: p.stat().st_mtime
    )
    assert "(incremental:" in summary.read_text()
    # only attendance changed: dbt built what depends on it, not housing or statistics
    assert "(--select source:attendance+ path:models/staging/attendance+)" in summary.read_text()
    results = json.loads(
        (stages["reference"] / "warehouse/dbt_target/run_results.json").read_text()
    )
    built = {r["unique_id"] for r in results["results"]}
    assert "model.lagesbild.mart_attendance_area_term" in built
    assert "model.lagesbild.mart_vandalism_area_year" not in built
    assert "model.lagesbild.mart_indicator_values" not in built


@pytest.mark.scenario
def test_a_corrected_old_month_is_rebuilt_alone_and_equals_a_full_refresh(stages):
    """September is exported again after October was published: its 'Ej bedömd' absences
    have been assessed as invalid. dbt rebuilds September and its term only; the marts show
    the correction and equal those of `lagesbild run --full-refresh` on the same data."""
    data = copy_of(stages, "corrected", "reference")
    drop = stages["root"] / "drop-corrected"
    shutil.copytree(stages["drop"], drop)
    september = sorted(drop.glob("attendance/skola24/*2025-09.csv"))[0]
    text = september.read_bytes().decode("cp1252")
    assert ";Ej bedömd\r\n" in text
    (september.parent / "skola24_franvaro_2025-09_rattad.csv").write_bytes(
        text.replace(";Ej bedömd\r\n", ";Ogiltig frånvaro\r\n").encode("cp1252")
    )
    before = month_versions(data)
    with pipeline_at(data, drop):
        assert nightly(return_state=True).is_completed()
    assert rebuilt(data) == {"months": ["2025-09"], "terms": ["HT2025"]}
    after = month_versions(data)
    assert {m for m in after if after[m] != before[m]} == {"2025-09"}

    corrected = marts_content(data / "warehouse/marts.duckdb")
    months = corrected["mart_attendance_school_grade_month"].join(
        marts_content(stages["reference"] / "warehouse/marts.duckdb")[
            "mart_attendance_school_grade_month"
        ],
        on=["school_unit_code", "grade", "month"],
        suffix="_before",
    )
    changed = months.filter(
        pl.col("invalid_absence_pct").ne_missing(pl.col("invalid_absence_pct_before"))
    )
    assert set(changed["month"].dt.strftime("%Y-%m")) == {"2025-09"}

    full = stages["root"] / "corrected-full-refresh"
    shutil.copytree(data, full, symlinks=True)
    with pipeline_at(full, drop):
        assert nightly(full_refresh=True, return_state=True).is_completed()
    assert rebuilt(full) == {"months": None, "terms": None}
    assert same_marts(marts_content(full / "warehouse/marts.duckdb"), corrected)
    incremental, rebuilt_in_full = pupil_tables(data), pupil_tables(full)
    for table in PUPIL_TABLES:
        assert incremental[table].equals(rebuilt_in_full[table]), table
    assert month_versions(full) == after


@pytest.mark.scenario
def test_retention_deletes_old_months_and_the_marts_keep_their_figures(stages):
    """With one school year kept, a run in the school year after the data's deletes August and
    September (October, the latest month, stays: dbt reads the attendance files); the next
    build keeps their rows in the incremental tables and publishes the same marts; `verify`
    is content, and a full refresh is refused."""
    from typer.testing import CliRunner

    from lagesbild.cli import app

    data = copy_of(stages, "retention", "reference")
    run_date = date(2026, 8, 17)  # school year 2026/27: 2025/26 is older than one year
    with pipeline_at(data, stages["drop"], retention_school_years="1"):
        assert nightly(run_date=run_date, return_state=True).is_completed()
        published = marts_content(data / "warehouse/marts.duckdb")
        tables = pupil_tables(data)
        assert sorted(p.name for p in (data / "clean/attendance").glob("period=*")) == [
            "period=2025-10"
        ]
        audit = read_audit(data / "audit").filter(pl.col("status") == "deleted_by_retention")
        clean = audit.filter(pl.col("source") == "clean")
        assert sorted(clean["periods"]) == ["2025-08", "2025-09"]
        landed = audit.filter(~pl.col("source").is_in(["clean", "quarantine"]))
        assert set(landed["source"]) == {"attendance_export"}
        assert set(landed["periods"]) <= {"2025-08", "2025-09"}
        kept = landed_loads(data / "landing", "attendance_export")
        left = [load.manifest.partitions for load in kept]
        assert landed.height > 0 and left and all(p == ["2025-10"] for p in left)
        # the quarantine (rejected pupil rows) of the deleted loads went with them
        quarantined = audit.filter(pl.col("source") == "quarantine")
        of = {name.rsplit("load_id=", 1)[1] for name in quarantined["load_id"]}
        assert quarantined.height > 0 and of <= set(landed["load_id"])
        folders = (data / "quarantine" / "attendance").glob("period=*/load_id=*")
        assert {f.name.removeprefix("load_id=") for f in folders} <= {k.load_id for k in kept}
        assert nightly(run_date=run_date, return_state=True).is_completed()
        assert same_marts(marts_content(data / "warehouse/marts.duckdb"), published)
        for table, frame in pupil_tables(data).items():
            assert frame.equals(tables[table]), table
        assert sorted(month_versions(data)) == ["2025-08", "2025-09", "2025-10"]

        result = CliRunner().invoke(app, ["verify"])
        assert result.exit_code == 0, result.output
        state = nightly(run_date=run_date, full_refresh=True, return_state=True)
        assert state.is_failed()
        assert "dbt build refused" in str(state.result(raise_on_failure=False))
        assert same_marts(marts_content(data / "warehouse/marts.duckdb"), published)


# -- one build at a time, failure webhook ------------------------------------------------------


class Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []
    fail_first: ClassVar[int] = 0

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Receiver.received.append(body)
        status = 500 if Receiver.fail_first > 0 else 200
        Receiver.fail_first -= 1
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    Receiver.received, Receiver.fail_first = [], 1  # the first POST gets a 500: retried
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", Receiver.received
    server.shutdown()


def hold_lock(data: Path, seconds: float) -> subprocess.Popen:
    """Another process holding the build lock, as a running build would."""
    code = (
        "import sys, time; from filelock import FileLock; l = FileLock(sys.argv[1]); "
        "l.acquire(); print('held', flush=True); time.sleep(float(sys.argv[2]))"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(data / ".build.lock"), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.scenario
def test_a_second_run_waits_for_the_build_or_ends_clearly(stages, webhook):
    url, received = webhook
    data = copy_of(stages, "locked")
    served = files_of(data / "warehouse")
    holder = hold_lock(data, 30)
    try:
        with pipeline_at(data, stages["drop"], run_lock_timeout="1", failure_webhook_url=url):
            state = nightly(return_state=True)
    finally:
        holder.kill()
        holder.wait()
    assert state.is_failed() and "another lagesbild run held" in state.message
    assert files_of(data / "warehouse") == served  # nothing landed, built or published
    assert not (data / "landing/attendance_export/skola24_csv/period=2025-10").exists()
    assert len(received) == 2  # a 500, retried, then delivered
    message = received[-1]
    assert message["flow"] == "nightly" and "RunLocked" in message["reason"]
    assert message["text"].startswith("lagesbild: nightly run") and "failed" in message["text"]
    # A run that never got the lock is still recorded, with its summary.
    (failed,) = read_runs(data / "audit").filter(pl.col("status") == "Failed").iter_rows(named=True)
    assert failed["error"].startswith("RunLocked: another lagesbild run held")
    assert (data / "reports/runs" / f"{failed['run_id']}.md").exists()

    # The summary cannot be written (a broken reports folder): the run's own error is kept,
    # the run record completed.
    runs_folder = data / "reports/runs"
    shutil.move(runs_folder, data / "reports/runs-moved")
    runs_folder.write_text("not a folder")
    holder = hold_lock(data, 30)
    try:
        with pipeline_at(data, stages["drop"], run_lock_timeout="1"):
            state = nightly(return_state=True)
    finally:
        holder.kill()
        holder.wait()
    assert state.is_failed() and "another lagesbild run held" in state.message
    last = read_runs(data / "audit").row(-1, named=True)
    assert last["status"] == "Failed" and last["error"].startswith("RunLocked")
    runs_folder.unlink()
    shutil.move(data / "reports/runs-moved", runs_folder)

    holder = hold_lock(data, 3)  # a build that finishes soon: this run waits for it
    try:
        with pipeline_at(data, stages["drop"], run_lock_timeout="60"):
            assert nightly(return_state=True).is_completed()
    finally:
        holder.wait()
    assert same_marts(
        marts_content(data / "warehouse/marts.duckdb"),
        marts_content(stages["reference"] / "warehouse/marts.duckdb"),
    )


@pytest.mark.scenario
def test_a_reader_of_the_work_warehouse_makes_dbt_wait_then_fail_in_one_line(stages):
    """An analyst's DuckDB session on work.duckdb (not marts.duckdb) blocks dbt's writes."""
    data = copy_of(stages, "reader", "reference")
    # without the records of what was built and served (as from a version before them),
    # the run builds: with them, nothing new would skip dbt (tests/flows/test_quiet_night.py)
    for record in ("work.inputs.json", "served.inputs.json"):
        (data / "warehouse" / record).unlink()
    code = (
        "import sys, duckdb; con = duckdb.connect(sys.argv[1], read_only=True); "
        "print('open', flush=True); sys.stdin.read()"
    )
    reader = subprocess.Popen(
        [sys.executable, "-c", code, str(data / "warehouse/work.duckdb")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout.readline().strip() == "open"
        with pipeline_at(data, stages["drop"], work_db_lock_timeout="3"):
            state = nightly(return_state=True)
    finally:
        reader.kill()
        reader.wait()
    assert state.is_failed()
    (line,) = [m for m in state.message.splitlines() if "work.duckdb" in m]
    assert f"is held open by PID {reader.pid} (" in line and "for more than 3 s" in line
    assert "never work.duckdb" in line and "Traceback" not in state.message
    with pipeline_at(data, stages["drop"]):  # the reader gone, the next run builds
        assert nightly(return_state=True).is_completed()
    assert_byte_identical(served_files(data), served_files(stages["reference"]))


def test_a_damaged_file_is_named_with_its_repair(stages):
    """Truncated files: a landed load (found by `verify`, repaired by landing it again), a
    clean partition (the run stops before dbt, naming it), the audit and the served file
    (`status` names them instead of crashing)."""
    from typer.testing import CliRunner

    from lagesbild.cli import app

    data = copy_of(stages, "damaged", "reference")
    runner = CliRunner()
    with pipeline_at(data, stages["drop"]):
        intact = runner.invoke(app, ["verify"], env={"COLUMNS": "200"})
    assert intact.exit_code == 0 and "Every file is intact" in intact.output, intact.output
    landed = sorted((data / "landing/attendance_export").rglob("data.parquet"))
    loads = len(list((data / "landing").rglob("data.parquet")))
    assert f"Checked {loads} landed loads ({loads} against their sha256; 0 landed before" in (
        " ".join(intact.output.split())
    )

    # a landed file damaged in place (same size): only the sha256 tells
    september = next(p for p in landed if "period=2025-09" in str(p))
    content = bytearray(september.read_bytes())
    content[100] ^= 0xFF
    september.write_bytes(bytes(content))
    with pipeline_at(data, stages["drop"]):
        found = runner.invoke(app, ["verify"], env={"COLUMNS": "400"})
    assert found.exit_code == 1
    flat = " ".join(found.output.split())
    assert f"{september} differs from what was landed (sha256)" in flat
    assert f"Move {september.parent} out of landing, then run `lagesbild run`" in flat

    # a clean partition truncated: the run names it before dbt, with the backfill that repairs
    clean = data / "clean/attendance/period=2025-10"
    part = next(clean.glob("*.parquet"))
    part.write_bytes(part.read_bytes()[:-10])
    with pipeline_at(data, stages["drop"]):
        state = nightly(return_state=True)
    assert state.is_failed() and f"{part} is not a complete parquet file" in state.message
    assert (
        "lagesbild backfill --source attendance_export --from 2025-10-01 --to 2025-10-31"
        in state.message
    )

    # the audit and the served file truncated: `status` names each, no traceback
    for damaged in (data / "audit/loads.parquet", data / "warehouse/marts.duckdb"):
        saved = damaged.read_bytes()
        damaged.write_bytes(saved[: len(saved) // 2])
        status = status_output(data, stages["drop"])
        assert str(damaged) in " ".join(status.split()) and "Traceback" not in status, status
        damaged.write_bytes(saved)

    # repaired as the messages say: the landed load moved away (landed again from the drop
    # folder), the clean partition deleted and rebuilt by the backfill
    shutil.move(september.parent, stages["root"] / "damaged-load")
    part.unlink()
    with pipeline_at(data, stages["drop"]):
        assert backfill(
            source="attendance_export",
            date_from="2025-10-01",
            date_to="2025-10-31",
            return_state=True,
        ).is_completed()
    assert leftovers(data) == []
    assert_byte_identical(served_files(data), served_files(stages["reference"]))
    with pipeline_at(data, stages["drop"]):
        assert runner.invoke(app, ["verify"]).exit_code == 0


# -- kill -9 at each stage and before each atomic rename, then a rerun ---------------------------

# Where a run is killed: when a log line appears (a stage), or just before an atomic rename
# (flows/layers/files.py `replace`, `<point>[:<n>]`: the n-th rename at that point).
KILLS = {
    "stage-extract": ("log", "stage extract: start"),
    "stage-clean": ("log", "stage clean: start"),
    "stage-gate": ("log", "gate attendance period="),
    "stage-dbt": ("log", "START sql table model"),
    "stage-publish": ("log", "stage publish: start"),
    "rename-landing": ("rename", "landing"),  # a landed load's folder
    "rename-clean": ("rename", "clean"),  # a clean partition swapped in
    "rename-quarantine": ("rename", "quarantine"),
    "rename-audit-loads": ("rename", "audit-loads"),
    "rename-fingerprint": ("rename", "fingerprint"),  # dbt built, its fingerprint not yet kept
    "rename-publish-marts": ("rename", "publish-marts"),
    "rename-publish-parquet": ("rename", "publish-parquet"),  # marts.duckdb already swapped
    "rename-run-record": ("rename", "audit-runs:3"),  # published; the run's end not recorded
}
# `make test` kills a run before the clean swap; `make test-scenarios` at every other point
CORE_KILLS = {"rename-clean"}
PUBLISHED_BEFORE_KILL = {"rename-publish-parquet", "rename-run-record"}
# What `status` says right after the kill: current when nothing cleaned is unpublished
# (killed before the first landing, or after publishing). A kill at the extract log line
# may land a file or not before the signal arrives: not asserted.
CURRENT_AFTER_KILL = {"rename-landing": True, "rename-run-record": True, "stage-extract": None}


def run_env(data: Path, drop: Path, **extra: str) -> dict[str, str]:
    """The environment of a `lagesbild run` process against the session's Prefect API."""
    from prefect.settings import PREFECT_API_URL

    return {
        **os.environ,
        "LAGESBILD_DATA_DIR": str(data),
        "LAGESBILD_DROP_DIR": str(drop),
        "LAGESBILD_PSEUDONYM_KEY": TEST_KEY,
        "LAGESBILD_DBT_DOCS": "false",
        "LAGESBILD_MIN_FILE_AGE_SECONDS": "0",  # the fixture wrote October's files just now
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "200",
        **extra,
    }


def leftovers(data: Path) -> list[str]:
    """What a run must never leave: temporary files and folders, staging folders, stray links
    and half-published files (a parquet folder newer than the served one), empty partition
    folders. The folder served before the last publish is kept for its readers."""
    served = (data / "warehouse/marts").resolve()
    found = [
        *data.glob("*/**/.*.tmp"),
        *data.glob("clean/.*-staging-*"),
        *data.glob("warehouse/.marts.*"),
        *data.glob("warehouse/.work.fingerprint.*"),
        *[p for p in data.glob("warehouse/marts-*") if p.stat().st_mtime > served.stat().st_mtime],
        *[
            p
            for layer in ("landing", "clean", "quarantine")
            for p in (data / layer).rglob("*")
            if p.is_dir() and not any(p.iterdir())
        ],
    ]
    return sorted(str(p.relative_to(data)) for p in found)


def served_files(data: Path) -> dict[str, object]:
    """Every table of marts.duckdb (rows in order) and the bytes of every served parquet file."""
    con = duckdb.connect(str(data / "warehouse/marts.duckdb"), read_only=True)
    try:
        names = [r[0] for r in con.execute("select table_name from duckdb_tables()").fetchall()]
        tables = {n: con.sql(f'from "{n}" order by all').pl() for n in sorted(names)}
    finally:
        con.close()
    parquet = {p.name: p.read_bytes() for p in sorted((data / "warehouse/marts").glob("*.parquet"))}
    return {"tables": tables, "parquet": parquet}


def assert_byte_identical(a: dict, b: dict) -> None:
    assert a["tables"].keys() == b["tables"].keys()
    assert not differing_marts(a["tables"], b["tables"]), difference(a["tables"], b["tables"])
    assert a["parquet"].keys() == b["parquet"].keys() == {f"{t}.parquet" for t in a["tables"]}
    for name, content in a["parquet"].items():
        assert content == b["parquet"][name], name


def status_output(data: Path, drop: Path) -> str:
    from typer.testing import CliRunner

    from lagesbild.cli import app

    with pipeline_at(data, drop):
        result = CliRunner().invoke(app, ["status"], env={"COLUMNS": "200"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.output


def test_two_identical_runs_publish_byte_identical_marts(stages):
    """The reference run again, on a copy of the same baseline: every table of marts.duckdb
    and every parquet byte equal (comparison means are summed exactly, parquet is ordered)."""
    data = copy_of(stages, "again")
    with pipeline_at(data, stages["drop"]):
        assert nightly(return_state=True).is_completed()
    assert_byte_identical(served_files(data), served_files(stages["reference"]))
    assert leftovers(data) == leftovers(stages["reference"]) == []


@pytest.mark.parametrize(
    "kill", [k if k in CORE_KILLS else pytest.param(k, marks=pytest.mark.scenario) for k in KILLS]
)
def test_a_run_killed_anywhere_heals_with_the_next_run(stages, kill):
    how, where = KILLS[kill]
    data = copy_of(stages, f"killed-{kill}")
    baseline = served_files(data)
    hook = {"LAGESBILD_TEST_KILL_BEFORE": where} if how == "rename" else {}
    run = subprocess.Popen(
        [sys.executable, "-m", "lagesbild.cli", "run"],
        env=run_env(data, stages["drop"], **hook),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline, seen = time.monotonic() + 300, []
    for line in run.stdout:
        seen.append(line)
        if how == "log" and where in line:
            os.kill(run.pid, signal.SIGKILL)
            break
        assert time.monotonic() < deadline, "".join(seen[-20:])
    run.wait()
    assert run.returncode == -signal.SIGKILL, "".join(seen[-20:])

    # The served marts are the old ones or, once swapped, the new ones: never a mix.
    complete = served_files(stages["reference"])
    served = marts_content(data / "warehouse/marts.duckdb")
    if kill in PUBLISHED_BEFORE_KILL:
        assert same_marts(served, marts_content(stages["reference"] / "warehouse/marts.duckdb"))
    else:
        assert_byte_identical(served_files(data), baseline)
    # `status` tells what happened: the run was killed; current only once its marts are served
    status = status_output(data, stages["drop"])
    assert "Crashed" in status and "The last run (nightly) was killed" in status, status
    current = CURRENT_AFTER_KILL.get(kill, False)
    if current is not None:
        verdict = "current" if current else "behind"
        assert f"Served marts {data / 'warehouse/marts.duckdb'}: {verdict}" in status, status
    if how == "rename":
        assert leftovers(data), "a kill before a rename leaves what it was about to rename"

    with pipeline_at(data, stages["drop"]):
        assert nightly(return_state=True).is_completed()
    assert leftovers(data) == []
    assert_byte_identical(served_files(data), complete)
    assert clean_content(data).keys() == clean_content(stages["reference"]).keys()
    for period, frame in clean_content(stages["reference"]).items():
        assert clean_content(data)[period].equals(frame), period
    runs = read_runs(data / "audit")
    assert runs["status"].to_list()[-2:] == ["Crashed", "Completed"]
    if kill == "rename-run-record":  # killed after its publish and report: nothing new to do
        assert runs["note"][-1] == "nothing new: stages skipped (dbt, publish, report)"
        assert runs["published_at"][-2] is not None  # the killed run's publish, recorded
    else:
        assert runs["published_at"][-1] is not None
    assert "current" in status_output(data, stages["drop"])
    # Nothing lost or doubled: every file landed once, each load accounted once.
    landed = [json.loads(p.read_text())["file"] for p in (data / "landing").rglob("_manifest.json")]
    assert sorted(landed) == sorted(set(landed))
    exports = [*stages["drop"].glob("attendance/*/*"), *stages["drop"].glob("housing/*/*")]
    assert len(landed) == len(exports)
    audit = read_audit(data / "audit")
    current = audit.filter(pl.col("is_current"))
    assert current["load_id"].is_unique().all() and set(current["status"]) == {"cleaned"}
    assert current.height == len(list((data / "landing").rglob("_manifest.json")))
    assert (
        current["rows_received"]
        == current["rows_clean"] + current["rows_quarantined"] + current["rows_duplicate"]
    ).all()
    reference = read_audit(stages["reference"] / "audit").filter(pl.col("is_current"))
    for column in ("rows_received", "rows_clean", "rows_quarantined", "rows_duplicate"):
        assert current[column].sum() == reference[column].sum(), column


@pytest.mark.scenario
def test_the_temporary_prefect_api_ends_with_a_killed_run(stages):
    """Without PREFECT_API_URL, `lagesbild run` starts Prefect's temporary API server; killed
    alone (as the OOM killer does), the run must not leave that server running."""
    data = copy_of(stages, "orphans")
    env = run_env(data, stages["drop"])
    env.pop("PREFECT_API_URL", None)
    env["PREFECT_HOME"] = str(data / "prefect-home")  # its own database, not the shared ~/.prefect
    run = subprocess.Popen(
        [sys.executable, "-m", "lagesbild.cli", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: what it started is found by it
    )
    deadline, seen = time.monotonic() + 300, []
    for line in run.stdout:
        seen.append(line)
        if "stage extract: start" in line:
            break
        assert time.monotonic() < deadline, "".join(seen[-20:])

    def group() -> list[int]:
        members = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == run.pid and fields[0] != "Z":
                members.append(int(stat.parent.name))
        return members

    try:
        assert len(group()) >= 2, "".join(seen[-20:])  # the run and its temporary API server
        os.kill(run.pid, signal.SIGKILL)  # the main process only
        run.wait()
        deadline = time.monotonic() + 20
        while group() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert group() == []
    finally:
        if group():
            os.killpg(run.pid, signal.SIGKILL)  # what this test started, if it failed
    assert "Crashed" in status_output(data, stages["drop"])


# -- status ------------------------------------------------------------------------------------


def test_status_and_the_freshness_mart(stages):
    from typer.testing import CliRunner

    from lagesbild.cli import app

    data = stages["reference"]
    calendar = pl.read_csv(stages["drop"] / "reference/school_calendar.csv", infer_schema=False)
    calendar = calendar.with_columns(pl.col("date").str.to_date())
    school = calendar.filter(pl.col("is_school_day") == "true")
    last_day = school.filter(pl.col("date") <= THROUGH)["date"].max()  # 24 Oct: höstlov follows
    run_date = read_runs(data / "audit")["run_date"][-1]  # today, unless the run crossed midnight
    behind = school.filter((pl.col("date") > last_day) & (pl.col("date") < run_date)).height
    freshness = marts_content(data / "warehouse/marts.duckdb")["mart_source_freshness"]
    attendance = freshness.filter(pl.col("source_type") == "attendance").sort("source")
    assert attendance["source"].to_list() == ["ist_xlsx", "skola24_csv"]
    outdated = run_date > calendar["date"].max()
    for row in attendance.iter_rows(named=True):
        assert row["latest_day"] == last_day
        assert row["lag"] == behind and row["lag_unit"] == "school_days"
        assert row["calendar_through"] == calendar["date"].max()
        assert row["is_calendar_outdated"] == outdated
        assert row["freshness_status"] == (
            "calendar_outdated" if outdated else "behind" if behind > 2 else "current"
        )
        assert row["is_stale"] == (row["freshness_status"] != "current")
    # One row per housing company too, judged in calendar days.
    housing = freshness.filter(pl.col("source_type") == "housing")
    assert housing.height == len(list(stages["drop"].glob("housing/*/")))
    assert set(housing["lag_unit"]) == {"days"}

    with pipeline_at(data, stages["drop"]):
        result = CliRunner().invoke(app, ["status"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "current" in result.output and "skola24_franvaro_2025-10.csv" in result.output
    assert "is stale" in result.output and "add the new school year" in result.output


def test_a_file_whose_rows_are_mostly_rejected_blocks_the_run(stages):
    """An export in a date format the layout does not know must not vanish into quarantine."""
    data = copy_of(stages, "unreadable", "reference")
    drop = stages["root"] / "drop-unreadable"
    shutil.copytree(stages["drop"], drop)
    august = sorted(drop.glob("attendance/skola24/*2025-08.csv"))[0]
    lines = august.read_bytes().decode("cp1252").split("\r\n")
    day_first = [re.sub(r";(\d{4})-(\d{2})-(\d{2});", r";\3/\2/\1;", line) for line in lines]
    (august.parent / "skola24_franvaro_2025-08_ny.csv").write_bytes(
        "\r\n".join(day_first).encode("cp1252")
    )
    served = files_of(data / "warehouse")
    with pipeline_at(data, drop):
        state = nightly(return_state=True)
    assert state.is_failed() and "quarantine_share" in state.message
    assert files_of(data / "warehouse") == served
    failed = read_audit(data / "audit").filter(pl.col("file").str.contains("_ny"))
    assert failed["status"].to_list() == ["gate_failed"] and failed["gate"].to_list() == ["failed"]
    assert failed["rows_quarantined"].to_list() == failed["rows_received"].to_list()


def test_a_header_only_file_and_a_retracted_bad_load_never_block_a_later_night(stages):
    """Files without rows land nothing and say so; a bad load fails a night, is retracted
    (the retraction killed once, then run again), and the next nights complete with exactly
    the marts of the files without it. The bad file stays in the drop folder, not landed again."""
    from typer.testing import CliRunner

    from lagesbild.cli import app

    data = copy_of(stages, "retract", "reference")
    drop = stages["root"] / "drop-retract"
    shutil.copytree(stages["drop"], drop)
    folder = drop / "attendance/skola24"
    august = sorted(folder.glob("*2025-08.csv"))[0]
    lines = august.read_bytes().decode("cp1252").split("\r\n")
    (folder / "skola24_franvaro_tom.csv").write_bytes((lines[0] + "\r\n").encode("cp1252"))
    (folder / "skola24_franvaro_noll.csv").write_bytes(b"")
    day_first = [re.sub(r";(\d{4})-(\d{2})-(\d{2});", r";\3/\2/\1;", line) for line in lines]
    bad = folder / "skola24_franvaro_2025-08_ny.csv"
    bad.write_bytes("\r\n".join(day_first).encode("cp1252"))
    landed_before = len(list((data / "landing").rglob("_manifest.json")))
    served = files_of(data / "warehouse")

    with pipeline_at(data, drop):
        state = nightly(return_state=True)
    assert state.is_failed() and "quarantine_share" in state.message
    assert files_of(data / "warehouse") == served
    # the files without rows landed nothing; the bad one landed (and failed the gate)
    assert len(list((data / "landing").rglob("_manifest.json"))) == landed_before + 1

    # killed just before the audit says `retracted` (its rows had no usable date: no clean
    # period held them), then run again
    kill = {"LAGESBILD_TEST_KILL_BEFORE": "audit-loads:2", "LAGESBILD_USER": "anna"}
    killed = subprocess.run(
        [sys.executable, "-m", "lagesbild.cli", "retract", bad.name, "--reason", "day-first"],
        env=run_env(data, drop, **kill),
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    unfinished = read_audit(data / "audit").filter(pl.col("is_current"))
    assert unfinished.filter(pl.col("file").str.ends_with(bad.name))["status"].to_list() == [
        "retracting"
    ]
    assert "The retraction of load" in " ".join(status_output(data, drop).split())
    with pipeline_at(data, drop, user="anna"):
        result = CliRunner().invoke(
            app, ["retract", bad.name, "--reason", "day-first"], env={"COLUMNS": "200"}
        )
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "Retracted load" in flat and f"(attendance/skola24/{bad.name}) by anna" in flat
    assert "attendance rebuilt without it; it had rows in no clean period" in flat
    assert len(list((data / "landing").rglob("_manifest.json"))) == landed_before

    for _ in range(2):  # the next nights complete; the bad file is not landed again
        with pipeline_at(data, drop):
            assert nightly(return_state=True).is_completed()
    assert same_marts(
        marts_content(data / "warehouse/marts.duckdb"),
        marts_content(stages["reference"] / "warehouse/marts.duckdb"),
    )
    assert leftovers(data) == []
    assert len(list((data / "landing").rglob("_manifest.json"))) == landed_before
    current = read_audit(data / "audit").filter(pl.col("is_current"))
    mine = current.filter(pl.col("file").str.ends_with(bad.name))
    assert mine.select("status", "reason", "by").rows() == [("retracted", "day-first", "anna")]
    assert set(current.filter(~pl.col("file").str.ends_with(bad.name))["status"]) == {"cleaned"}
    assert "Served marts" in status_output(data, drop)
