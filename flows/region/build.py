"""The regional layer: comparison marts built from the municipalities' published marts only.

It opens each municipality's served marts (`marts.duckdb` read-only, or the parquet folder)
and reads two of their municipality-level marts; it never opens a work warehouse, a clean or
a landing folder, so no pupil-level row can reach it. The rule that keeps a regional figure
from revealing a withheld municipal cell (docs/region.md, "Suppression at the regional level"):

* a municipality's row is its published value, unchanged: withheld stays withheld;
* a regional cell is the sum of the members' published values. If a member's value of that
  cell is withheld, the regional cell is withheld too (`member_withheld`): a total over all
  members would let anyone subtract the published members and get the withheld one, and a
  total over the published members only would pass for the region's;
* the sums are checked again against the strictest thresholds of the region and its members
  (`small_cell`): a count of persons (pupils, vandalism orders) below `min_persons`, a rate over
  fewer than `min_denominator` pupils;
* a member with no row for a cell (no data for that term or year) is left out of it and
  counted in `members_with_data`.

Every regional figure is thus a function of published figures, and none of a withheld one.
The result is published as the municipalities' marts are: a new `marts.duckdb` and parquet
folder under the region's data folder, swapped in whole.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import duckdb

from flows.layers.audit import run_lock
from flows.warehouse.publish import new_served, swap_in
from lagesbild.errors import ConfigError
from lagesbild.region_settings import Member, Region
from lagesbild.settings import Paths

log = logging.getLogger(__name__)

# The published marts the region reads, and the columns it takes from them.
SOURCES = {
    "mart_problematic_absence_area_term": (
        "school_year, term, threshold_pct, pupils, pupils_at_or_above, share_at_or_above_pct, "
        "is_suppressed",
        "scope = 'municipality'",
    ),
    "mart_vandalism_municipality_year": (
        "year, data_through, vandalism_orders, vandalism_cost_sek, apartments, "
        "cost_per_apartment_sek, is_suppressed",
        "true",
    ),
}

DESCRIPTIONS = {
    "region_members": "One row per municipality of the region: where its marts were read and "
    "what they held.",
    "region_problematic_absence_term": "Problematic absence per municipality and for the "
    "region (school year x term x threshold), from the municipalities' published marts; a "
    "regional cell is withheld when a member's cell is (docs/region.md).",
    "region_vandalism_year": "Vandalism work orders and cost per municipality and for the "
    "region (year), from the municipalities' published marts; a regional cell is withheld "
    "when a member's cell is (docs/region.md).",
}


@dataclass
class RegionBuild:
    tables: dict[str, int]  # table -> rows
    marts_db: Path
    marts_parquet: Path


def _source(con: duckdb.DuckDBPyConnection, index: int, member: Member) -> str:
    """Attach or locate a member's published marts; returns the SQL prefix of its tables."""
    path = member.served_marts
    if path.suffix == ".duckdb" and path.name != "marts.duckdb":  # e.g. work.duckdb
        raise ConfigError(
            f"{member.config}: marts = {path} is not a served marts.duckdb; the region reads "
            "the published marts only (marts.duckdb or the marts parquet folder)"
        )
    if path.is_file():
        alias = f"member_{index}"
        con.execute(f"ATTACH '{path}' AS {alias} (READ_ONLY)")
        return f"{alias}.main."
    if path.is_dir():
        return str(path) + "/"
    raise ConfigError(
        f"the published marts of {member.name} ({member.code}) are not at {path}: has it "
        "published once (`lagesbild run` with its settings)? Or set `marts` in the region file"
    )


def _relation(prefix: str, table: str) -> str:
    if prefix.endswith("/"):
        return f"read_parquet('{prefix}{table}.parquet')"
    return f"{prefix}{table}"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _load_members(con: duckdb.DuckDBPyConnection, region: Region) -> None:
    members = []
    for index, member in enumerate(region.municipalities):
        prefix = _source(con, index, member)
        members.append(
            f"select {_literal(member.code)} as municipality_code, "
            f"{_literal(member.name)} as municipality_name, "
            f"{_literal('parquet' if prefix.endswith('/') else 'duckdb')} as marts_format"
        )
        for table, (columns, where) in SOURCES.items():
            try:
                select = (
                    f"select {_literal(member.code)} as municipality_code, "
                    f"{_literal(member.name)} as municipality_name, {columns} "
                    f"from {_relation(prefix, table)} where {where}"
                )
                exists = con.execute(
                    "select count(*) from duckdb_tables() where table_name = ? and temporary",
                    [table],
                ).fetchone()[0]
                verb = "insert into" if exists else "create temp table"
                con.execute(f"{verb} {table} {select}" if exists else f"{verb} {table} as {select}")
            except duckdb.Error as exc:
                raise ConfigError(
                    f"the published marts of {member.name} ({member.code}) at "
                    f"{member.served_marts} lack {table} or its columns ({columns}): are they "
                    f"marts of this lagesbild version? ({type(exc).__name__})"
                ) from None
    con.execute("create temp table members as " + " union all ".join(members))


def _beside_region(
    key: list[str],
    before: list[str],
    values: list[str],
    status: tuple[str, str],
    difference: str,
    total: int,
) -> str:
    """Each row of `all_rows` (the region's and its members') beside the region's row of the
    same `key`: its values, its status (the status column's name, and the value whose absence
    means withheld), and how far its last value is from the region's (`difference`: the
    column's name and type)."""
    compared, (name, kind) = values[-1], difference.split(" ", 1)
    columns = ", ".join(f"a.{c}" for c in ["level", "area_code", "area_name", *key, *before])
    return f"""
        select {columns}, {total} as region_members, {", ".join(f"a.{c}" for c in values)},
            case when a.{status[1]} is null then 'withheld' else 'ok' end as {status[0]},
            a.withheld_reason,
            r.{compared} as region_{compared},
            cast(a.{compared} - r.{compared} as {kind}) as {name}
        from all_rows a
        left join (from all_rows where level = 'region') r using ({", ".join(key)})
        order by {", ".join(f"a.{c}" for c in key)}, a.level desc, a.area_code
    """


def _build_sql(region: Region) -> dict[str, str]:
    s = region.effective_suppression
    persons, denominator = s.min_persons, s.min_denominator
    code, name = _literal(region.code), _literal(region.name)
    total = len(region.municipalities)
    absence = f"""
        with regional as (
            select school_year, term, threshold_pct,
                count(*) as members_with_data,
                bool_or(pupils is null) as pupils_withheld,
                bool_or(pupils_at_or_above is null) as above_withheld,
                sum(pupils) as pupils, sum(pupils_at_or_above) as above
            from mart_problematic_absence_area_term
            group by all
        ),
        checked as (
            select *,
                case when pupils_withheld or above_withheld then 'member_withheld'
                    when pupils < {persons} or above < {persons} or pupils < {denominator}
                        then 'small_cell'
                end as withheld_reason
            from regional
        ),
        region_rows as (
            select 'region' as level, {code} as area_code, {name} as area_name,
                school_year, term, threshold_pct, members_with_data,
                case when pupils_withheld or pupils < {persons} then null
                    else pupils end as pupils,
                case when withheld_reason is null then above end as pupils_at_or_above,
                case when withheld_reason is null
                    then cast(round(100.0 * above / pupils, 2) as decimal(9, 2))
                end as share_at_or_above_pct,
                withheld_reason
            from checked
        ),
        member_rows as (
            select 'municipality' as level, municipality_code as area_code,
                municipality_name as area_name, school_year, term, threshold_pct,
                1 as members_with_data, pupils, pupils_at_or_above,
                cast(share_at_or_above_pct as decimal(9, 2)) as share_at_or_above_pct,
                case when is_suppressed then 'municipal_suppression' end as withheld_reason
            from mart_problematic_absence_area_term
        ),
        all_rows as (select * from region_rows union all select * from member_rows)
    """ + _beside_region(
        key=["school_year", "term", "threshold_pct"],
        before=["members_with_data"],
        values=["pupils", "pupils_at_or_above", "share_at_or_above_pct"],
        status=("share_status", "share_at_or_above_pct"),
        difference="difference_from_region_pct_points decimal(9, 2)",
        total=total,
    )
    vandalism = f"""
        with regional as (
            select year, count(*) as members_with_data,
                min(data_through) as data_through, max(data_through) as data_through_max,
                bool_or(vandalism_orders is null or vandalism_cost_sek is null) as withheld,
                bool_or(apartments is null) as apartments_missing,
                sum(vandalism_orders) as orders, sum(vandalism_cost_sek) as cost,
                sum(apartments) as apartments
            from mart_vandalism_municipality_year
            group by all
        ),
        region_rows as (
            select 'region' as level, {code} as area_code, {name} as area_name, year,
                data_through, data_through_max, members_with_data,
                case when not withheld and orders >= {persons} then orders end
                    as vandalism_orders,
                case when not withheld and orders >= {persons} then cost end
                    as vandalism_cost_sek,
                case when not apartments_missing then apartments end as apartments,
                cast(case when not withheld and orders >= {persons} and not apartments_missing
                    then round(cost / nullif(apartments, 0), 2) end as decimal(18, 2))
                    as cost_per_apartment_sek,
                case when withheld then 'member_withheld'
                    when orders < {persons} then 'small_cell' end as withheld_reason
            from regional
        ),
        member_rows as (
            select 'municipality' as level, municipality_code as area_code,
                municipality_name as area_name, year, data_through,
                data_through as data_through_max, 1 as members_with_data, vandalism_orders,
                vandalism_cost_sek, apartments,
                cast(cost_per_apartment_sek as decimal(18, 2)) as cost_per_apartment_sek,
                case when is_suppressed then 'municipal_suppression' end as withheld_reason
            from mart_vandalism_municipality_year
        ),
        all_rows as (select * from region_rows union all select * from member_rows)
    """ + _beside_region(
        key=["year"],
        before=["data_through", "data_through_max", "members_with_data"],
        values=["vandalism_orders", "vandalism_cost_sek", "apartments", "cost_per_apartment_sek"],
        status=("vandalism_status", "vandalism_orders"),
        difference="difference_from_region_sek decimal(18, 2)",
        total=total,
    )
    members = """
        select m.municipality_code, m.municipality_name, m.marts_format,
            (select count(*) from mart_problematic_absence_area_term p
                where p.municipality_code = m.municipality_code) as problematic_absence_rows,
            (select count(*) from mart_vandalism_municipality_year v
                where v.municipality_code = m.municipality_code) as vandalism_years
        from members m order by m.municipality_code
    """
    return {
        "region_members": members,
        "region_problematic_absence_term": absence,
        "region_vandalism_year": vandalism,
    }


def build_region(region: Region) -> RegionBuild:
    """Build the regional marts and publish them under the region's data folder."""
    data = region.data_dir.resolve()
    paths = Paths(data, data / "drop")
    for member in region.municipalities:
        if paths.data.is_relative_to(member.settings.paths.data):
            raise ConfigError(
                f"the region's data_dir {data} lies inside the data folder of {member.name}"
            )
    with run_lock(paths.data, region.run_lock_timeout):
        con, next_db, next_parquet = new_served(paths, region.served_storage_version)
        counts = {}
        try:
            con.execute("SET enable_progress_bar = false")
            _load_members(con, region)
            for table, sql in _build_sql(region).items():
                con.execute(f"CREATE TABLE main.{table} AS {sql}")
                con.execute(f"COMMENT ON TABLE main.{table} IS {_literal(DESCRIPTIONS[table])}")
                con.execute(
                    f"COPY (FROM main.{table} ORDER BY ALL) TO "
                    f"'{next_parquet / f'{table}.parquet'}' (FORMAT parquet, KV_METADATA "
                    f"{{description: {_literal(DESCRIPTIONS[table])}}})"
                )
                counts[table] = con.execute(f"select count(*) from main.{table}").fetchone()[0]
            for attached in con.execute(
                "select database_name from duckdb_databases() where database_name like 'member_%'"
            ).fetchall():
                con.execute(f"DETACH {attached[0]}")
        except BaseException:
            con.close()
            next_db.unlink(missing_ok=True)
            for leftover in next_parquet.iterdir():
                leftover.unlink()
            next_parquet.rmdir()
            raise
        con.close()
        swap_in(paths, next_db, next_parquet, "region")
    log.info("region %s: published %s to %s", region.code, counts, paths.marts_db)
    return RegionBuild(counts, paths.marts_db, paths.marts_parquet)
