{#-
    Goal follow-up: every value of every indicator linked to a goal (seeds/goals), per
    area level × area × period, with the baseline, the target and a status.

    baseline: goal_indicators.baseline_value, else the latest value at or before
              baseline_period (surveys are not every year: a 2021 survey is the baseline
              for 2022 when there was none in 2022).
    trend:    `better` / `worse` / `unchanged` against the previous period's value, by the
              indicator's direction; NULL without a previous value.
    status (the rule, in order; docs/marts.md "Goal follow-up"):
      1. no_data     the value is missing or withheld (suppressed);
      2. target_met  a target is set and the value is at or beyond it;
      3. baseline    the period is the baseline period or earlier: nothing to judge yet;
      4. on_track    better than the baseline and not worse than the previous period;
      5. off_track   otherwise (no better than the baseline, worsening, or no baseline known).
-#}

with

goals as (

    select * from {{ ref('goals') }}

),

links as (

    select * from {{ ref('goal_indicators') }}

),

indicator_values as (

    select * from {{ ref('int_indicator_values_unioned') }}

),

linked as (

    select
        links.goal_id,
        goals.goal,
        links.indicator_id,
        indicator_values.indicator_title,
        indicator_values.unit,
        indicator_values.higher_is_better,
        indicator_values.source,
        links.area_level,
        indicator_values.area_code,
        indicator_values.period,
        indicator_values.period_start,
        indicator_values.value,
        indicator_values.is_suppressed,
        indicator_values.data_through,
        indicator_values.is_preliminary,
        links.baseline_period,
        {{ period_start('links.baseline_period') }} as baseline_start,
        links.baseline_value as stated_baseline,
        links.target_value,
        links.target_period,
        case when indicator_values.higher_is_better then 1 else -1 end as direction

    from links
    inner join goals
        on links.goal_id = goals.goal_id
    inner join indicator_values
        on links.indicator_id = indicator_values.indicator_id
        and links.area_level = indicator_values.area_level

),

measured_baselines as (

    select
        goal_id,
        indicator_id,
        area_level,
        area_code,
        value,
        row_number() over (
            partition by goal_id, indicator_id, area_level, area_code
            order by period_start desc
        ) as recency

    from linked
    where period_start <= baseline_start
        and value is not null

),

compared as (

    select
        linked.*,
        coalesce(linked.stated_baseline, measured_baselines.value) as baseline_value,
        lag(linked.value) over (
            partition by linked.goal_id, linked.indicator_id, linked.area_level, linked.area_code
            order by linked.period_start
        ) as previous_value,
        linked.period_start = max(linked.period_start) over (
            partition by linked.goal_id, linked.indicator_id, linked.area_level, linked.area_code
        ) as is_latest

    from linked
    left join measured_baselines
        on linked.goal_id = measured_baselines.goal_id
        and linked.indicator_id = measured_baselines.indicator_id
        and linked.area_level = measured_baselines.area_level
        and linked.area_code = measured_baselines.area_code
        and measured_baselines.recency = 1

),

final as (

    select
        goal_id,
        goal,
        indicator_id,
        indicator_title,
        unit,
        higher_is_better,
        source,
        area_level,
        area_code,
        period,
        period_start,
        value,
        baseline_period,
        baseline_value,
        target_value,
        target_period,
        value - baseline_value as change_since_baseline,
        previous_value,
        case
            when value is null or previous_value is null then null
            when direction * (value - previous_value) > 0 then 'better'
            when direction * (value - previous_value) < 0 then 'worse'
            else 'unchanged'
        end as trend,
        case
            when value is null then 'no_data'
            when target_value is not null and direction * (value - target_value) >= 0
                then 'target_met'
            when period_start <= baseline_start then 'baseline'
            when baseline_value is not null
                and direction * (value - baseline_value) > 0
                and (previous_value is null or direction * (value - previous_value) >= 0)
                then 'on_track'
            else 'off_track'
        end as status,
        is_latest,
        is_suppressed,
        is_preliminary,
        data_through

    from compared

)

select * from final
