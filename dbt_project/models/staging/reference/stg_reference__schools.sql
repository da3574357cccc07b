with

source as (

    select * from {{ source('reference', 'schools') }}

),

renamed as (

    select
        ---------- ids
        trim(cast(school_unit_code as {{ string_type() }})) as school_unit_code,
        nullif(trim(cast(area_code as {{ string_type() }})), '') as area_code,
        nullif(trim(cast(municipality_code as {{ string_type() }})), '') as municipality_code,

        ---------- text
        nullif(trim(cast(school_name as {{ string_type() }})), '') as school_name,
        nullif(trim(cast(school_type as {{ string_type() }})), '') as school_type,
        nullif(trim(cast(grades as {{ string_type() }})), '') as grades,
        nullif(trim(cast(attendance_system as {{ string_type() }})), '') as attendance_system

    from source

)

select * from renamed
