{#-
    The current value of every indicator value: the latest release that said anything about
    it wins (a revision replaces the earlier value); a value whose latest release withdrew it
    (Kolada `isdeleted`) is left out. The history stays in stg_statistics__indicator_values.
-#}
with

releases as (

    select
        *,
        row_number() over (
            partition by indicator_id, area_code, period, sex, population_group
            order by release_id desc
        ) as release_rank,
        count(*) over (
            partition by indicator_id, area_code, period, sex, population_group
        ) as releases
    from {{ ref('stg_statistics__indicator_values') }}

)

select
    indicator_id,
    area_code,
    period,
    sex,
    population_group,
    source,
    survey,
    value,
    status,
    source_status,
    respondents,
    response_rate_pct,
    release_id,
    published_on,
    fetched_at,
    releases > 1 as is_revised
from releases
where release_rank = 1
    and not is_deleted
