with

source as (

    select * from {{ source('statistics', 'population') }}

),

renamed as (

    select
        ---------- ids
        cast(area_code as varchar) as area_code,
        cast(age as varchar) as age,
        cast(sex as varchar) as sex,
        cast(year as integer) as year,
        cast(release_id as varchar) as release_id,

        ---------- numerics
        cast(inhabitants as integer) as inhabitants,

        ---------- dates and timestamps
        cast(published_on as date) as published_on,
        cast(fetched_at as timestamptz) as fetched_at

    from source

)

select * from renamed
