{#-
    Attendance per school unit × grade × calendar month, with small-cell suppression
    (macros/suppression.sql).
-#}

with

pupil_days as (

    select * from {{ ref('int_pupil_days_enriched') }}

),

schools as (

    select * from {{ ref('stg_reference__schools') }}

),

aggregated as (

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

    from pupil_days
    group by school_unit_code, grade, month

),

measured as (

    select
        aggregated.school_unit_code,
        schools.school_name,
        schools.area_code,
        aggregated.grade,
        aggregated.month,
        aggregated.school_days,
        aggregated.pupils,
        aggregated.offered_minutes,
        {{ absence_pct('aggregated.valid_absence_minutes', 'aggregated.offered_minutes', 2) }} as valid_absence_pct,
        {{ absence_pct('aggregated.invalid_absence_minutes', 'aggregated.offered_minutes', 2) }} as invalid_absence_pct,
        {{ absence_pct('aggregated.other_absence_minutes', 'aggregated.offered_minutes', 2) }} as other_absence_pct,
        {{ absence_pct('aggregated.total_absence_minutes', 'aggregated.offered_minutes', 2) }} as total_absence_pct,
        {{ is_small_count('aggregated.pupils') }} as is_small_group,
        {{ is_rate_suppressed('aggregated.pupils') }} as is_rate_withheld

    from aggregated
    left join schools
        on aggregated.school_unit_code = schools.school_unit_code

),

final as (

    select
        school_unit_code,
        school_name,
        area_code,
        grade,
        month,
        school_days,
        {{ suppress_count('pupils') }} as pupils,
        {{ suppress_if('is_small_group', 'offered_minutes') }} as offered_minutes,
        {{ suppress_if('is_rate_withheld', 'valid_absence_pct') }} as valid_absence_pct,
        {{ suppress_if('is_rate_withheld', 'invalid_absence_pct') }} as invalid_absence_pct,
        {{ suppress_if('is_rate_withheld', 'other_absence_pct') }} as other_absence_pct,
        {{ suppress_if('is_rate_withheld', 'total_absence_pct') }} as total_absence_pct,
        {{ suppression_flag(['is_small_group', 'is_rate_withheld']) }} as is_suppressed

    from measured

)

select * from final
