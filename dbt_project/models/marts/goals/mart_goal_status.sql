{#-
    Where each goal stands now: one row per goal × area level × area, from the latest
    period of each of its indicators (mart_goal_progress). Goals with no indicator that can
    measure them get one municipality row with status `no_indicator`; goals whose indicators
    have no values yet (a source not configured) get one with `no_data`.

    status: the least favourable of the indicators' latest statuses, in the order
    off_track < no_baseline < preliminary < baseline < on_track < target_met, ignoring
    indicators with no data; `no_data` when none of them has a value. A goal is only
    on track when every indicator with data is: one that cannot be judged yet (no
    baseline, a period in progress) holds it back.
-#}

with

goals as (

    select * from {{ ref('goals') }}

),

linked_goals as (

    select distinct goal_id from {{ ref('goal_indicators') }}

),

latest as (

    select * from {{ ref('mart_goal_progress') }}
    where is_latest

),

ranked as (

    select
        goal_id,
        area_level,
        area_code,
        cast(count(*) as bigint) as indicators,
        cast(count(*) filter (where status <> 'no_data') as bigint) as indicators_with_data,
        min(
            case status
                when 'off_track' then 1
                when 'no_baseline' then 2
                when 'preliminary' then 3
                when 'baseline' then 4
                when 'on_track' then 5
                when 'target_met' then 6
            end
        ) as worst_rank,
        max(data_through) as data_through,
        bool_or(coalesce(is_preliminary, false)) as has_preliminary_values,
        bool_or(coalesce(is_partial_period, false)) as has_partial_periods

    from latest
    group by goal_id, area_level, area_code

),

final as (

    select
        goals.goal_id,
        goals.display_order,
        goals.framework,
        goals.goal,
        goals.goal_en,
        goals.owner_sector,
        goals.source_document,
        coalesce(ranked.area_level, 'municipality') as area_level,
        coalesce(ranked.area_code, {{ municipality_code_literal() }}) as area_code,
        coalesce(ranked.indicators, cast(0 as bigint)) as indicators,
        coalesce(ranked.indicators_with_data, cast(0 as bigint)) as indicators_with_data,
        case
            when linked_goals.goal_id is null then 'no_indicator'
            when ranked.worst_rank is null then 'no_data'
            when ranked.worst_rank = 1 then 'off_track'
            when ranked.worst_rank = 2 then 'no_baseline'
            when ranked.worst_rank = 3 then 'preliminary'
            when ranked.worst_rank = 4 then 'baseline'
            when ranked.worst_rank = 5 then 'on_track'
            else 'target_met'
        end as status,
        ranked.data_through,
        coalesce(ranked.has_preliminary_values, false) as has_preliminary_values,
        coalesce(ranked.has_partial_periods, false) as has_partial_periods

    from goals
    left join linked_goals
        on goals.goal_id = linked_goals.goal_id
    left join ranked
        on goals.goal_id = ranked.goal_id

)

select * from final
