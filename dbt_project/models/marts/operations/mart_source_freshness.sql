{#-
    Freshness of each attendance source as of the run date (var as_of_date, set by the
    pipeline to the run's date; the build date when unset): how many school days
    (per the school calendar) have passed since the latest day with data, not counting
    the build day itself (a nightly run loads up to yesterday). Weekends and lov do not
    make a source stale. If the calendar ends before the build date, the days after it
    cannot be judged: `calendar_through` shows it, and the calendar needs the new year.
-#}

with

pupil_days as (

    select * from {{ ref('stg_attendance__pupil_days') }}

),

calendar as (

    select * from {{ ref('stg_reference__school_calendar') }}

),

latest as (

    select
        source_layout,
        max(attendance_date) as latest_day,
        count(distinct attendance_date) as days_with_data

    from pupil_days
    group by source_layout

),

checked as (

    select
        latest.source_layout,
        latest.latest_day,
        latest.days_with_data,
        {{ as_of_date() }} as checked_on,
        (select max(calendar_date) from calendar) as calendar_through,
        (
            select count(*)
            from calendar
            where calendar.is_school_day
                and calendar.calendar_date > latest.latest_day
                and calendar.calendar_date < {{ as_of_date() }}
        ) as school_days_behind

    from latest

),

final as (

    select
        source_layout,
        latest_day,
        days_with_data,
        checked_on,
        calendar_through,
        school_days_behind,
        {{ var('freshness_school_days') }} as max_school_days_behind,
        school_days_behind > {{ var('freshness_school_days') }} as is_stale,
        checked_on > calendar_through as is_calendar_outdated

    from checked

)

select * from final
