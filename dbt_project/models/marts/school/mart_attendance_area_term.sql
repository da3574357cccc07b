{#-
    Attendance per area × term (so far), with small-cell suppression
    (macros/suppression.sql). Built from the pupil-term sums of scope 'area'.
-#}

with

pupil_terms as (

    select * from {{ ref('int_pupil_term_absence_summed') }}
    where scope = 'area'

),

areas as (

    select * from {{ ref('stg_reference__areas') }}

),

aggregated as (

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
    group by area_code, school_year, term

),

measured as (

    select
        aggregated.area_code,
        areas.area_name,
        aggregated.school_year,
        aggregated.term,
        aggregated.data_through,
        aggregated.pupils,
        aggregated.offered_minutes,
        {{ absence_pct_columns('aggregated') }}

    from aggregated
    left join areas
        on aggregated.area_code = areas.area_code

),

final as (

    select
        area_code,
        area_name,
        school_year,
        term,
        data_through,
        {{ suppressed_absence_columns() }}

    from measured

)

select * from final
