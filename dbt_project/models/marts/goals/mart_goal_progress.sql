{#-
    Goal follow-up: every value of every indicator linked to a goal (seeds/goals), per
    area level × area × period, with the baseline, the target, the trend and a status.

    Comparable periods only. A whole period is compared with the whole baseline period and
    the whole previous period. A period in progress (`is_partial_period`: the year or school
    year so far) is compared with the SAME PART of the baseline and previous periods
    (int_indicator_values_same_period, `comparison_basis = 'same_period'`); where no such
    value exists it gets status `preliminary`, no trend and no change, never a comparison
    of a part period with a whole one.

    baseline: goal_indicators.baseline_value, else the latest value at or before
              baseline_period (surveys are not every year: a 2021 survey is the baseline
              for 2022 when there was none in 2022); for a period in progress, that
              baseline period's value cut at the same point.
    trend:    `better` / `worse` / `unchanged` against the previous period's value (same
              period for a period in progress), by the indicator's direction.
    status (the rule, in order; docs/marts.md "Goal follow-up"):
      1. no_data      the value is missing or withheld (suppressed);
      2. target_met   a whole period, a target is set and the value is at or beyond it
                      (a fact that needs no baseline; a part period never meets a target);
      3. baseline     the period is the baseline period or earlier: nothing to judge yet;
      4. no_baseline  no baseline value is known: the value cannot be judged;
      5. preliminary  the period is in progress and has no same-period baseline;
      6. on_track     better than the baseline and not worse than the previous period;
      7. off_track    otherwise (no better than the baseline, or worsening).
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

same_period as (

    select * from {{ ref('int_indicator_values_same_period') }}

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
        coalesce(indicator_values.is_partial_period, false) as is_partial_period,
        coalesce(indicator_values.is_preliminary, false) as is_preliminary,
        indicator_values.county_value,
        indicator_values.national_value,
        indicator_values.comparison_group_value,
        indicator_values.value_girls,
        coalesce(indicator_values.value_girls_status, 'missing') as value_girls_status,
        indicator_values.value_boys,
        coalesce(indicator_values.value_boys_status, 'missing') as value_boys_status,
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
        period,
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
        coalesce(linked.stated_baseline, measured_baselines.value) as whole_baseline_value,
        measured_baselines.period as measured_baseline_period,
        lag(linked.value) over series as whole_previous_value,
        lag(linked.period) over series as previous_period,
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
    window series as (
        partition by linked.goal_id, linked.indicator_id, linked.area_level, linked.area_code
        order by linked.period_start
    )

),

with_same_period as (

    select
        compared.*,
        baseline_cut.value as same_period_baseline_value,
        previous_cut.value as same_period_previous_value,
        previous_cut.compared_through as same_period_previous_through

    from compared
    left join same_period as baseline_cut
        on compared.is_partial_period
        and compared.indicator_id = baseline_cut.indicator_id
        and compared.area_level = baseline_cut.area_level
        and compared.area_code = baseline_cut.area_code
        and compared.period = baseline_cut.period
        and compared.measured_baseline_period = baseline_cut.compared_period
    left join same_period as previous_cut
        on compared.is_partial_period
        and compared.indicator_id = previous_cut.indicator_id
        and compared.area_level = previous_cut.area_level
        and compared.area_code = previous_cut.area_code
        and compared.period = previous_cut.period
        and compared.previous_period = previous_cut.compared_period

),

chosen as (

    -- the values this row may be compared with: whole with whole, part with the same part
    select
        *,
        case
            when not is_partial_period then 'whole_period'
            when same_period_baseline_value is not null or same_period_previous_value is not null
                then 'same_period'
            else 'none'
        end as comparison_basis,
        case when is_partial_period then same_period_baseline_value else whole_baseline_value end
            as comparable_baseline,
        case when is_partial_period then same_period_previous_value else whole_previous_value end
            as comparable_previous

    from with_same_period

),

judged as (

    select
        *,
        case
            when value is null then 'no_data'
            when not is_partial_period
                and target_value is not null
                and direction * (value - target_value) >= 0
                then 'target_met'
            when period_start <= baseline_start then 'baseline'
            when whole_baseline_value is null then 'no_baseline'
            when is_partial_period and comparable_baseline is null then 'preliminary'
            when direction * (value - comparable_baseline) > 0
                and (comparable_previous is null or direction * (value - comparable_previous) >= 0)
                then 'on_track'
            else 'off_track'
        end as status,
        case
            when value is null or comparable_previous is null then null
            when direction * (value - comparable_previous) > 0 then 'better'
            when direction * (value - comparable_previous) < 0 then 'worse'
            else 'unchanged'
        end as trend

    from chosen

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
        data_through,
        is_partial_period,
        is_preliminary,
        cast(round(value, 2) as decimal(18, 2)) as value,
        case
            when value is not null then 'ok'
            when is_suppressed then 'withheld'
            else 'missing'
        end as value_status,
        is_suppressed,
        comparison_basis,
        baseline_period,
        cast(round(comparable_baseline, 2) as decimal(18, 2)) as baseline_value,
        target_value_cast as target_value,
        target_period,
        cast(round(value - comparable_baseline, 2) as decimal(18, 2)) as change_since_baseline,
        cast(
            round(100 * (value - comparable_baseline) / nullif(abs(comparable_baseline), 0), 1)
            as decimal(9, 1)
        ) as change_since_baseline_pct,
        previous_period,
        case when is_partial_period then same_period_previous_through end as previous_through,
        cast(round(comparable_previous, 2) as decimal(18, 2)) as previous_value,
        cast(
            round(100 * (value - comparable_previous) / nullif(abs(comparable_previous), 0), 1)
            as decimal(9, 1)
        ) as change_since_previous_pct,
        trend,
        status,
        is_latest,
        cast(round(county_value, 2) as decimal(18, 2)) as county_value,
        cast(round(national_value, 2) as decimal(18, 2)) as national_value,
        cast(round(comparison_group_value, 2) as decimal(18, 2)) as comparison_group_value,
        cast(round(value_girls, 2) as decimal(18, 2)) as value_girls,
        value_girls_status,
        cast(round(value_boys, 2) as decimal(18, 2)) as value_boys,
        value_boys_status

    from (select *, cast(target_value as decimal(18, 2)) as target_value_cast from judged)

)

select * from final
