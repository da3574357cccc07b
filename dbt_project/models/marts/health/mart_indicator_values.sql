{#-
    The indicator mart: the own municipality's (and its areas') current values with the
    county, the country and the comparison group beside them, and the trend.
    Survey values with fewer respondents than min_denominator or a response rate below
    min_response_rate_pct are published as NULL with is_suppressed; when that hides one sex,
    the other sex is hidden too (secondary suppression: the total and it would reveal it).
-#}
with

current_values as (

    select * from {{ ref('int_indicator_values_revised') }}

),

indicators as (

    select * from {{ ref('stg_statistics__indicators') }}

),

roles as (

    select * from {{ ref('stg_statistics__municipality_roles') }}

),

areas as (

    select * from {{ ref('stg_reference__areas') }}

),

own as (

    select
        v.*,
        case when length(v.area_code) = 4 then 'municipality' else 'area' end as area_level,
        coalesce(v.respondents < {{ var('min_denominator') }}, false) as is_few_respondents,
        coalesce(v.response_rate_pct < {{ var('min_response_rate_pct') }}, false)
            as is_low_response_rate
    from current_values as v
    where v.area_code = {{ municipality_code_literal() }}
        or (length(v.area_code) > 4 and left(v.area_code, 4) = {{ municipality_code_literal() }})

),

primary_flagged as (

    select
        *,
        is_few_respondents or is_low_response_rate as is_primary_suppressed
    from own

),

secondary_flagged as (

    -- one sex suppressed: the other is too, or the total and it would reveal it
    select
        *,
        {{ secondary_suppression(
            ['indicator_id', 'area_code', 'period', 'population_group'],
            "sex in ('K', 'M')", "sex = 'T'", 'is_primary_suppressed',
            ['respondents', 'sex']) }} as is_secondary_suppressed
    from primary_flagged

),

published as (

    select
        *,
        {{ suppress_if('is_primary_suppressed or is_secondary_suppressed', 'value') }}
            as published_value
    from secondary_flagged

),

comparisons as (

    select
        v.indicator_id,
        v.period,
        v.sex,
        v.population_group,
        max(case when r.role = 'county' then v.value end) as county_value,
        max(case when r.role = 'country' then v.value end) as national_value,
        -- an exact (decimal) sum: a double sum depends on the order rows arrive in, and a
        -- mean such as 7.025 then rounds to 7.02 one night and 7.03 the next
        cast(
            sum(case when r.role = 'comparison' then cast(v.value as decimal(38, 10)) end)
            / count(case when r.role = 'comparison' then v.value end) as double
        ) as comparison_group_value,
        count(case when r.role = 'comparison' then v.value end) as comparison_group_members
    from current_values as v
    inner join roles as r on r.area_code = v.area_code
    group by v.indicator_id, v.period, v.sex, v.population_group

),

with_trend as (

    select
        p.*,
        lag(p.period) over series as previous_period,
        lag(p.published_value) over series as previous_value
    from published as p
    window series as (
        partition by p.indicator_id, p.area_code, p.sex, p.population_group
        order by p.period
    )

)

select
    ---------- grain
    t.indicator_id,
    t.area_code,
    t.area_level,
    coalesce(
        a.area_name,
        case when t.area_level = 'municipality' then {{ municipality_name_literal() }} end
    ) as area_name,
    t.period,
    t.sex,
    t.population_group,

    ---------- the indicator
    i.title,
    i.unit,
    i.higher_is_better,
    i.goals,
    t.source,
    t.survey,

    ---------- the value and its comparisons
    t.published_value as value,
    {{ measure_status('t.published_value', 't.is_primary_suppressed or t.is_secondary_suppressed') }}
        as value_status,
    c.county_value,
    c.national_value,
    {{ as_decimal('c.comparison_group_value', 2) }} as comparison_group_value,
    c.comparison_group_members,

    ---------- trend against the previous period with a row
    t.previous_period,
    t.previous_value,
    {{ as_decimal('t.published_value - t.previous_value', 2) }} as change,
    case
        when t.published_value is null or t.previous_value is null then null
        when t.published_value = t.previous_value then 'unchanged'
        when (t.published_value > t.previous_value) = i.higher_is_better then 'better'
        else 'worse'
    end as trend,

    ---------- release
    t.status,
    t.source_status,
    t.is_revised,
    t.published_on,
    -- naive UTC: no time zone type, so DuckDB 1.4 clients need no pytz
    {{ utc_wall_clock('t.fetched_at') }} as fetched_at,
    t.release_id,

    ---------- survey quality and suppression
    cast({{ suppress_count('t.respondents') }} as bigint) as respondents,
    {{ measure_status('t.respondents', is_small_count('t.respondents')) }} as respondents_status,
    t.response_rate_pct,
    case
        when t.is_few_respondents then 'few_respondents'
        when t.is_low_response_rate then 'low_response_rate'
        when t.is_secondary_suppressed then 'secondary'
    end as suppression_reason,
    {{ suppression_flag(['t.is_primary_suppressed', 't.is_secondary_suppressed',
                         is_small_count('t.respondents')]) }} as is_suppressed

from with_trend as t
inner join indicators as i on i.indicator_id = t.indicator_id
left join areas as a on a.area_code = t.area_code
left join comparisons as c
    on c.indicator_id = t.indicator_id
    and c.period = t.period
    and c.sex = t.sex
    and c.population_group = t.population_group
