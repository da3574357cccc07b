{#-
    Same-period values: for every period still in progress (is_partial_period in
    int_indicator_values_unioned), each earlier period of the same indicator and area cut
    at the same point. The housing companies' 2026 through 30 June is compared with
    1 January–30 June 2025 and 2024, never with whole years (as mart_vandalism_area_year's
    cost_change_pct does for the previous year).

    Only the vandalism indicators can be cut: their orders have dates. Attendance per
    school year (and per term) and the yearly statistics have no same-period values here,
    so a period of theirs in progress gets status `preliminary` in mart_goal_progress.

    Suppression as in mart_vandalism_area_year, per cut: fewer than min_persons orders →
    NULL; when exactly one area is suppressed and the municipality is not, the published
    area with the fewest orders is suppressed too.
-#}

with

indicator_values as (

    select * from {{ ref('int_indicator_values_unioned') }}

),

counted as (

    select * from {{ ref('int_work_orders_counted') }}
    where is_vandalism

),

all_orders as (

    select * from {{ ref('int_work_orders_counted') }}

),

areas as (

    select * from {{ ref('stg_reference__areas') }}

),

properties as (

    select * from {{ ref('stg_housing__properties') }}

),

partial_years as (

    select distinct
        period,
        cast(period as integer) as year,
        data_through

    from indicator_values
    where source = 'housing'
        and is_partial_period
        and data_through is not null

),

cuts as (

    -- every earlier year with orders, up to the same day of the year
    select
        partial_years.period,
        partial_years.data_through,
        earlier.year as compared_year,
        cast(
            {{ minus_years('partial_years.data_through', 'cast(partial_years.year - earlier.year as integer)') }}
            as date
        ) as compared_through

    from partial_years
    inner join (select distinct reported_year as year from all_orders) as earlier
        on earlier.year < partial_years.year

),

spine as (

    select 'area' as scope, areas.area_code, cuts.*
    from areas
    cross join cuts

    union all

    select 'municipality' as scope, {{ municipality_code_literal() }} as area_code, cuts.*
    from cuts

),

measured as (

    select
        spine.scope,
        spine.area_code,
        spine.period,
        spine.compared_year,
        spine.compared_through,
        coalesce(sum(counted.orders), 0) as orders,
        coalesce(sum(counted.cost_sek), 0) as cost_sek

    from spine
    left join counted
        on (spine.scope = 'municipality' or counted.area_code = spine.area_code)
        and counted.reported_year = spine.compared_year
        and counted.reported_date <= spine.compared_through
    group by all

),

apartments as (

    select area_code, sum(apartments) as apartments
    from properties
    group by area_code

),

flagged as (

    select
        measured.*,
        case
            when measured.scope = 'municipality' then (select sum(apartments) from apartments)
            else apartments.apartments
        end as apartments,
        {{ is_small_count('measured.orders') }} as is_primary_suppressed

    from measured
    left join apartments
        on measured.scope = 'area'
        and measured.area_code = apartments.area_code

),

secondary as (

    select
        flagged.*,
        {{ secondary_suppression(
            partition_by=['period', 'compared_year'],
            is_part="scope = 'area'",
            is_total="scope = 'municipality'",
            primary_flag='is_primary_suppressed',
            order_by=['orders', 'area_code']
        ) }} as is_secondary_suppressed

    from flagged

),

hidden as (

    select
        *,
        {{ suppression_flag(['is_primary_suppressed', 'is_secondary_suppressed']) }}
            as is_suppressed

    from secondary

),

final as (

    {%- for indicator_id, expression in [
        ('vandalism_cost_sek', 'cast(cast(cost_sek as decimal(18, 2)) as double)'),
        ('vandalism_cost_per_apartment_sek', 'round(cast(cost_sek as double) / nullif(apartments, 0), 2)'),
    ] %}
    select
        '{{ indicator_id }}' as indicator_id,
        scope as area_level,
        area_code,
        period,
        cast(compared_year as {{ string_type() }}) as compared_period,
        compared_through,
        {{ suppress_if('is_suppressed', expression) }} as value,
        is_suppressed

    from hidden
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}

)

select * from final
