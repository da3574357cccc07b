{#- Sources without comparisons or a split by sex (the attendance data has no sex). -#}
{% set no_comparisons -%}
        cast(null as double) as county_value,
        cast(null as double) as national_value,
        cast(null as double) as comparison_group_value,
        cast(null as double) as value_girls,
        'missing' as value_girls_status,
        cast(null as double) as value_boys,
        'missing' as value_boys_status
{%- endset %}

{#-
    Every measured value the goals can be followed up on, in one shape:
    indicator × area level × area × period: attendance (from the pupil-term sums, with the
    suppression macros), public statistics and surveys (mart_indicator_values, both sexes)
    and the housing companies' vandalism costs (mart_vandalism_area_year). A goal therefore
    never shows a figure a mart would withhold.

    Attendance is measured per school year (läsår, `2025/26`): terms are not comparable
    with each other (absence peaks in the spring term), and the statistics are yearly too.
    A period still in progress (a school year before its last school day, the current
    calendar year of the housing exports) is `is_partial_period`: it is compared with the
    same part of earlier periods (int_indicator_values_same_period) or not at all, never
    with whole periods. `is_preliminary` also covers statistics published as preliminary.
    `period_start` orders school years and calendar years on one axis; `data_through` is
    each value's freshness. Statistics carry the county, the country, the comparison group
    and girls / boys beside the value (mart_indicator_values); other sources have none.
-#}

with

pupil_terms as (

    select * from {{ ref('int_pupil_term_absence_summed') }}

),

statistics as (

    select * from {{ ref('mart_indicator_values') }}

),

indicators as (

    select * from {{ ref('dim_indicator') }}

),

vandalism as (

    select * from {{ ref('mart_vandalism_area_year') }}

),

calendar as (

    select * from {{ ref('stg_reference__school_calendar') }}

),

school_year_ends as (

    select school_year, max(calendar_date) as last_school_day
    from calendar
    where is_school_day
    group by school_year

),

pupil_years as (

    select
        scope,
        area_code,
        pupil_key,
        school_year,
        max(last_date) as last_date,
        sum(offered_minutes) as offered_minutes,
        sum(total_absence_minutes) as total_absence_minutes

    from pupil_terms
    group by scope, area_code, pupil_key, school_year

),

years as (

    select
        scope as area_level,
        area_code,
        school_year,
        max(last_date) as data_through,
        count(*) as pupils,
        sum(
            case
                when offered_minutes > 0 and 100 * total_absence_minutes >= 15 * offered_minutes
                    then 1 else 0
            end
        ) as pupils_at_or_above_15,
        sum(offered_minutes) as offered_minutes,
        sum(total_absence_minutes) as total_absence_minutes

    from pupil_years
    group by scope, area_code, school_year

),

attendance as (

    select
        years.*,
        years.data_through < school_year_ends.last_school_day as is_preliminary

    from years
    left join school_year_ends
        on years.school_year = school_year_ends.school_year

),

school_absence as (

    select
        'school_absence_pct' as indicator_id,
        'Frånvaro i grundskolan, andel av undervisningstiden (%)' as indicator_title,
        'percent' as unit,
        false as higher_is_better,
        'attendance' as source,
        area_level,
        area_code,
        school_year as period,
        {{ period_start('school_year') }} as period_start,
        cast(
            {{ suppress_rate(absence_pct('total_absence_minutes', 'offered_minutes', 2), 'pupils') }}
            as double
        ) as value,
        data_through,
        coalesce(is_preliminary, true) as is_partial_period,
        coalesce(is_preliminary, true) as is_preliminary,
        {{ suppression_flag([is_rate_suppressed('pupils')]) }} as is_suppressed,
        {{ no_comparisons }}

    from attendance

),

problematic_absence as (

    select
        'problematic_absence_15_pct' as indicator_id,
        'Elever i grundskolan med minst 15 % frånvaro under läsåret, andel (%)' as indicator_title,
        'percent' as unit,
        false as higher_is_better,
        'attendance' as source,
        area_level,
        area_code,
        school_year as period,
        {{ period_start('school_year') }} as period_start,
        cast(
            {{ suppress_rate(safe_pct('pupils_at_or_above_15', 'pupils', 2), 'pupils', 'pupils_at_or_above_15') }}
            as double
        ) as value,
        data_through,
        coalesce(is_preliminary, true) as is_partial_period,
        coalesce(is_preliminary, true) as is_preliminary,
        {{ suppression_flag([is_rate_suppressed('pupils', 'pupils_at_or_above_15')]) }}
            as is_suppressed,
        {{ no_comparisons }}

    from attendance

),

by_sex as (

    -- girls and boys beside the total, where the source has them (already suppressed)
    select
        indicator_id,
        area_code,
        period,
        population_group,
        max(case when sex = 'K' then value end) as value_girls,
        bool_or(sex = 'K' and is_suppressed) as is_girls_suppressed,
        max(case when sex = 'M' then value end) as value_boys,
        bool_or(sex = 'M' and is_suppressed) as is_boys_suppressed,
        bool_or(sex = 'K') and bool_or(sex = 'M') as has_sexes

    from statistics
    where sex in ('K', 'M')
    group by indicator_id, area_code, period, population_group

),

public_statistics as (

    -- Kolada, PxWeb and surveys: both sexes together (`T`); values already suppressed.
    select
        statistics.indicator_id,
        indicators.title as indicator_title,
        indicators.unit,
        indicators.higher_is_better,
        indicators.source,
        statistics.area_level,
        statistics.area_code,
        cast(statistics.period as {{ string_type() }}) as period,
        {{ period_start('cast(statistics.period as ' ~ string_type() ~ ')') }} as period_start,
        cast(statistics.value as double) as value,
        cast(cast(statistics.period as {{ string_type() }}) || '-12-31' as date) as data_through,
        false as is_partial_period,
        statistics.status = 'preliminary' as is_preliminary,
        statistics.is_suppressed,
        cast(statistics.county_value as double) as county_value,
        cast(statistics.national_value as double) as national_value,
        cast(statistics.comparison_group_value as double) as comparison_group_value,
        cast(by_sex.value_girls as double) as value_girls,
        case
            when by_sex.value_girls is not null then 'ok'
            when by_sex.is_girls_suppressed then 'withheld'
            else 'missing'
        end as value_girls_status,
        cast(by_sex.value_boys as double) as value_boys,
        case
            when by_sex.value_boys is not null then 'ok'
            when by_sex.is_boys_suppressed then 'withheld'
            else 'missing'
        end as value_boys_status

    from statistics
    inner join indicators
        on statistics.indicator_id = indicators.indicator_id
    left join by_sex
        on statistics.indicator_id = by_sex.indicator_id
        and statistics.area_code = by_sex.area_code
        and statistics.period = by_sex.period
        and statistics.population_group = by_sex.population_group
    where statistics.sex = 'T'

),

housing_vandalism as (

    {%- for indicator_id, title, column in [
        ('vandalism_cost_sek', 'Kostnad för skadegörelse hos bostadsbolagen, kr exkl. moms', 'vandalism_cost_sek'),
        ('vandalism_cost_per_apartment_sek', 'Kostnad för skadegörelse per lägenhet, kr exkl. moms', 'cost_per_apartment_sek'),
    ] %}
    select
        '{{ indicator_id }}' as indicator_id,
        '{{ title }}' as indicator_title,
        'SEK' as unit,
        false as higher_is_better,
        'housing' as source,
        scope as area_level,
        area_code,
        cast(year as {{ string_type() }}) as period,
        {{ period_start('cast(year as ' ~ string_type() ~ ')') }} as period_start,
        cast({{ column }} as double) as value,
        data_through,
        -- the current year is the year so far
        data_through < cast(cast(year as {{ string_type() }}) || '-12-31' as date) as is_partial_period,
        data_through < cast(cast(year as {{ string_type() }}) || '-12-31' as date) as is_preliminary,
        is_suppressed,
        {{ no_comparisons }}
    from vandalism
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}

),

unioned as (

    select * from school_absence
    union all
    select * from problematic_absence
    union all
    select * from public_statistics
    union all
    select * from housing_vandalism

)

select * from unioned
