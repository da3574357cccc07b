"""The region file, the generated deployments and the regional build, on published marts
written here (a served marts.duckdb for one municipality, parquet folders for the others)."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import duckdb
import pytest
import yaml
from typer.testing import CliRunner

from lagesbild.errors import ConfigError
from lagesbild.region_settings import load_region

ABSENCE = [
    # code: (pupils, at or above 10 / 15 / 20 %), None = withheld by the municipality
    ("1296", 120, (30, 18, 9)),
    ("1297", 80, (20, 11, None)),
    ("1298", 200, (41, 22, 12)),
]
VANDALISM = [  # code: 2025 orders, cost, apartments, cost per apartment (as published)
    ("1296", 40, 120000.00, 1000, 120.00),
    ("1297", 12, 30000.00, 500, 60.00),
    ("1298", 6, 9000.00, 300, 30.00),
]


def write_marts(target: Path, code: str) -> None:
    """The two municipality-level marts the region reads, as a municipality publishes them
    (plus an area row and another table it must not read)."""
    pupils, above = next((p, a) for c, p, a in ABSENCE if c == code)
    orders, cost, apartments, per = next(row[1:] for row in VANDALISM if row[0] == code)
    con = duckdb.connect(str(target) if target.suffix == ".duckdb" else ":memory:")
    con.execute(
        "create table mart_problematic_absence_area_term (scope varchar, area_code varchar, "
        "school_year varchar, term varchar, threshold_pct decimal(5,2), pupils bigint, "
        "pupils_at_or_above bigint, share_at_or_above_pct decimal(9,2), is_suppressed boolean)"
    )
    for threshold, count in zip((10, 15, 20), above, strict=True):
        share = None if count is None else round(100 * count / pupils, 2)
        con.execute(
            "insert into mart_problematic_absence_area_term values "
            "('municipality', ?, '2025/26', 'HT', ?, ?, ?, ?, ?), "
            "('area', ?, '2025/26', 'HT', ?, 3, null, null, true)",
            [code, threshold, pupils, count, share, count is None, code + "A0010", threshold],
        )
    con.execute(
        "create table mart_vandalism_municipality_year as select 2025 as year, "
        "date '2025-10-31' as data_through, ?::bigint as vandalism_orders, "
        "?::decimal(18,2) as vandalism_cost_sek, ?::bigint as apartments, "
        "?::decimal(18,2) as cost_per_apartment_sek, false as is_suppressed",
        [orders, cost, apartments, per],
    )
    con.execute("create table mart_attendance_school_grade_month as select 1 as pupils")
    if target.suffix != ".duckdb":
        target.mkdir(parents=True)
        for table in ("mart_problematic_absence_area_term", "mart_vandalism_municipality_year"):
            con.execute(f"copy {table} to '{target / table}.parquet' (format parquet)")
    con.close()


def write_region(root: Path, extra: str = "", keys: tuple[str, ...] = ()) -> Path:
    members = []
    for index, (code, *_rest) in enumerate(ABSENCE):
        folder = root / code
        folder.mkdir(parents=True, exist_ok=True)
        key = folder / "key"
        key.write_text((keys[index] if keys else f"key-of-{code}-0123456789") + "\n")
        (folder / "lagesbild.toml").write_text(
            f'data_dir = "{folder / "data"}"\npseudonym_key_file = "{key}"\n'
            f'[municipality]\ncode = "{code}"\nname = "Kommun {code}"\n'
        )
        if index == 0:  # the served file where the municipality publishes it
            (folder / "data" / "warehouse").mkdir(parents=True)
            write_marts(folder / "data" / "warehouse" / "marts.duckdb", code)
            members.append(f'[[municipalities]]\nconfig = "{folder / "lagesbild.toml"}"\n')
        else:  # a copy of the parquet folder somewhere else
            write_marts(root / "served" / code, code)
            members.append(
                f'[[municipalities]]\nconfig = "{folder / "lagesbild.toml"}"\n'
                f'marts = "{root / "served" / code}"\n'
            )
    path = root / "region.toml"
    path.write_text(
        f'name = "Region Ekdala"\ncode = "12"\ndata_dir = "{root / "region"}"\n{extra}\n'
        + "\n".join(members)
    )
    return path


def rows(db: Path, table: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(f"select * from {table}").fetchall()


def test_the_region_sums_published_cells_and_withholds_one_with_a_withheld_member(tmp_path):
    from flows.region.build import build_region

    result = build_region(load_region(write_region(tmp_path)))
    assert result.tables == {
        "region_members": 3,
        "region_problematic_absence_term": 12,
        "region_vandalism_year": 4,
    }
    absence = {
        (r[1], int(r[5])): r for r in rows(result.marts_db, "region_problematic_absence_term")
    }
    region_10 = absence[("12", 10)]
    # level, code, name, year, term, threshold, members, of, pupils, above, share, status, why
    assert region_10[6:13] == (3, 3, 400, 91, D("22.75"), "ok", None)
    assert absence[("12", 15)][8:12] == (400, 51, D("12.75"), "ok")
    # 1297 withheld its 20 % cell: the region's is withheld, not 9 + 12 of the others
    assert absence[("12", 20)][8:13] == (400, None, None, "withheld", "member_withheld")
    assert absence[("1297", 20)][8:13] == (80, None, None, "withheld", "municipal_suppression")
    assert absence[("1297", 10)][10] == D("25.00")
    # the member's difference from the region, in percentage points: 25.00 - 22.75
    assert absence[("1297", 10)][14] == D("2.25")
    assert absence[("1296", 20)][13:] == (None, None)

    vandalism = {r[1]: r for r in rows(result.marts_db, "region_vandalism_year")}
    # orders 58, cost 159,000, apartments 1,800: 88.33 per apartment
    assert vandalism["12"][6:14] == (3, 3, 58, D("159000.00"), 1800, D("88.33"), "ok", None)
    assert vandalism["1296"][15] == D("31.67")
    assert rows(result.marts_db, "region_members") == [
        ("1296", "Kommun 1296", "duckdb", 3, 1),
        ("1297", "Kommun 1297", "parquet", 3, 1),
        ("1298", "Kommun 1298", "parquet", 3, 1),
    ]
    # the same tables as parquet, and no pupil-level column anywhere
    with duckdb.connect() as con:
        for table, count in result.tables.items():
            path = result.marts_parquet / f"{table}.parquet"
            assert con.execute(f"select count(*) from '{path}'").fetchone()[0] == count
            columns = {c[0] for c in con.execute(f"describe select * from '{path}'").fetchall()}
            assert not {c for c in columns if "pupil_id" in c or "pseudonym" in c}


def test_the_strictest_thresholds_apply_to_the_regional_sums(tmp_path):
    """With min_persons 60 in the region file, the region's 15 % count (51) is withheld as a
    small cell; the municipalities' rows stay as they published them."""
    from flows.region.build import build_region

    region = load_region(write_region(tmp_path, "[suppression]\nmin_persons = 60\n"))
    assert region.effective_suppression.min_persons == 60
    assert region.effective_suppression.min_denominator == 10
    result = build_region(region)
    absence = {
        (r[1], int(r[5])): r for r in rows(result.marts_db, "region_problematic_absence_term")
    }
    assert absence[("12", 10)][9:13] == (91, D("22.75"), "ok", None)
    assert absence[("12", 15)][9:13] == (None, None, "withheld", "small_cell")
    assert absence[("1298", 15)][9] == 22
    vandalism = {r[1]: r for r in rows(result.marts_db, "region_vandalism_year")}
    assert vandalism["12"][8:14] == (None, None, 1800, None, "withheld", "small_cell")


def test_a_second_build_replaces_the_served_region_marts(tmp_path):
    from flows.region.build import build_region

    region = load_region(write_region(tmp_path))
    first = build_region(region)
    second = build_region(region)
    assert rows(first.marts_db, "region_vandalism_year") == rows(
        second.marts_db, "region_vandalism_year"
    )
    assert len(list((tmp_path / "region" / "warehouse").glob("marts-*"))) == 2  # this, previous


def test_municipalities_sharing_a_folder_or_a_key_are_refused(tmp_path):
    same_key = ("the-same-key-0123456789",) * 3
    with pytest.raises(ConfigError, match="have the same pseudonym key") as error:
        load_region(write_region(tmp_path / "a", keys=same_key))
    assert "the-same-key" not in str(error.value)
    path = write_region(tmp_path / "b")
    second = tmp_path / "b" / "1297" / "lagesbild.toml"
    own, other = (str(tmp_path / "b" / code / "data") for code in ("1297", "1296"))
    second.write_text(second.read_text().replace(own, other))
    with pytest.raises(ConfigError, match="have the same data folder"):
        load_region(path)


def test_the_region_never_opens_a_work_warehouse(tmp_path):
    from flows.region.build import build_region

    path = write_region(tmp_path)
    served, work = str(tmp_path / "served" / "1297"), str(tmp_path / "work.duckdb")
    path.write_text(path.read_text().replace(served, work))
    (tmp_path / "work.duckdb").touch()
    with pytest.raises(ConfigError, match=r"not a served marts\.duckdb"):
        build_region(load_region(path))


def test_the_generated_deployments_run_each_municipality_with_its_own_file_and_limit(tmp_path):
    from flows.deployments import build_limit_of
    from flows.region.deployments import region_spec

    spec = region_spec(load_region(write_region(tmp_path, 'work_pool = "region"')))
    names = [d["name"] for d in spec["deployments"]]
    assert names == [f"{flow}-{c}" for c, *_ in ABSENCE for flow in ("nightly", "backfill")]
    nightly = spec["deployments"][2]
    assert nightly["entrypoint"] == "flows/nightly.py:nightly"
    assert nightly["work_pool"] == {
        "name": "region",
        "job_variables": {"env": {"LAGESBILD_CONFIG": str(tmp_path / "1297" / "lagesbild.toml")}},
    }
    assert nightly["schedules"] == [
        {"cron": "30 4 * * *", "timezone": "Europe/Stockholm", "active": True}
    ]

    class Tagged:
        tags = nightly["tags"]

    assert build_limit_of(Tagged) == "lagesbild-build-1297"
    Tagged.tags = ["lagesbild", "municipality:1299"]
    assert build_limit_of(Tagged) == "lagesbild-build"
    # the same shape as deployments/prefect.yaml's, which `prefect deploy` reads
    from lagesbild.settings import PROJECT_ROOT

    base = yaml.safe_load((PROJECT_ROOT / "deployments" / "prefect.yaml").read_text())
    assert spec["pull"] == base["pull"]
    assert set(nightly) - {"job_variables"} >= set(base["deployments"][0]) - {"work_pool"}


def test_region_build_command(tmp_path):
    from lagesbild.cli import app

    path = write_region(tmp_path)
    result = CliRunner().invoke(app, ["region", "build", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert "region_problematic_absence_term: 12 rows" in result.output
    result = CliRunner().invoke(app, ["region", "build", "--config", str(tmp_path / "none.toml")])
    assert result.exit_code == 2
    assert "none.toml does not exist" in result.output


def test_a_key_file_gives_the_key_and_a_missing_one_says_so(tmp_path):
    from lagesbild.settings import Settings

    (tmp_path / "key").write_text("a-municipality-key-0123\n")
    (tmp_path / "a.toml").write_text(f'pseudonym_key_file = "{tmp_path / "key"}"\n')
    settings = Settings.from_file(tmp_path / "a.toml")
    assert settings.require_pseudonym_key() == b"a-municipality-key-0123"
    (tmp_path / "b.toml").write_text(f'pseudonym_key_file = "{tmp_path / "nokey"}"\n')
    with pytest.raises(ConfigError, match="cannot be read"):
        Settings.from_file(tmp_path / "b.toml").require_pseudonym_key()
