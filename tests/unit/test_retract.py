"""Failed loads and retractions in the one clean path (flows/layers/clean.py, flows/retract.py),
on the small dataset of test_layers (GX runs for real; no Prefect). A kill -9 is a real one,
in a child process, through the rename hook of flows/layers/files.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import polars as pl
import pytest

from flows.layers.audit import read_audit
from flows.layers.clean import LoadFailed
from flows.layers.files import KILL_BEFORE, sweep_leftovers
from flows.layers.landing import Load, landed_loads
from flows.retract import RetractError, begin, find_load
from lagesbild.settings import PROJECT_ROOT
from tests.unit.test_layers import _land, layer  # noqa: F401 - the fixture

SEPTEMBER = "toy/period=2025-09/part-0.parquet"


def _loads(paths) -> dict[str, Load]:
    return {load.load_id: load for load in landed_loads(paths.landing, "toy")}


def _state(paths) -> dict:
    """What a retraction must leave, whatever interrupted it: clean rows, quarantine files,
    landed loads, the current audit status per load, no leftovers."""
    audit = read_audit(paths.audit).filter(pl.col("is_current")).sort("load_id")
    return {
        "clean": {
            str(p.relative_to(paths.clean)): sorted(pl.read_parquet(p).rows())
            for p in sorted(paths.clean.rglob("*.parquet"))
        },
        "quarantine": sorted(
            str(p.relative_to(paths.quarantine)) for p in paths.quarantine.rglob("*.parquet")
        ),
        "landing": sorted(_loads(paths)),
        "audit": audit.select("load_id", "status", "reason", "by").rows(),
        "hidden": sorted(str(p) for p in paths.data.rglob(".*")),
    }  # fmt: skip


def _two_loads(paths, run):
    """L1: September (a, b; c quarantined); L2: September (e) and October (d), quarantine (f)."""
    _land(paths.landing, "L1", "export", [("a", 1, "2025-09"), ("b", 2, "2025-09"),
                                          ("c", None, "2025-09")])  # fmt: skip
    _land(paths.landing, "L2", "export", [("e", 3, "2025-09"), ("d", 4, "2025-10"),
                                          ("f", None, "2025-09")])  # fmt: skip
    run("r1")
    assert pl.read_parquet(paths.clean / SEPTEMBER).get_column("key").sort().to_list() == [
        "a", "b", "e",
    ]  # fmt: skip


def test_a_retracted_load_leaves_its_periods_quarantine_and_landing(layer):  # noqa: F811
    paths, run = layer
    _two_loads(paths, run)
    begin(paths.audit, _loads(paths)["L2"], "wrong school year", "anna", "retract-1")
    outcome = run("r2")
    assert outcome.loads == []  # nothing cleaned anew: L1 is accounted as it was
    state = _state(paths)
    # September rebuilt from L1 alone; October had only L2: removed
    assert state["clean"] == {"toy/period=2025-09/part-0.parquet": [("a", 1, "export"),
                                                                   ("b", 2, "export")]}  # fmt: skip
    assert state["quarantine"] == ["toy/period=2025-09/load_id=L1/quarantine.parquet"]
    assert state["landing"] == ["L1"]
    assert state["audit"] == [
        ("L1", "cleaned", None, None),
        ("L2", "retracted", "wrong school year", "anna"),
    ]
    assert state["hidden"] == []
    history = read_audit(paths.audit).filter(pl.col("load_id") == "L2")
    assert history["status"].to_list() == ["cleaned", "retracting", "retracted"]
    assert history["sha256"].to_list()[1:] == ["L2", "L2"]  # the landed file's content
    assert run("r3").loads == []  # a later run neither cleans nor counts it again


def test_a_load_whose_rules_fail_is_audited_failed_until_it_is_retracted(layer):  # noqa: F811
    paths, run = layer
    _land(paths.landing, "L1", "export", [("a", 1, "2025-09")])
    _land(paths.landing, "L2", "export", [("b", 2, "2025-09")])
    broken = _loads(paths)["L2"]
    frame = pl.read_parquet(broken.data_file).drop("value")  # what the rules need is missing
    frame.write_parquet(broken.data_file)
    (broken.folder / "_manifest.json").write_text(
        broken.manifest.model_copy(update={"data_size": broken.data_file.stat().st_size,
                                           "data_sha256": None}).model_dump_json()
    )  # fmt: skip
    for attempt in ("r1", "r2"):  # every run fails the same way, naming the file
        with pytest.raises(LoadFailed) as failed:
            run(attempt)
        message = str(failed.value)
        assert message.startswith("toy: 1 landed load(s) could not be cleaned and nothing")
        assert "L2.csv (load L2): the cleaning rules failed on it (ColumnNotFoundError)" in message
        assert "`lagesbild retract LOAD_ID --reason ...`" in message
    assert not (paths.clean / "toy").exists()
    audit = read_audit(paths.audit)
    assert audit.select("run_id", "load_id", "status").rows() == [
        ("r1", "L2", "failed"),
        ("r2", "L2", "failed"),
    ]
    assert audit["reason"][0] == (
        "the cleaning rules failed on it (ColumnNotFoundError); no row was cleaned. See how its "
        "file parses with `lagesbild check-layout FILE`"
    )
    begin(paths.audit, _loads(paths)["L2"], "unreadable", "anna", "retract-1")
    outcome = run("r3")
    assert [row["load_id"] for row in outcome.loads] == ["L1"]
    assert _state(paths)["audit"] == [("L1", "cleaned", None, None),
                                      ("L2", "retracted", "unreadable", "anna")]  # fmt: skip
    assert _state(paths)["landing"] == ["L1"]


def test_find_load_by_id_file_path_or_name_and_refuse_an_ambiguous_name(layer):  # noqa: F811
    paths, _ = layer
    _land(paths.landing, "L1", "export", [("a", 1, "2025-09")])
    loads = list(_loads(paths).values())
    assert find_load(loads, "L1").load_id == "L1"
    assert find_load(loads, "L1.csv").load_id == "L1"
    with pytest.raises(RetractError, match=r"no landed load has the id or file 'x\.csv'"):
        find_load(loads, "x.csv")
    twice = [loads[0], Load(loads[0].manifest.model_copy(update={"load_id": "L9"}), None)]
    with pytest.raises(RetractError, match=r"'L1.csv' names 2 landed loads: L1 \(L1.csv\), L9"):
        find_load(twice, "L1.csv")


# A retraction killed just before each rename it makes: the swap of a rebuilt period, the
# removal of an emptied one, the audit's `retracted` row, the landing folder's removal.
KILL_POINTS = ["clean", "clean-remove", "audit-loads", "retract-landing"]

CHILD = """
import json, sys
from pathlib import Path
from flows.layers.clean import clean_dataset
from lagesbild.settings import Paths
from tests.unit.test_layers import Toy
root = Path(sys.argv[1])
paths = Paths(root / "data", root / "drop")
clean_dataset(Toy(paths.landing), paths, root / "expectations", "killed", 0.5)
"""


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_retraction_killed_before_any_rename_is_finished_by_the_next_run(layer, point):  # noqa: F811
    paths, run = layer
    _two_loads(paths, run)
    begin(paths.audit, _loads(paths)["L2"], "wrong school year", "anna", "retract-1")
    # a script file, not `python -c`: a process without a main file looks like a doctest run
    # to some libraries (pyspark without its connect extra ended it at once)
    script = paths.data.parent / "killed_clean.py"
    script.write_text(CHILD)
    child = subprocess.run(
        [sys.executable, str(script), str(paths.data.parent)],
        cwd=PROJECT_ROOT,
        env={**os.environ, KILL_BEFORE: point, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    # until it is finished the audit says so: the load is on its way out, never cleaned again
    assert ("L2", "retracting") in [row[:2] for row in _state(paths)["audit"]] or (
        point == "retract-landing"
    )
    sweep_leftovers(paths)  # as every run and retraction starts
    run("r2")
    state = _state(paths)
    assert state["clean"] == {SEPTEMBER: [("a", 1, "export"), ("b", 2, "export")]}
    assert state["quarantine"] == ["toy/period=2025-09/load_id=L1/quarantine.parquet"]
    assert state["landing"] == ["L1"]
    assert state["audit"] == [
        ("L1", "cleaned", None, None),
        ("L2", "retracted", "wrong school year", "anna"),
    ]
    assert state["hidden"] == []


def test_the_command_names_an_unknown_load_in_one_line(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from lagesbild.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LAGESBILD_DROP_DIR", str(tmp_path / "drop"))
    monkeypatch.setenv("LAGESBILD_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    result = runner.invoke(app, ["retract", "export.csv", "--reason", "wrong month"])
    assert result.exit_code == 2, result.output
    assert " ".join(result.output.split()) == (
        "no landed load has the id or file 'export.csv'. Load ids and files are in "
        "audit/loads.parquet and the run summaries (`lagesbild status` shows the last ones)."
    )
    result = runner.invoke(app, ["retract", "export.csv", "--reason", " "])
    assert result.exit_code == 2 and "say why the load is retracted" in result.output


@pytest.mark.parametrize("layout", ["skola24_csv", "ist_xlsx"])
def test_an_empty_load_landed_by_an_older_version_cleans_to_nothing(layout):
    """Header-only exports land nothing now; one landed before (0 rows, text columns) must
    not crash cleaning: it is accounted 0 = 0 + 0 + 0 and touches no period."""
    from datetime import date

    from connectors.attendance_export.layouts import load_layouts
    from flows.attendance.rules import split_load

    chosen = load_layouts(PROJECT_ROOT / "connectors/attendance_export/layouts.yml")[layout]
    landed = [c for c in chosen.columns if c != chosen.source_column("personal_id")]
    schema = {**dict.fromkeys(landed, pl.String), "_source_row": pl.Int64}
    empty = pl.DataFrame(schema={**schema, "pupil_key": pl.String, "pupil_id_kind": pl.String})
    result = split_load(empty, chosen, {"12345678"}, "L1", date(2025, 10, 31))
    assert (result.received, result.clean, result.quarantined, result.duplicates) == (0, 0, 0, 0)
    assert result.periods == [] and result.rows.is_empty()


def test_a_cleaned_load_that_fails_later_is_cleaned_and_accounted_again_once_fixed(layer):  # noqa: F811
    """A load cleaned before can fail when its period is rebuilt (its landed file damaged);
    repaired, it is accounted again, so the audit's current row says `cleaned`."""
    paths, run = layer
    _land(paths.landing, "L1", "export", [("a", 1, "2025-09")])
    run("r1")
    data = _loads(paths)["L1"].data_file
    saved = data.read_bytes()
    data.write_bytes(saved[:-10])  # truncated
    _land(paths.landing, "L2", "export", [("b", 2, "2025-09")])  # rebuilds September
    with pytest.raises(LoadFailed, match=r"L1\.csv \(load L1\): .*is .*(damaged|not a complete)"):
        run("r2")
    data.write_bytes(saved)
    assert sorted(row["load_id"] for row in run("r3").loads) == ["L1", "L2"]
    assert _state(paths)["audit"] == [("L1", "cleaned", None, None), ("L2", "cleaned", None, None)]
