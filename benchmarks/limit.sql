-- The bare-DuckDB limit: the three attendance marts straight from the LANDED parquet, with no
-- orchestration, no validation (no Great Expectations, no dbt tests), no intermediate files.
--
-- It applies the same rules as the pipeline so that its marts EQUAL the published ones:
--   clean   the rules of flows/attendance/rules.py (typing of the Swedish formats, the
--           quarantine reasons in their order, duplicates and conflicting duplicates per load,
--           the latest load wins a pupil-day), for the two demo layouts of
--           connectors/attendance_export/layouts.yml (skola24_csv, ist_xlsx);
--   marts   the dbt models staging → intermediate → marts/school and the macros
--           suppression.sql / absence_pct.sql / absence_measures.sql, compiled by hand.
-- Rejected rows are only left out here (the pipeline writes them to quarantine with a reason).
--
-- Variables (SET VARIABLE before running; benchmarks/limit.py sets them from the settings):
--   landing_dir      the pipeline's landing folder (…/data/landing)
--   out_dir          where the marts are written as <mart>.parquet (an existing folder)
--   reference_dir    the drop folder's reference/ (schools.csv, areas.csv, school_calendar.csv)
--   thresholds_csv   dbt_project/seeds/absence_thresholds.csv
--   municipality_code, municipality_name, min_persons, min_denominator
-- e.g.  duckdb -cmd "SET VARIABLE landing_dir = 'data/landing'; …" < limit.sql
--
-- The lines `-- stage: <name>` split the script into the stages benchmarks/limit.py times.

-- stage: clean

-- Text as the pipeline reads it: trimmed, never NULL (the reader fills empty cells with '').
create or replace temp macro clean_text(x) as
    trim(coalesce(cast(x as varchar), ''), ' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13) || chr(160));

-- '1 234,5', '12,5', '45', '45.0' → double; anything else → NULL (clean_attendance.parse_number)
create or replace temp macro parse_number(x) as
    try_cast(nullif(regexp_replace(regexp_replace(x, '[\s\x{00a0}]', '', 'g'), ',', '.'), '') as double);

-- a date in either format; Excel's midnight time part dropped (clean_attendance.parse_date)
create or replace temp macro parse_date(x, first_format, second_format) as cast(coalesce(
    try_strptime(regexp_replace(x, '[ T]00:00(:00(\.0+)?)?$', ''), first_format),
    try_strptime(regexp_replace(x, '[ T]00:00(:00(\.0+)?)?$', ''), second_format)
) as date);

-- 'Åk 7', 'åk7', '07', 'FK', '0' → '7' / 'F' (clean_attendance.normalise_grade)
create or replace temp macro grade_text(x) as
    ltrim(trim(regexp_replace(upper(x), '^(ÅK|AK|ÅRSKURS)\s*', '')), '0');
create or replace temp macro normalise_grade(x) as
    case when grade_text(x) in ('', 'F', 'FK', 'FSK') then 'F' else grade_text(x) end;

-- '8:10', '08.10', '08:10:00', '1899-12-31 08:10:00' → '08:10' (clean_attendance.normalise_time)
create or replace temp macro time_part(x, part) as try_cast(nullif(regexp_extract(
    x, '^(?:\d{4}-\d{2}-\d{2}[ T])?(\d{1,2})[:.](\d{2})(?::\d{2})?$', part
), '') as integer);
create or replace temp macro normalise_time(x) as
    case when time_part(x, 1) between 0 and 23 and time_part(x, 2) between 0 and 59
        then lpad(cast(time_part(x, 1) as varchar), 2, '0') || ':'
            || lpad(cast(time_part(x, 2) as varchar), 2, '0')
    end;

create or replace temp table known_schools as
select trim(school_unit_code) as school_unit_code
from read_csv(getvariable('reference_dir') || '/schools.csv', header = true, all_varchar = true);

-- Skola24: one absence amount and its type per lesson.
create or replace temp view skola24_lessons as
with landed as (
    select *, regexp_extract(filename, 'load_id=([^/]+)', 1) as load_id
    from read_parquet(
        getvariable('landing_dir') || '/attendance_export/skola24_csv/period=*/load_id=*/data.parquet',
        filename = true, union_by_name = true, hive_partitioning = false
    )
),
typed as (
    select
        load_id,
        'skola24_csv' as source,
        _source_row,
        pupil_key,
        pupil_id_kind,
        clean_text("Skolenhetskod") as school_unit_code,
        normalise_grade(clean_text("Årskurs")) as grade,
        parse_date(clean_text("Datum"), '%Y-%m-%d', '%Y%m%d') as date,
        normalise_time(clean_text("Starttid")) as lesson_start,
        parse_number(clean_text("Lektionslängd (min)")) as offered_minutes,
        parse_number(clean_text("Frånvaro (min)")) as absence_minutes,
        case clean_text("Frånvarotyp")
            when '' then 'none'
            when 'Giltig frånvaro' then 'valid'
            when 'Ogiltig frånvaro' then 'invalid'
            when 'Ej bedömd' then 'other'
        end as absence_category,
        '' in (
            clean_text("Skolenhetskod"), clean_text("Årskurs"), clean_text("Datum"),
            clean_text("Starttid"), clean_text("Lektionslängd (min)")
        ) as has_missing_value
    from landed
)
select
    load_id, source, _source_row, pupil_key, pupil_id_kind, school_unit_code, grade, date,
    lesson_start, offered_minutes,
    offered_minutes - absence_minutes as attended_minutes,
    case when absence_category = 'valid' then absence_minutes else 0.0 end as valid_absence_minutes,
    case when absence_category = 'invalid' then absence_minutes else 0.0 end as invalid_absence_minutes,
    case when absence_category = 'other' then absence_minutes else 0.0 end as other_absence_minutes,
    has_missing_value,
    offered_minutes is null or absence_minutes is null as has_invalid_number,
    coalesce(absence_category is null or (absence_category = 'none' and absence_minutes != 0), false)
        as has_unknown_absence_type
from typed;

-- IST: minutes per kind of absence.
create or replace temp view ist_lessons as
with landed as (
    select *, regexp_extract(filename, 'load_id=([^/]+)', 1) as load_id
    from read_parquet(
        getvariable('landing_dir') || '/attendance_export/ist_xlsx/period=*/load_id=*/data.parquet',
        filename = true, union_by_name = true, hive_partitioning = false
    )
),
typed as (
    select
        load_id,
        'ist_xlsx' as source,
        _source_row,
        pupil_key,
        pupil_id_kind,
        clean_text("Skolenhet") as school_unit_code,
        normalise_grade(clean_text("Åk")) as grade,
        parse_date(clean_text("Datum"), '%Y%m%d', '%Y-%m-%d') as date,
        normalise_time(clean_text("Lektion")) as lesson_start,
        parse_number(clean_text("Schemalagd tid")) as offered_minutes,
        parse_number(clean_text("Närvarande")) as attended_minutes,
        parse_number(clean_text("Giltig frånvaro")) as valid_absence_minutes,
        parse_number(clean_text("Ogiltig frånvaro")) as invalid_absence_minutes,
        parse_number(clean_text("Övrig frånvaro")) as other_absence_minutes,
        '' in (
            clean_text("Skolenhet"), clean_text("Åk"), clean_text("Datum"),
            clean_text("Lektion"), clean_text("Schemalagd tid")
        ) as has_missing_value
    from landed
)
select
    load_id, source, _source_row, pupil_key, pupil_id_kind, school_unit_code, grade, date,
    lesson_start, offered_minutes, attended_minutes, valid_absence_minutes,
    invalid_absence_minutes, other_absence_minutes, has_missing_value,
    offered_minutes is null or attended_minutes is null or valid_absence_minutes is null
        or invalid_absence_minutes is null or other_absence_minutes is null as has_invalid_number,
    false as has_unknown_absence_type
from typed;

-- Both layouts in the lesson contract. Views: DuckDB streams the landed files through the
-- rules below into the pupil-day aggregate instead of holding every lesson in memory.
create or replace temp view typed_lessons as
select * from skola24_lessons
union all by name
select * from ist_lessons;

-- The quarantine reasons in the pipeline's order: a row gets the first that applies.
create or replace temp view usable_lessons as
with reasoned as (
    select
        *,
        case
            when pupil_id_kind = 'missing' then 'missing_personal_id'
            when pupil_id_kind = 'invalid' then 'invalid_personal_id'
            when has_missing_value then 'missing_value'
            when date is null then 'invalid_date'
            when school_unit_code not in (select school_unit_code from known_schools)
                then 'unknown_school_unit'
            when grade not in ('F', '1', '2', '3', '4', '5', '6', '7', '8', '9') then 'invalid_grade'
            when lesson_start is null then 'invalid_lesson_start'
            when has_invalid_number then 'invalid_number'
            when has_unknown_absence_type then 'unknown_absence_type'
            when coalesce(
                attended_minutes < 0 or valid_absence_minutes < 0 or invalid_absence_minutes < 0
                or other_absence_minutes < 0 or offered_minutes < 0 or offered_minutes > 1440
                or valid_absence_minutes > offered_minutes
                or invalid_absence_minutes > offered_minutes
                or other_absence_minutes > offered_minutes,
                false
            ) then 'minutes_out_of_range'
            when coalesce(
                abs(attended_minutes + valid_absence_minutes + invalid_absence_minutes
                    + other_absence_minutes - offered_minutes) > 0.01,
                false
            ) then 'minutes_do_not_add_up'
        end as reason
    from typed_lessons
)
select * exclude (reason, has_missing_value, has_invalid_number, has_unknown_absence_type)
from reasoned
where reason is null;

-- Per load: exact repeats of a lesson are duplicates; the same lesson with other values is a
-- conflict (quarantined). The first row of the file wins.
create or replace temp view clean_lessons as
with distinct_rows as (
    select *
    from usable_lessons
    qualify row_number() over (
        partition by load_id, pupil_key, school_unit_code, date, lesson_start, grade,
            offered_minutes, attended_minutes, valid_absence_minutes, invalid_absence_minutes,
            other_absence_minutes
        order by _source_row
    ) = 1
)
select *
from distinct_rows
qualify row_number() over (
    partition by load_id, pupil_key, school_unit_code, date, lesson_start order by _source_row
) = 1;

-- The clean grain: one row per pupil × school unit × day; the latest load wins a pupil-day.
create or replace temp table pupil_days as
with current_lessons as (
    select *
    from clean_lessons
    qualify load_id = max(load_id) over (partition by pupil_key, school_unit_code, date)
)
select
    pupil_key,
    school_unit_code,
    date,
    max(grade) as grade,
    sum(offered_minutes) as offered_minutes,
    sum(attended_minutes) as attended_minutes,
    sum(valid_absence_minutes) as valid_absence_minutes,
    sum(invalid_absence_minutes) as invalid_absence_minutes,
    sum(other_absence_minutes) as other_absence_minutes,
    cast(count(*) as integer) as lessons,
    max(source) as source,
    max(load_id) as load_id
from current_lessons
group by pupil_key, school_unit_code, date;

-- stage: marts

create or replace temp table schools as
select
    trim(school_unit_code) as school_unit_code,
    nullif(trim(area_code), '') as area_code,
    nullif(trim(school_name), '') as school_name
from read_csv(getvariable('reference_dir') || '/schools.csv', header = true, all_varchar = true);

create or replace temp table areas as
select trim(area_code) as area_code, nullif(trim(area_name), '') as area_name
from read_csv(getvariable('reference_dir') || '/areas.csv', header = true, all_varchar = true);

create or replace temp table calendar as
select
    cast(trim(date) as date) as calendar_date,
    nullif(trim(school_year), '') as school_year,
    nullif(trim(term), '') as term
from read_csv(getvariable('reference_dir') || '/school_calendar.csv', header = true, all_varchar = true);

create or replace temp table thresholds as
select cast(threshold_pct as decimal(5, 2)) as threshold_pct
from read_csv(getvariable('thresholds_csv'), header = true, all_varchar = true);

-- int_pupil_days_enriched
create or replace temp table enriched_days as
select
    pupil_days.pupil_key,
    pupil_days.school_unit_code,
    schools.area_code,
    pupil_days.date as attendance_date,
    cast(date_trunc('month', pupil_days.date) as date) as month,
    calendar.school_year,
    calendar.term,
    upper(trim(pupil_days.grade)) as grade,
    pupil_days.offered_minutes,
    pupil_days.valid_absence_minutes,
    pupil_days.invalid_absence_minutes,
    pupil_days.other_absence_minutes,
    pupil_days.valid_absence_minutes + pupil_days.invalid_absence_minutes
        + pupil_days.other_absence_minutes as total_absence_minutes
from pupil_days
left join schools on pupil_days.school_unit_code = schools.school_unit_code
left join calendar on pupil_days.date = calendar.calendar_date;

-- int_pupil_term_absence_summed
create or replace temp table pupil_terms as
with scoped_days as (
    select 'area' as scope, area_code as scope_code, * from enriched_days where term is not null
    union all
    select 'municipality', cast(getvariable('municipality_code') as varchar), *
    from enriched_days where term is not null
)
select
    scope,
    scope_code as area_code,
    pupil_key,
    school_year,
    term,
    max(attendance_date) as last_date,
    sum(offered_minutes) as offered_minutes,
    sum(valid_absence_minutes) as valid_absence_minutes,
    sum(invalid_absence_minutes) as invalid_absence_minutes,
    sum(other_absence_minutes) as other_absence_minutes,
    sum(total_absence_minutes) as total_absence_minutes
from scoped_days
group by scope, scope_code, pupil_key, school_year, term;

create or replace temp table mart_attendance_school_grade_month as
with aggregated as (
    select
        school_unit_code,
        grade,
        month,
        count(distinct attendance_date) as school_days,
        count(distinct pupil_key) as pupils,
        sum(offered_minutes) as offered_minutes,
        sum(valid_absence_minutes) as valid_absence_minutes,
        sum(invalid_absence_minutes) as invalid_absence_minutes,
        sum(other_absence_minutes) as other_absence_minutes,
        sum(total_absence_minutes) as total_absence_minutes
    from enriched_days
    group by school_unit_code, grade, month
),
measured as (
    select
        aggregated.*,
        schools.school_name,
        schools.area_code,
        pupils < getvariable('min_persons') as is_small_group,
        pupils < getvariable('min_denominator') or pupils < getvariable('min_persons')
            as is_rate_withheld
    from aggregated
    left join schools on aggregated.school_unit_code = schools.school_unit_code
)
select
    school_unit_code,
    school_name,
    area_code,
    grade,
    month,
    school_days,
    case when pupils < getvariable('min_persons') then null else pupils end as pupils,
    case when is_small_group then null else cast(offered_minutes as decimal(18, 2)) end
        as offered_minutes,
    case when is_rate_withheld then null
        else cast(round(100.0 * valid_absence_minutes / nullif(offered_minutes, 0), 2) as decimal(9, 2))
        end as valid_absence_pct,
    case when is_rate_withheld then null
        else cast(round(100.0 * invalid_absence_minutes / nullif(offered_minutes, 0), 2) as decimal(9, 2))
        end as invalid_absence_pct,
    case when is_rate_withheld then null
        else cast(round(100.0 * other_absence_minutes / nullif(offered_minutes, 0), 2) as decimal(9, 2))
        end as other_absence_pct,
    case when is_rate_withheld then null
        else cast(round(100.0 * total_absence_minutes / nullif(offered_minutes, 0), 2) as decimal(9, 2))
        end as total_absence_pct,
    case when is_rate_withheld then 'withheld'
        when nullif(offered_minutes, 0) is null then 'missing' else 'ok' end as absence_pct_status,
    coalesce(is_small_group or is_rate_withheld, false) as is_suppressed
from measured;

create or replace temp table mart_attendance_area_term as
with aggregated as (
    select
        area_code,
        school_year,
        term,
        max(last_date) as data_through,
        count(distinct pupil_key) as pupils,
        sum(offered_minutes) as offered_minutes,
        sum(valid_absence_minutes) as valid_absence_minutes,
        sum(invalid_absence_minutes) as invalid_absence_minutes,
        sum(other_absence_minutes) as other_absence_minutes,
        sum(total_absence_minutes) as total_absence_minutes
    from pupil_terms
    where scope = 'area'
    group by area_code, school_year, term
),
measured as (
    select
        aggregated.*,
        areas.area_name,
        pupils < getvariable('min_persons') as is_small_group,
        pupils < getvariable('min_denominator') or pupils < getvariable('min_persons')
            as is_rate_withheld
    from aggregated
    left join areas on aggregated.area_code = areas.area_code
)
select
    area_code,
    area_name,
    school_year,
    term,
    data_through,
    case when pupils < getvariable('min_persons') then null else pupils end as pupils,
    case when is_small_group then null else cast(offered_minutes as decimal(18, 2)) end
        as offered_minutes,
    case when is_rate_withheld then null
        else cast(round(100.0 * valid_absence_minutes / nullif(offered_minutes, 0), 2) as decimal(9, 2))
        end as valid_absence_pct,
    case when is_rate_withheld then null
        else cast(round(100.0 * invalid_absence_minutes / nullif(offered_minutes, 0), 2) as decimal(9, 2))
        end as invalid_absence_pct,
    case when is_rate_withheld then null
        else cast(round(100.0 * other_absence_minutes / nullif(offered_minutes, 0), 2) as decimal(9, 2))
        end as other_absence_pct,
    case when is_rate_withheld then null
        else cast(round(100.0 * total_absence_minutes / nullif(offered_minutes, 0), 2) as decimal(9, 2))
        end as total_absence_pct,
    case when is_rate_withheld then 'withheld'
        when nullif(offered_minutes, 0) is null then 'missing' else 'ok' end as absence_pct_status,
    coalesce(is_small_group or is_rate_withheld, false) as is_suppressed
from measured;

-- Pupils at or above each threshold; primary, band and secondary suppression as in
-- mart_problematic_absence_area_term.sql.
create or replace temp table problematic_counted as
with counted as (
    select
        pupil_terms.scope,
        pupil_terms.area_code,
        pupil_terms.school_year,
        pupil_terms.term,
        thresholds.threshold_pct,
        count(distinct pupil_terms.pupil_key) as pupils,
        count(distinct case
            when pupil_terms.offered_minutes > 0
                and 100 * pupil_terms.total_absence_minutes
                    >= thresholds.threshold_pct * pupil_terms.offered_minutes
                then pupil_terms.pupil_key
        end) as pupils_at_or_above
    from pupil_terms
    cross join thresholds
    group by all
)
select
    counted.*,
    case when counted.scope = 'municipality'
        then cast(getvariable('municipality_name') as varchar)
        else areas.area_name
    end as area_name,
    counted.pupils < getvariable('min_persons') as is_small_group,
    counted.pupils < getvariable('min_denominator') or counted.pupils < getvariable('min_persons')
        or counted.pupils_at_or_above < getvariable('min_persons') as is_primary_suppressed,
    row_number() over (
        partition by counted.scope, counted.area_code, counted.school_year, counted.term
        order by counted.threshold_pct
    ) as band_step
from counted
left join areas on counted.scope = 'area' and counted.area_code = areas.area_code;

-- Bands: walking up the thresholds, a count whose band to the last published count is
-- 1 to min_persons - 1 pupils is withheld.
create or replace temp table problematic_banded as
with recursive walk as (
    select
        scope, area_code, school_year, term, band_step, pupils_at_or_above,
        is_primary_suppressed as withheld_before,
        pupils as last_published
    from problematic_counted
    where band_step = 1
    union all
    select
        steps.scope, steps.area_code, steps.school_year, steps.term, steps.band_step,
        steps.pupils_at_or_above, steps.is_primary_suppressed,
        case
            when walk.withheld_before is not true
                and not (walk.last_published - walk.pupils_at_or_above
                    between 1 and getvariable('min_persons') - 1)
                then walk.pupils_at_or_above
            else walk.last_published
        end
    from walk
    join problematic_counted as steps
        on steps.scope is not distinct from walk.scope
        and steps.area_code is not distinct from walk.area_code
        and steps.school_year is not distinct from walk.school_year
        and steps.term is not distinct from walk.term
        and steps.band_step = walk.band_step + 1
)
select
    steps.*,
    coalesce(
        walk.withheld_before is not true
        and walk.last_published - walk.pupils_at_or_above between 1 and getvariable('min_persons') - 1,
        false
    ) as is_band_suppressed
from problematic_counted as steps
join walk
    on steps.scope is not distinct from walk.scope
    and steps.area_code is not distinct from walk.area_code
    and steps.school_year is not distinct from walk.school_year
    and steps.term is not distinct from walk.term
    and steps.band_step = walk.band_step;

create or replace temp table mart_problematic_absence_area_term as
with flagged as (
    select *, is_primary_suppressed or is_band_suppressed as is_count_withheld
    from problematic_banded
),
secondary as (
    select
        *,
        (
            scope = 'area' and not is_count_withheld
            and sum(case when scope = 'area' and is_count_withheld then 1 else 0 end)
                over (partition by school_year, term, threshold_pct) = 1
            and max(case when scope = 'municipality' and not is_count_withheld then 1 else 0 end)
                over (partition by school_year, term, threshold_pct) = 1
            and row_number() over (
                partition by school_year, term, threshold_pct,
                    case when scope = 'area' and not is_count_withheld then 1 else 0 end
                order by pupils_at_or_above, area_code
            ) = 1
        ) as is_secondary_suppressed,
        (
            scope = 'area' and not is_small_group
            and sum(case when scope = 'area' and is_small_group then 1 else 0 end)
                over (partition by school_year, term, threshold_pct) = 1
            and max(case when scope = 'municipality' and not is_small_group then 1 else 0 end)
                over (partition by school_year, term, threshold_pct) = 1
            and row_number() over (
                partition by school_year, term, threshold_pct,
                    case when scope = 'area' and not is_small_group then 1 else 0 end
                order by pupils, area_code
            ) = 1
        ) as is_group_secondary_suppressed
    from flagged
),
withheld as (
    select
        *,
        is_count_withheld or is_secondary_suppressed or is_group_secondary_suppressed
            as is_share_withheld
    from secondary
)
select
    scope,
    area_code,
    area_name,
    school_year,
    term,
    threshold_pct,
    case when is_small_group or is_group_secondary_suppressed then null else pupils end as pupils,
    case when is_share_withheld then null else pupils_at_or_above end as pupils_at_or_above,
    case when is_share_withheld then null
        else cast(round(100.0 * pupils_at_or_above / nullif(pupils, 0), 2) as decimal(9, 2))
        end as share_at_or_above_pct,
    coalesce(is_small_group or is_group_secondary_suppressed or is_share_withheld, false)
        as is_suppressed
from withheld;

-- stage: publish

copy mart_attendance_school_grade_month
to (getvariable('out_dir') || '/mart_attendance_school_grade_month.parquet') (format parquet);
copy mart_attendance_area_term
to (getvariable('out_dir') || '/mart_attendance_area_term.parquet') (format parquet);
copy mart_problematic_absence_area_term
to (getvariable('out_dir') || '/mart_problematic_absence_area_term.parquet') (format parquet);
