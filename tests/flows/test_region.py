"""Three municipalities on one installation: a Prefect server and two process workers started
here, the deployments generated from one region file, the three nightly runs at once. Each
one's marts equal a run of it alone, their data folders share no file, and the regional layer
builds from copies of the served marts only, with nothing pupil-level in it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from datetime import date
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import duckdb
import pytest

from lagesbild.settings import PROJECT_ROOT
from tests.flows.conftest import pipeline_at
from tests.flows.test_prefect_server import client, free_port, prefect_at, wait_for

# `make test-scenarios`: three municipalities on two Prefect workers, six nightly runs
pytestmark = pytest.mark.scenario

# Small, different municipalities: (code, name, seed, pupils per school year)
MUNICIPALITIES = [
    ("1296", "Ekdala norra", 11, 60),
    ("1297", "Ekdala östra", 12, 90),
    ("1298", "Ekdala södra", 13, 120),
]
THROUGH = date(2025, 10, 31)
POOL = "region-test"


def municipality_file(folder: Path, code: str, name: str, key: Path, drop: Path) -> Path:
    path = folder / "lagesbild.toml"
    path.write_text(
        f'data_dir = "{folder / "data"}"\ndrop_dir = "{drop}"\n'
        f'pseudonym_key_file = "{key}"\nmin_file_age_seconds = 0\ndbt_docs = false\n'
        f'[municipality]\ncode = "{code}"\nname = "{name}"\n',
        encoding="utf-8",
    )
    return path


def quiet_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any lagesbild setting: every municipality's
    run reads its own file only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAGESBILD_")}
    env.pop("PREFECT_API_URL", None)
    return {**env, "PYTHONUNBUFFERED": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **extra}


@pytest.fixture(scope="module")
def installation(tmp_path_factory):
    from demo.generate import generate

    root = tmp_path_factory.mktemp("region")
    members = {}
    for code, name, seed, pupils in MUNICIPALITIES:
        folder = root / code
        generate(folder / "drop", pupils=pupils, years=1, seed=seed, through=THROUGH)
        key = folder / "key"
        key.write_text(f"key-of-{code}-{seed}-0123456789\n")
        solo = root / "solo" / code
        shutil.copytree(folder / "drop", solo / "drop")
        members[code] = {
            "name": name,
            "config": municipality_file(folder, code, name, key, folder / "drop"),
            "data": folder / "data",
            "solo_config": municipality_file(solo, code, name, key, solo / "drop"),
            "solo_data": solo / "data",
        }
    region_file = root / "region.toml"
    region_file.write_text(
        f'name = "Region Ekdala"\ncode = "12"\ndata_dir = "{root / "region"}"\n'
        f'work_pool = "{POOL}"\n'
        + "".join(f'[[municipalities]]\nconfig = "{m["config"]}"\n' for m in members.values()),
        encoding="utf-8",
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = quiet_env(
        PREFECT_HOME=str(root / "prefect-home"),
        PREFECT_API_URL=url,
        LAGESBILD_HOME=str(PROJECT_ROOT),
    )
    bin_dir = Path(sys.executable).parent
    processes, logs = [], []

    def start(name: str, command: list[str]) -> subprocess.Popen:
        log = (root / f"{name}.log").open("w")
        logs.append(log)
        process = subprocess.Popen(
            command, env=env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        processes.append(process)
        return process

    try:
        server = start("server", [str(bin_dir / "prefect"), "server", "start", "--port", str(port)])
        from lagesbild.runtime import api_answers

        wait_for(lambda: api_answers(url) or server.poll() is not None, 180, "the server")
        assert server.poll() is None, (root / "server.log").read_text()[-2000:]

        def run(*command: str) -> str:
            result = subprocess.run(
                command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
            )
            assert result.returncode == 0, result.stdout + result.stderr
            return result.stdout

        run(str(bin_dir / "prefect"), "work-pool", "create", POOL, "--type", "process")
        deployed = run(
            sys.executable, "-m", "lagesbild.cli", "region", "deploy",
            "--config", str(region_file), "--out", str(root / "region.yaml"),
        )  # fmt: skip
        for index in (1, 2):
            start(
                f"worker-{index}",
                [str(bin_dir / "prefect"), "worker", "start", "--pool", POOL]
                + ["--type", "process", "--limit", "1", "--name", f"worker-{index}"],
            )
        yield {
            "root": root,
            "url": url,
            "members": members,
            "region_file": region_file,
            "deployed": deployed,
            "env": env,
        }
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in reversed(processes):
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs:
            log.close()


def worker_runs(log: Path) -> set[str]:
    """The flow runs a worker's log says it submitted and did not abort."""
    text = log.read_text()
    submitted = set(re.findall(r"submitting flow run '([0-9a-f-]+)'", text))
    return submitted - set(re.findall(r"Aborted submission of flow run '([0-9a-f-]+)'", text))


def table_rows(db: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(db), read_only=True) as con:
        tables = [t for (t,) in con.execute("select table_name from duckdb_tables()").fetchall()]
        return {t: con.execute(f'select * from "{t}" order by all').fetchall() for t in tables}


def files_of(folder: Path) -> set[tuple[int, int]]:
    """(device, inode) of every file under a folder; each symlink must stay inside it."""
    found = set()
    for path in folder.rglob("*"):
        if path.is_symlink():
            assert path.resolve().is_relative_to(folder.resolve()), path
        elif path.is_file():
            stat = path.stat()
            found.add((stat.st_dev, stat.st_ino))
    return found


@pytest.fixture(scope="module")
def concurrent_runs(installation):
    """The three nightly deployments started at once; two workers take them."""
    with prefect_at(installation["url"]), client() as c:
        runs = {}
        for code in installation["members"]:
            deployment = c.read_deployment_by_name(f"nightly/nightly-{code}")
            runs[code] = c.create_flow_run_from_deployment(deployment.id)

        def finished():
            current = {code: c.read_flow_run(r.id) for code, r in runs.items()}
            return current if all(r.state.is_final() for r in current.values()) else None

        started = time.monotonic()
        done = wait_for(finished, 1500, "the three nightly runs", every=5)
        print(f"three municipalities on two workers: {time.monotonic() - started:.0f} s")
        limits = {
            code: c.read_deployment_by_name(f"nightly/nightly-{code}").global_concurrency_limit
            for code in runs
        }
    return {"runs": done, "limits": limits}


def test_each_municipality_runs_under_its_own_build_limit_on_two_workers(
    installation, concurrent_runs
):
    runs = concurrent_runs["runs"]
    for code, run in runs.items():
        assert run.state.is_completed(), f"{code}: {run.state.message}"
        assert {"lagesbild", f"municipality:{code}"} <= set(run.tags)
    assert {c: (lim.name, lim.limit) for c, lim in concurrent_runs["limits"].items()} == {
        code: (f"lagesbild-build-{code}", 1) for code in runs
    }
    # Runs of different municipalities overlapped: no lock is shared between them.
    spans = sorted((r.start_time, r.end_time) for r in runs.values())
    assert any(later[0] < earlier[1] for earlier, later in pairwise(spans))
    # Both workers took runs, each run one worker (a worker that loses the race for a run is
    # told so by the server and aborts its submission).
    took = {index: worker_runs(installation["root"] / f"worker-{index}.log") for index in (1, 2)}
    assert took[1] and took[2] and not took[1] & took[2], took
    assert took[1] | took[2] == {str(r.id) for r in runs.values()}


def test_each_municipalitys_marts_equal_a_run_alone(installation, concurrent_runs):
    from flows.nightly import nightly

    for code, member in installation["members"].items():
        with pipeline_at(member["solo_data"], member["solo_data"].parent / "drop"):
            os.environ["LAGESBILD_CONFIG"] = str(member["solo_config"])
            try:
                # only the municipality's file: its data folder, key and code
                for name in ("DATA_DIR", "DROP_DIR", "PSEUDONYM_KEY"):
                    os.environ.pop(f"LAGESBILD_{name}")
                state = nightly(return_state=True)
            finally:
                os.environ.pop("LAGESBILD_CONFIG")
        assert state.is_completed(), state.message
        alone = table_rows(member["solo_data"] / "warehouse" / "marts.duckdb")
        together = table_rows(member["data"] / "warehouse" / "marts.duckdb")
        assert len(alone) == 16 and alone.keys() == together.keys()
        for table in alone:
            assert together[table] == alone[table], f"{code}: {table}"
        print(code, {table: len(rows) for table, rows in together.items()})
        # built with its own settings file: its code and name
        municipal = [r for r in together["mart_problematic_absence_area_term"] if r[1] == code]
        assert [r[2] for r in municipal] == [member["name"]] * 3


def test_no_file_is_shared_between_the_municipalities(installation, concurrent_runs):
    folders = {code: m["data"] for code, m in installation["members"].items()}
    files = {code: files_of(folder) for code, folder in folders.items()}
    codes = sorted(files)
    for i, code in enumerate(codes):
        assert len(files[code]) > 50
        for other in codes[i + 1 :]:
            assert not files[code] & files[other], (code, other)


def test_the_region_builds_from_the_served_marts_alone(installation, concurrent_runs, tmp_path):
    """Copies of the served marts (two marts.duckdb, one parquet folder) and settings files
    whose data folders do not exist: the regional marts build, every figure from published
    cells, no pupil pseudonym in them."""
    served = tmp_path / "served"
    entries = []
    for index, (code, member) in enumerate(installation["members"].items()):
        warehouse = member["data"] / "warehouse"
        if index == 2:
            target = served / code / "marts"
            shutil.copytree(warehouse / "marts", target)  # the parquet folder, resolved
        else:
            target = served / code / "marts.duckdb"
            target.parent.mkdir(parents=True)
            shutil.copy(warehouse / "marts.duckdb", target)
        config = tmp_path / f"{code}.toml"
        text = member["config"].read_text()
        config.write_text(text.replace(str(member["data"]), str(tmp_path / "gone" / code)))
        entries.append(f'[[municipalities]]\nconfig = "{config}"\nmarts = "{target}"\n')
    region_file = tmp_path / "region.toml"
    region_file.write_text(
        f'name = "Region Ekdala"\ncode = "12"\ndata_dir = "{tmp_path / "region"}"\n'
        + "".join(entries)
    )
    result = subprocess.run(
        [sys.executable, "-m", "lagesbild.cli", "region", "build", "--config", str(region_file)],
        env=quiet_env(),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / "gone").exists()
    print(result.stdout)
    region = table_rows(tmp_path / "region" / "warehouse" / "marts.duckdb")
    assert sorted(region) == [
        "region_members",
        "region_problematic_absence_term",
        "region_vandalism_year",
    ]
    # every municipal row is the municipality's published cell, unchanged
    absence = region["region_problematic_absence_term"]
    for code, member in installation["members"].items():
        with duckdb.connect(str(member["data"] / "warehouse" / "marts.duckdb"), True) as con:
            published = con.execute(
                "select school_year, term, threshold_pct, pupils, pupils_at_or_above, "
                "share_at_or_above_pct from mart_problematic_absence_area_term "
                "where scope = 'municipality' order by all"
            ).fetchall()
        mine = sorted((r[3], r[4], r[5], r[8], r[9], r[10]) for r in absence if r[1] == code)
        assert mine == published, code
    # the regional rows: the sum of the published cells, or withheld with a member's
    for row in (r for r in absence if r[0] == "region"):
        members = [r for r in absence if r[0] == "municipality" and r[3:6] == row[3:6]]
        if any(m[9] is None for m in members):
            assert row[9:13] == (None, None, "withheld", "member_withheld")
        else:
            assert row[9] == sum(m[9] for m in members) and row[11] == "ok"
    # the figures of these three municipalities (seeds 11, 12, 13): members withheld their
    # 15 % and 20 % cells (the 15 % one by linked suppression, flows/disclosure.py)
    assert [r[8:13] for r in absence if r[0] == "region"] == [
        (270, 54, Decimal("20.00"), "ok", None),
        (270, None, None, "withheld", "member_withheld"),
        (270, None, None, "withheld", "member_withheld"),
    ]
    assert [r[8:12] for r in region["region_vandalism_year"] if r[0] == "region"] == [
        (1941, Decimal("10773098.44"), 6420, Decimal("1678.05")),
        (1625, Decimal("8526721.04"), 6420, Decimal("1328.15")),
    ]

    # nothing pupil-level: no pseudonym of any municipality's clean data in any cell
    pseudonyms = set()
    for member in installation["members"].values():
        clean = member["data"] / "clean" / "attendance"
        with duckdb.connect() as con:
            pseudonyms |= {
                p
                for (p,) in con.execute(
                    f"select distinct pupil_key from read_parquet('{clean}/period=*/*.parquet')"
                ).fetchall()
            }
    assert len(pseudonyms) > 100
    cells = {str(v) for rows in region.values() for row in rows for v in row}
    assert not cells & pseudonyms
