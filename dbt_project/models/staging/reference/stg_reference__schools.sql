with

source as (

    select * from {{ source('reference', 'schools') }}

),

renamed as (

    select
        ---------- ids
        trim(cast(school_unit_code as varchar)) as school_unit_code,
        nullif(trim(cast(area_code as varchar)), '') as area_code,
        nullif(trim(cast(municipality_code as varchar)), '') as municipality_code,

        ---------- text
        nullif(trim(cast(school_name as varchar)), '') as school_name,
        nullif(trim(cast(school_type as varchar)), '') as school_type,
        nullif(trim(cast(grades as varchar)), '') as grades,
        nullif(trim(cast(attendance_system as varchar)), '') as attendance_system

    from source

)

select * from renamed
