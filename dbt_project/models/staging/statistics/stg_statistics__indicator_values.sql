with

source as (

    select * from {{ source('statistics', 'indicator_values') }}

),

renamed as (

    select
        ---------- ids
        cast(indicator_id as {{ string_type() }}) as indicator_id,
        cast(area_code as {{ string_type() }}) as area_code,
        cast(period as integer) as period,
        cast(sex as {{ string_type() }}) as sex,
        cast(population_group as {{ string_type() }}) as population_group,
        cast(release_id as {{ string_type() }}) as release_id,

        ---------- text
        cast(source as {{ string_type() }}) as source,
        cast(status as {{ string_type() }}) as status,
        nullif(cast(source_status as {{ string_type() }}), '') as source_status,
        cast(survey as {{ string_type() }}) as survey,

        ---------- numerics
        cast(value as double) as value,
        cast(respondents as integer) as respondents,
        cast(response_rate_pct as double) as response_rate_pct,

        ---------- booleans
        cast(is_deleted as boolean) as is_deleted,

        ---------- dates and timestamps
        cast(published_on as date) as published_on,
        cast(fetched_at as {{ timestamp_tz_type() }}) as fetched_at

    from source

)

select * from renamed
