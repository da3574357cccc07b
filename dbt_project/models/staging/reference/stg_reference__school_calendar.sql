with

source as (

    select * from {{ source('reference', 'school_calendar') }}

),

renamed as (

    select
        ---------- dates
        cast(date as date) as calendar_date,

        ---------- text
        nullif(trim(cast(school_year as {{ string_type() }})), '') as school_year,
        nullif(trim(cast(term as {{ string_type() }})), '') as term,
        nullif(trim(cast(day_type as {{ string_type() }})), '') as day_type,
        nullif(trim(cast(note as {{ string_type() }})), '') as note,

        ---------- booleans
        cast(is_school_day as boolean) as is_school_day

    from source

)

select * from renamed
