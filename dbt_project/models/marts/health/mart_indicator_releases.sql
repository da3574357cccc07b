{#-
    Every release of every indicator value (the history): what each fetch or survey file
    said, so a revised or withdrawn value stays queryable. Survey values are suppressed
    like in mart_indicator_values (primary and secondary).
-#}
with

releases as (

    select * from {{ ref('stg_statistics__indicator_values') }}

),

flagged as (

    select
        *,
        coalesce(respondents < {{ var('min_denominator') }}, false)
            or coalesce(response_rate_pct < {{ var('min_response_rate_pct') }}, false)
            as is_primary_suppressed
    from releases

),

secondary as (

    select
        *,
        {{ secondary_suppression(
            ['indicator_id', 'area_code', 'period', 'population_group', 'release_id'],
            "sex in ('K', 'M')", "sex = 'T'", 'is_primary_suppressed',
            ['respondents', 'sex']) }} as is_secondary_suppressed
    from flagged

),

suppressed as (

    select
        *,
        is_primary_suppressed or is_secondary_suppressed as is_survey_suppressed
    from secondary

)

select
    indicator_id,
    area_code,
    period,
    sex,
    population_group,
    release_id,
    source,
    survey,
    {{ suppress_if('is_survey_suppressed', 'value') }} as value,
    {{ measure_status('value', 'is_survey_suppressed') }} as value_status,
    status,
    source_status,
    is_deleted,
    cast({{ suppress_count('respondents') }} as bigint) as respondents,
    {{ measure_status('respondents', is_small_count('respondents')) }} as respondents_status,
    response_rate_pct,
    {{ suppression_flag(['is_survey_suppressed', is_small_count('respondents')]) }}
        as is_suppressed,
    published_on,
    -- naive UTC: no time zone type, so DuckDB 1.4 clients need no pytz
    {{ utc_wall_clock('fetched_at') }} as fetched_at,
    row_number() over (
        partition by indicator_id, area_code, period, sex, population_group
        order by release_id desc
    ) = 1 as is_latest_release
from suppressed
