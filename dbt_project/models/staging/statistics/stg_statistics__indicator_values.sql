with

source as (

    select * from {{ source('statistics', 'indicator_values') }}

),

renamed as (

    select
        ---------- ids
        cast(indicator_id as varchar) as indicator_id,
        cast(area_code as varchar) as area_code,
        cast(period as integer) as period,
        cast(sex as varchar) as sex,
        cast(population_group as varchar) as population_group,
        cast(release_id as varchar) as release_id,

        ---------- text
        cast(source as varchar) as source,
        cast(status as varchar) as status,
        nullif(cast(source_status as varchar), '') as source_status,
        cast(survey as varchar) as survey,

        ---------- numerics
        cast(value as double) as value,
        cast(respondents as integer) as respondents,
        cast(response_rate_pct as double) as response_rate_pct,

        ---------- booleans
        cast(is_deleted as boolean) as is_deleted,

        ---------- dates and timestamps
        cast(published_on as date) as published_on,
        cast(fetched_at as timestamptz) as fetched_at

    from source

)

select * from renamed
