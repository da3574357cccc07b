{#-
    Absence per pupil and term, in two scopes:
      * scope = 'area': the pupil's days at the schools of one area (a pupil who moved
        between areas during the term has one row per area);
      * scope = 'municipality': the pupil's days at all schools, area_code = the
        municipality code (var municipality_code).
    Days outside a term (term NULL: between terms (jullov), or date not in the calendar) are left out.
    Percentages are unrounded here; threshold comparisons are made on minutes in the marts.
-#}

with

pupil_days as (

    select * from {{ ref('int_pupil_days_enriched') }}
    where term is not null

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
        *,
        {{ absence_pct('valid_absence_minutes', 'offered_minutes') }} as valid_absence_pct,
        {{ absence_pct('invalid_absence_minutes', 'offered_minutes') }} as invalid_absence_pct,
        {{ absence_pct('other_absence_minutes', 'offered_minutes') }} as other_absence_pct,
        {{ absence_pct('total_absence_minutes', 'offered_minutes') }} as total_absence_pct

    from summed

)

select * from final
