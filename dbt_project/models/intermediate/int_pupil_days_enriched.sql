{{
    config(
        materialized=pupil_level_materialization(),
        incremental_strategy='delete+insert',
        unique_key='month',
        on_schema_change='fail',
        pre_hook="{{ delete_outdated_versions('partition_version', 'select partition_version from ' ~ ref('int_attendance_months_versioned'), keep_retired=true) }}",
    )
}}

{#-
    Pupil days with the school's area and the calendar's läsår / termin attached.
    Left joins: a day whose school or date is missing from the reference keeps its row
    (with NULL area / term); the relationships tests of this model catch those cases.

    Incremental, by month: each row carries its month's `partition_version`
    (int_attendance_months_versioned: the month's clean file and the reference rows joined
    here). An incremental run deletes the rows of months whose version changed or whose file
    is gone (pre-hook) and builds only the months whose current version is not in the table,
    reading only those months' rows (the month filter reaches the parquet scan as date
    ranges). A first build and `--full-refresh` build every month.
-#}

{%- set months = versions_to_build(
    'partition_version',
    'select cast(month as ' ~ string_type() ~ ') as month, partition_version from '
        ~ ref('int_attendance_months_versioned'),
    ['month'],
) %}

with

month_versions as (

    select month, partition_version from {{ ref('int_attendance_months_versioned') }}

),

pupil_days as (

    select * from {{ ref('stg_attendance__pupil_days') }}
    {%- if is_incremental() %}
    -- incremental run: only the months not built from their current version
    where false
    {%- for row in months %}
        or (
            attendance_date >= cast('{{ row.month }}' as date)
            and attendance_date < {{ plus_one_month("cast('" ~ row.month ~ "' as date)") }}
        )
    {%- endfor %}
    {%- endif %}

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

),

versioned as (

    select
        enriched.*,
        month_versions.partition_version,
        {{ built_at() }} as built_at

    from enriched
    left join month_versions
        on enriched.month = month_versions.month

)

select * from versioned
