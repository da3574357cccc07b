{#-
    Pupil days with the school's area and the calendar's läsår / termin attached.
    Left joins: a day whose school or date is missing from the reference keeps its row
    (with NULL area / term); the relationships tests on staging catch those cases.
-#}

with

pupil_days as (

    select * from {{ ref('stg_attendance__pupil_days') }}

),

schools as (

    select * from {{ ref('stg_reference__schools') }}

),

calendar as (

    select * from {{ ref('stg_reference__school_calendar') }}

),

enriched as (

    select
        ---------- ids
        pupil_days.pupil_key,
        pupil_days.school_unit_code,
        schools.area_code,
        schools.municipality_code,

        ---------- dates
        pupil_days.attendance_date,
        cast({{ dbt.date_trunc('month', 'pupil_days.attendance_date') }} as date) as month,
        calendar.school_year,
        calendar.term,
        calendar.is_school_day,

        ---------- text
        pupil_days.grade,
        pupil_days.source_layout,
        pupil_days.load_id,

        ---------- numerics (minutes)
        pupil_days.offered_minutes,
        pupil_days.attended_minutes,
        pupil_days.valid_absence_minutes,
        pupil_days.invalid_absence_minutes,
        pupil_days.other_absence_minutes,
        pupil_days.valid_absence_minutes
            + pupil_days.invalid_absence_minutes
            + pupil_days.other_absence_minutes as total_absence_minutes,
        pupil_days.lessons

    from pupil_days
    left join schools
        on pupil_days.school_unit_code = schools.school_unit_code
    left join calendar
        on pupil_days.attendance_date = calendar.calendar_date

)

select * from enriched
