{{
    config(
        materialized=pupil_level_materialization(),
        incremental_strategy='delete+insert',
        unique_key=['school_year', 'term'],
        on_schema_change='fail',
        pre_hook="{{ delete_outdated_versions('term_version', pupil_term_versions(ref('int_pupil_days_enriched'))) }}",
    )
}}

{#-
    Absence per pupil and term, in two scopes:
      * scope = 'area': the pupil's days at the schools of one area (a pupil who moved
        between areas during the term has one row per area);
      * scope = 'municipality': the pupil's days at all schools, area_code = the
        municipality code (var municipality_code).
    Days outside a term (term NULL: between terms (jullov), or date not in the calendar) are left out.
    Percentages are unrounded here; threshold comparisons are made on minutes in the marts.

    Incremental, by term: each row carries its term's `term_version` (macro
    pupil_term_versions: the set of month versions of the term's days in
    int_pupil_days_enriched). An incremental run deletes the rows of terms whose version
    changed or that have no days any more (pre-hook) and sums only the terms whose current
    version is not in the table. A first build and `--full-refresh` sum every term.
-#}

{%- set terms = versions_to_build(
    'term_version',
    pupil_term_versions(ref('int_pupil_days_enriched')),
    ['school_year', 'term'],
) %}

with

pupil_days as (

    select * from {{ ref('int_pupil_days_enriched') }}
    where term is not null
    {%- if is_incremental() %}
        -- incremental run: only the terms not summed from their current version
        and (
            false
            {%- for row in terms %}
            or (
                {{ sql_equals('school_year', row.school_year) }}
                and {{ sql_equals('term', row.term) }}
            )
            {%- endfor %}
        )
    {%- endif %}

),

term_versions as (

    {{ pupil_term_versions('pupil_days') }}

),

scoped_days as (

    select 'area' as scope, area_code as scope_code, pupil_days.* from pupil_days
    union all
    select 'municipality' as scope, {{ municipality_code_literal() }} as scope_code, pupil_days.*
    from pupil_days

),

summed as (

    select
        scope,
        scope_code as area_code,
        pupil_key,
        school_year,
        term,
        count(distinct attendance_date) as days_with_data,
        min(attendance_date) as first_date,
        max(attendance_date) as last_date,
        sum(offered_minutes) as offered_minutes,
        sum(attended_minutes) as attended_minutes,
        sum(valid_absence_minutes) as valid_absence_minutes,
        sum(invalid_absence_minutes) as invalid_absence_minutes,
        sum(other_absence_minutes) as other_absence_minutes,
        sum(total_absence_minutes) as total_absence_minutes

    from scoped_days
    group by scope, scope_code, pupil_key, school_year, term

),

final as (

    select
        summed.*,
        {{ absence_pct('valid_absence_minutes', 'offered_minutes') }} as valid_absence_pct,
        {{ absence_pct('invalid_absence_minutes', 'offered_minutes') }} as invalid_absence_pct,
        {{ absence_pct('other_absence_minutes', 'offered_minutes') }} as other_absence_pct,
        {{ absence_pct('total_absence_minutes', 'offered_minutes') }} as total_absence_pct,
        term_versions.term_version,
        {{ built_at() }} as built_at

    from summed
    left join term_versions
        on summed.school_year is not distinct from term_versions.school_year
        and summed.term = term_versions.term

)

select * from final
