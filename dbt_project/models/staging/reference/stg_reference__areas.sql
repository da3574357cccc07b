with

source as (

    select * from {{ source('reference', 'areas') }}

),

renamed as (

    select
        ---------- ids
        trim(cast(area_code as {{ string_type() }})) as area_code,
        nullif(trim(cast(municipality_code as {{ string_type() }})), '') as municipality_code,

        ---------- text
        nullif(trim(cast(area_name as {{ string_type() }})), '') as area_name,
        nullif(trim(cast(area_type as {{ string_type() }})), '') as area_type,
        nullif(trim(cast(municipality_name as {{ string_type() }})), '') as municipality_name

    from source

)

select * from renamed
