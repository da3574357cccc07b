with

source as (

    select * from {{ source('reference', 'areas') }}

),

renamed as (

    select
        ---------- ids
        trim(cast(area_code as varchar)) as area_code,
        nullif(trim(cast(municipality_code as varchar)), '') as municipality_code,

        ---------- text
        nullif(trim(cast(area_name as varchar)), '') as area_name,
        nullif(trim(cast(area_type as varchar)), '') as area_type,
        nullif(trim(cast(municipality_name as varchar)), '') as municipality_name

    from source

)

select * from renamed
