"""What decides a quiet night and a partial dbt build (flows/warehouse/dbt.py), without
running dbt: the run-date rule, the clean folders' digests, the selection."""

from __future__ import annotations

import os
import re
import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from flows.warehouse import dbt
from lagesbild.settings import PROJECT_ROOT, Settings

PROJECT = PROJECT_ROOT / "dbt_project"


def test_only_the_run_date_marts_depend_on_the_run_date():
    """The rule of a new run date: only RUN_DATE_MODELS use it. A model that starts using it
    (or today's date) must be added there, or a quiet night would keep it stale."""
    users = set()
    for path in (PROJECT / "models").rglob("*.sql"):
        sql = path.read_text()
        if re.search(r"as_of_date\(\)", sql):
            users.add(path.stem)
        assert not re.search(r"current_date|current_timestamp|now\(\)|today\(\)", sql, re.I), path
    assert users == set(dbt.RUN_DATE_MODELS) == {"mart_source_freshness"}
    for path in (PROJECT / "macros").glob("*.sql"):  # only the as_of_date macro reads a date
        if "current_timestamp" in path.read_text():
            assert path.name == "as_of_date.sql"


def write(path: Path, frame: pl.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)


def test_a_clean_folder_digest_follows_content_or_partition_metadata(tmp_path):
    areas = tmp_path / "reference/areas.parquet"
    write(areas, pl.DataFrame({"area_code": ["A", "B"]}))
    digest = dbt._clean_folder_digest(tmp_path / "reference")
    os.utime(areas, ns=(1, 1))  # rewritten with the same rows by every run: same digest
    write(areas, pl.DataFrame({"area_code": ["A", "B"]}))
    assert dbt._clean_folder_digest(tmp_path / "reference") == digest
    write(areas, pl.DataFrame({"area_code": ["A", "C"]}))
    assert dbt._clean_folder_digest(tmp_path / "reference") != digest

    month = tmp_path / "attendance/period=2025-09/part-0.parquet"
    write(month, pl.DataFrame({"x": [1]}))
    digest = dbt._clean_folder_digest(tmp_path / "attendance")
    (month.parent / ".part-0.parquet.0f.tmp").write_bytes(b"half")  # an unfinished write
    assert dbt._clean_folder_digest(tmp_path / "attendance") == digest
    os.utime(month, ns=(1, 1))  # a partition is rewritten only when its month changed
    assert dbt._clean_folder_digest(tmp_path / "attendance") != digest


STATE = {
    "dbt": "f1",
    "clean": {"attendance": "a1", "housing_work_orders": "h1", "reference": "r1"},
    "run_date": "2025-11-03",
}


def changed(**values) -> dict:
    clean = {**STATE["clean"], **{k: v for k, v in values.items() if k in STATE["clean"]}}
    return {**STATE, **{k: v for k, v in values.items() if k not in clean}, "clean": clean}


@pytest.mark.parametrize(
    ("current", "selected"),
    [
        (STATE, []),
        (changed(attendance="a2"), ["source:attendance+", "path:models/staging/attendance+"]),
        (
            changed(attendance="a2", run_date="2025-11-04"),
            ["source:attendance+", "path:models/staging/attendance+", "mart_source_freshness"],
        ),
        (changed(run_date="2025-11-04"), ["mart_source_freshness"]),
        (
            changed(housing_work_orders="h2"),
            [
                "source:housing.work_orders+",
                "path:models/staging/housing/stg_housing__work_orders.sql+",
            ],
        ),
        (changed(reference="r2"), None),  # not a subgraph: everything
        (changed(attendance="a2", reference="r2"), None),
        (changed(dbt="f2"), None),  # the dbt project, seeds or settings changed
        ({**STATE, "clean": {**STATE["clean"], "statistics": "s1"}}, None),  # a new folder
    ],
)
def test_what_dbt_builds_follows_what_changed(current, selected):
    assert dbt._selection(STATE, current)[0] == selected


def test_without_a_record_everything_is_built():
    assert dbt._selection(None, STATE) == (
        None,
        "no record of the inputs of the last successful build",
    )


def test_a_changed_seed_or_dbt_setting_changes_the_inputs(tmp_path, monkeypatch):
    """Nothing landed, but a goal was edited in a seed (or a dbt setting changed): the state a
    quiet night compares with differs, so the night is not skipped."""
    monkeypatch.setenv("LAGESBILD_DATA_DIR", str(tmp_path / "data"))
    project = tmp_path / "dbt_project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("target", "logs"))
    monkeypatch.setenv("LAGESBILD_DBT_PROJECT_DIR", str(project))
    day = date(2025, 11, 3)
    before = dbt.input_state(Settings(), day)
    assert dbt.input_state(Settings(), day) == before
    goals = project / "seeds/goals/goals.csv"
    goals.write_text(goals.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    after_seed = dbt.input_state(Settings(), day)
    assert after_seed["dbt"] != before["dbt"]
    monkeypatch.setenv("LAGESBILD_SUPPRESSION__MIN_PERSONS", "7")
    assert dbt.input_state(Settings(), day)["dbt"] not in (before["dbt"], after_seed["dbt"])
    assert dbt.input_state(Settings(), date(2025, 11, 4))["run_date"] == "2025-11-04"
