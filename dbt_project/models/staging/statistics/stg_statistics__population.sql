with

source as (

    select * from {{ source('statistics', 'population') }}

),

renamed as (

    select
        ---------- ids
        cast(area_code as {{ string_type() }}) as area_code,
        cast(age as {{ string_type() }}) as age,
        cast(sex as {{ string_type() }}) as sex,
        cast(year as integer) as year,
        cast(release_id as {{ string_type() }}) as release_id,

        ---------- numerics
        cast(inhabitants as integer) as inhabitants,

        ---------- dates and timestamps
        cast(published_on as date) as published_on,
        cast(fetched_at as {{ timestamp_tz_type() }}) as fetched_at

    from source

)

select * from renamed
