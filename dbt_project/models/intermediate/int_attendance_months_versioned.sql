{{ config(materialized='view') }}

{#-
    One version per month of clean attendance: what int_pupil_days_enriched builds that
    month's rows from. It changes when the month's file changes (path, size or modification
    time, not content: the clean step rewrites a month's file only when the month changed) and when the
    school or calendar reference rows the enrichment joins change (a school moved to another
    area, a calendar extended or corrected: every month then gets a new version).
    Reads file metadata and the small reference tables only: cheap on every build.
    The version is an md5 over the month too, so a version identifies its month.
-#}

with

files as (

    select * from {{ ref('stg_attendance__pupil_day_files') }}

),

schools as (

    select * from {{ ref('stg_reference__schools') }}

),

calendar as (

    select * from {{ ref('stg_reference__school_calendar') }}

),

reference_version as (

    select
        md5(
            coalesce((
                select {{ ordered_string_agg(
                    "concat_ws('|', school_unit_code, coalesce(area_code, '-'), coalesce(municipality_code, '-'))",
                    "','", 'school_unit_code'
                ) }}
                from schools
            ), '')
            || '#'
            || coalesce((
                select {{ ordered_string_agg(
                    "concat_ws('|', cast(calendar_date as " ~ string_type() ~ "), coalesce(school_year, '-'), "
                    ~ "coalesce(term, '-'), coalesce(cast(is_school_day as " ~ string_type() ~ "), '-'))",
                    "','", 'calendar_date'
                ) }}
                from calendar
            ), '')
        ) as reference_version

),

month_files as (

    select
        month,
        count(*) as files,
        sum(file_bytes) as file_bytes,
        max(file_modified_at) as last_modified_at,
        -- the file name, not its path: a data folder moved elsewhere keeps its versions
        {{ ordered_string_agg(
            "concat_ws('|', file_name, cast(file_bytes as " ~ string_type() ~ "), cast("
            ~ epoch_microseconds('file_modified_at') ~ " as " ~ string_type() ~ "))",
            "','", 'file_name'
        ) }} as files_signature

    from files
    group by month

),

final as (

    select
        month_files.month,
        md5(
            cast(month_files.month as {{ string_type() }})
            || '#' || month_files.files_signature
            || '#' || reference_version.reference_version
        ) as partition_version,
        month_files.files,
        month_files.file_bytes,
        month_files.last_modified_at

    from month_files
    cross join reference_version

)

select * from final
