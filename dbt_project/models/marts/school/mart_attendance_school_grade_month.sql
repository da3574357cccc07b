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
        {{ absence_pct_columns('aggregated') }}

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
        {{ suppressed_absence_columns() }}

    from measured

)

select * from final
