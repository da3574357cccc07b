"""Faults in the layers' files, without a flow: a kill before a rename leaves no visible
intermediate state, the next run sweeps what is left, run records tell a killed run, damaged
files are named. (The kill -9 of whole runs: tests/flows/test_operations.py.)"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from flows.layers.audit import append_audit, read_audit, read_runs, start_run, update_run
from flows.layers.files import CorruptFile, sweep_leftovers
from flows.layers.landing import land, landed_loads
from flows.layers.manifest import Manifest
from lagesbild.settings import Paths

STAGE_AND_SWAP = """
import sys
from pathlib import Path
import polars as pl
from flows.layers.files import Staging
staging = Staging(Path(sys.argv[1]), "att", "att", sys.argv[2])
for period in sys.argv[3:]:
    staging.stage(f"period={period}/part-0.parquet", pl.DataFrame({"period": [period]}))
staging.swap(remove_others=True)
staging.discard()
"""


def swap_in_process(clean: Path, run: str, periods: list[str], kill: str | None = None) -> int:
    env = {**os.environ, "LAGESBILD_TEST_KILL_BEFORE": kill} if kill else dict(os.environ)
    done = subprocess.run(
        [sys.executable, "-c", STAGE_AND_SWAP, str(clean), run, *periods], env=env, check=False
    )
    return done.returncode


def served(clean: Path) -> dict[str, list[str]]:
    """Each served partition folder and the periods its file holds."""
    return {
        folder.name: sorted(
            pl.read_parquet(folder / "part-0.parquet")["period"].to_list()
            if (folder / "part-0.parquet").exists()
            else []
        )
        for folder in sorted((clean / "att").iterdir())
    }


@pytest.mark.parametrize("kill", ["clean:1", "clean:2", "clean-remove"])
def test_a_swap_killed_before_any_rename_shows_no_empty_partition(tmp_path, kill):
    clean = tmp_path / "clean"
    assert swap_in_process(clean, "r1", ["2025-08", "2025-09"]) == 0
    # the next build: September again, October new, August gone (a dataset rebuilt whole)
    assert swap_in_process(clean, "r2", ["2025-09", "2025-10"], kill) == -signal.SIGKILL
    partitions = served(clean)
    assert all(partitions.values()), partitions  # no folder without its file
    assert set(partitions) <= {"period=2025-08", "period=2025-09", "period=2025-10"}
    paths = Paths(tmp_path, tmp_path / "drop")
    assert sweep_leftovers(paths) == ["clean/.att-staging-r2"]
    assert swap_in_process(clean, "r3", ["2025-09", "2025-10"]) == 0
    assert served(clean) == {"period=2025-09": ["2025-09"], "period=2025-10": ["2025-10"]}
    assert sorted(p.name for p in clean.iterdir()) == ["att"]


def test_the_sweep_removes_what_killed_runs_left_and_keeps_what_is_served(tmp_path, caplog):
    paths = Paths(tmp_path, tmp_path / "drop")
    left = [
        "landing/attendance_export/skola24_csv/period=2025-10/.load_id=x.tmp/data.parquet",
        "audit/.loads.parquet.0f.tmp",
        "audit/.runs.parquet.0f.tmp",
        "quarantine/attendance/period=2025-10/load_id=x/.quarantine.parquet.0f.tmp",
        "clean/.attendance-staging-run/period=2025-10/part-0.parquet",
        "warehouse/.marts.0f.duckdb",
        "warehouse/.work.fingerprint.0f",
        "reports/lagesbild/.index.0f.html",
    ]
    kept = [
        "landing/attendance_export/skola24_csv/period=2025-09/load_id=y/data.parquet",
        "audit/loads.parquet",
        "clean/attendance/period=2025-09/part-0.parquet",
        "warehouse/marts.duckdb",
        "warehouse/marts-old/a.parquet",
        "warehouse/marts-served/a.parquet",
    ]
    for name in kept[:-1] + left:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / "clean/attendance/period=2025-10").mkdir()  # left empty by an older version
    (tmp_path / "warehouse/marts-served").mkdir()
    (tmp_path / kept[-1]).write_text("x")
    (tmp_path / "warehouse/marts").symlink_to("marts-served")
    (tmp_path / "warehouse/.marts.1f").symlink_to("marts-partial")  # a link never swapped in
    os.utime(tmp_path / "warehouse/marts-old", (0, 0))  # the folder served before
    (tmp_path / "warehouse/marts-partial").mkdir()  # a publish killed while copying
    with caplog.at_level(logging.WARNING, logger="flows.layers.files"):
        removed = sweep_leftovers(paths)
    assert sorted(removed) == sorted(
        [
            "landing/attendance_export/skola24_csv/period=2025-10/.load_id=x.tmp",
            "landing/attendance_export/skola24_csv/period=2025-10",
            "audit/.loads.parquet.0f.tmp",
            "audit/.runs.parquet.0f.tmp",
            "quarantine/attendance/period=2025-10/load_id=x/.quarantine.parquet.0f.tmp",
            "quarantine/attendance/period=2025-10/load_id=x",
            "quarantine/attendance/period=2025-10",
            "quarantine/attendance",
            "clean/.attendance-staging-run",
            "clean/attendance/period=2025-10",
            "warehouse/.marts.0f.duckdb",
            "warehouse/.marts.1f",
            "warehouse/marts-partial",
            "warehouse/.work.fingerprint.0f",
            "reports/lagesbild/.index.0f.html",
        ]
    )
    assert len(caplog.records) == len(removed)
    assert "removed audit/.loads.parquet.0f.tmp, left by an interrupted run" in caplog.text
    assert all((tmp_path / name).exists() for name in kept)
    assert sweep_leftovers(paths) == []


def run_row(run_id: str) -> dict:
    now = datetime.now(UTC)
    return {"run_id": run_id, "flow": "nightly", "run_date": date.today(), "started_at": now}


def test_a_run_whose_process_is_gone_is_recorded_crashed(tmp_path):
    audit = tmp_path / "audit"
    code = (
        "import sys; from pathlib import Path; from datetime import UTC, date, datetime;"
        "from flows.layers.audit import start_run;"
        "start_run(Path(sys.argv[1]), {'run_id': 'killed', 'flow': 'nightly',"
        " 'run_date': date.today(), 'started_at': datetime.now(UTC)})"
    )
    subprocess.run([sys.executable, "-c", code, str(audit)], check=True)  # then it ended
    start_run(audit, run_row("mine"))
    runs = read_runs(audit)
    assert runs["status"].to_list() == ["Crashed", "Running"]  # this process still runs
    assert "ended without finishing: it was killed" in runs["error"][0]
    published = datetime.now(UTC)
    update_run(audit, "mine", published=True, published_at=published)
    update_run(audit, "mine", status="Completed", finished_at=datetime.now(UTC))
    mine = read_runs(audit).row(1, named=True)
    assert (mine["status"], mine["published"], mine["published_at"]) == (
        "Completed",
        True,
        published,
    )
    assert mine["pid"] == os.getpid()


def test_a_sum_over_the_current_audit_rows_counts_each_load_once(tmp_path):
    audit = tmp_path / "audit"
    append_audit(
        audit, [{"load_id": "a", "rows_received": 10}, {"load_id": "b", "rows_received": 5}]
    )
    append_audit(audit, [{"load_id": "a", "rows_received": 10}])  # a backfill cleans a again
    rows = read_audit(audit)
    assert rows["rows_received"].sum() == 25
    assert rows.filter(pl.col("is_current"))["rows_received"].sum() == 15
    assert rows["is_current"].to_list() == [False, True, True]


def test_a_damaged_landed_file_is_named_with_its_repair(tmp_path):
    manifest = Manifest(
        source="attendance_export",
        dataset="skola24_csv",
        load_id="20251001T000000000000-abc",
        file="attendance/skola24/skola24_franvaro_2025-10.csv",
        partition_kind="month",
        partitions=["2025-10"],
        sha256="0" * 64,
        rows=3,
        extracted_at="2025-10-01T00:00:00+00:00",
        columns=["a"],
    )
    load = land(tmp_path, manifest, pl.DataFrame({"a": [1, 2, 3]}))
    (read,) = landed_loads(tmp_path, "attendance_export")
    assert read.manifest.data_size == load.data_file.stat().st_size
    read.verify()
    content = bytearray(load.data_file.read_bytes())
    content[10] ^= 0xFF  # same size, other bytes: only the hash tells
    load.data_file.write_bytes(bytes(content))
    read.check()
    with pytest.raises(CorruptFile, match="differs from what was landed") as damaged:
        read.verify()
    assert str(load.data_file) in str(damaged.value)
    assert f"Move {load.folder} out of landing, then run `lagesbild run`" in str(damaged.value)
    load.data_file.write_bytes(bytes(content[:-20]))  # truncated: the cheap check tells
    with pytest.raises(CorruptFile, match="were written: the file is damaged"):
        read.read()


def test_status_prints_a_failed_runs_error_verbatim_and_a_killed_run_as_crashed(
    tmp_path, monkeypatch
):
    from typer.testing import CliRunner

    from lagesbild.cli import app

    audit = tmp_path / "audit"
    error = "DbtFailed: dbt build failed\nmodel.lagesbild.mart_x: error [/] Binder Error: [red]x"
    start_run(audit, run_row("failed"))
    update_run(audit, "failed", status="Failed", error=error, finished_at=datetime.now(UTC))
    start_run(audit, run_row("killed"))
    update_run(audit, "killed", pid=2**22 + 1)  # above Linux's pid_max: no such process
    monkeypatch.setenv("LAGESBILD_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["status"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Crashed" in result.output and "The last run (nightly) was killed:" in result.output
    assert "ended without finishing: it was killed" in result.output
    start_run(audit, run_row("running"))  # this process: a run still going
    update_run(audit, "killed", status="Failed", error=error)
    result = CliRunner().invoke(app, ["status"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"A nightly run is running (pid {os.getpid()} on " in result.output
    assert error in result.output  # markup-like text printed as it is
    assert "No marts are published yet." in result.output
