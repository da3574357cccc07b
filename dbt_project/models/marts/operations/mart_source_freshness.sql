{#-
    Freshness of every source as of the run date (var as_of_date, set by the pipeline to the
    run's date; the build date when unset), one row per source:

      attendance  each export layout and SS 12000: school days (per the school calendar)
                  after the latest day the source delivered, not counting the run day (a
                  nightly run loads up to yesterday); counted before precedence, so a system
                  whose rows all lose to the API still has its row. Weekends and lov do not
                  make a source behind. When the calendar ends before the run date the days
                  after it cannot be judged: status `calendar_outdated`, never `current`.
      housing     each housing company: calendar days after its latest reported work order
                  (var freshness_housing_days; the exports come monthly).
      statistics  Kolada and PxWeb: years between the latest period and the run date's
      survey      year (vars freshness_statistics_years, freshness_survey_years: statistics
                  come a year after, surveys every second or third year).

    freshness_status: `current`, `behind` (lag > max_lag) or `calendar_outdated`;
    is_stale is true for anything but `current`.
-#}

with

calendar as (

    select * from {{ ref('stg_reference__school_calendar') }}

),

source_days as (

    select * from {{ ref('stg_attendance__source_days') }}

),

work_orders as (

    select * from {{ ref('stg_housing__work_orders') }}

),

statistics as (

    select * from {{ ref('stg_statistics__indicator_values') }}
    where not coalesce(is_deleted, false)

),

run as (

    select
        {{ as_of_date() }} as checked_on,
        (select max(calendar_date) from calendar) as calendar_through

),

attendance as (

    select
        'attendance' as source_type,
        source_days.source_layout as source,
        max(source_days.attendance_date) as latest_day,
        cast(null as {{ string_type() }}) as latest_period,
        count(distinct source_days.attendance_date) as days_with_data

    from source_days
    group by source_days.source_layout

),

attendance_lag as (

    select
        attendance.*,
        'school_days' as lag_unit,
        (
            select count(*)
            from calendar, run
            where calendar.is_school_day
                and calendar.calendar_date > attendance.latest_day
                and calendar.calendar_date < run.checked_on
        ) as lag,
        {{ var('freshness_school_days') }} as max_lag

    from attendance

),

housing as (

    select
        'housing' as source_type,
        company as source,
        max(reported_date) as latest_day,
        cast(null as {{ string_type() }}) as latest_period,
        count(distinct reported_date) as days_with_data,
        'days' as lag_unit,
        {{ days_between('max(reported_date)', '(select checked_on from run)') }} - 1 as lag,
        {{ var('freshness_housing_days') }} as max_lag

    from work_orders
    group by company

),

statistics_sources as (

    select
        case when source = 'survey' then 'survey' else 'statistics' end as source_type,
        source,
        cast(cast(max(period) as {{ string_type() }}) || '-12-31' as date) as latest_day,
        cast(max(period) as {{ string_type() }}) as latest_period,
        cast(null as bigint) as days_with_data,
        'years' as lag_unit,
        extract(year from (select checked_on from run)) - max(period) as lag,
        case
            when source = 'survey' then {{ var('freshness_survey_years') }}
            else {{ var('freshness_statistics_years') }}
        end as max_lag

    from statistics
    where value is not null
    group by source

),

unioned as (

    select * from attendance_lag
    union all
    select * from housing
    union all
    select * from statistics_sources

),

final as (

    select
        unioned.source_type,
        unioned.source,
        unioned.latest_day,
        unioned.latest_period,
        cast(unioned.days_with_data as bigint) as days_with_data,
        run.checked_on,
        case when unioned.source_type = 'attendance' then run.calendar_through end
            as calendar_through,
        unioned.lag_unit,
        cast(greatest(unioned.lag, 0) as bigint) as lag,
        cast(unioned.max_lag as bigint) as max_lag,
        coalesce(unioned.source_type = 'attendance' and run.checked_on > run.calendar_through, false)
            as is_calendar_outdated,
        case
            when unioned.source_type = 'attendance' and run.checked_on > run.calendar_through
                then 'calendar_outdated'
            when unioned.lag > unioned.max_lag then 'behind'
            else 'current'
        end as freshness_status

    from unioned
    cross join run

)

select
    *,
    freshness_status <> 'current' as is_stale

from final
