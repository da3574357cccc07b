{#-
    Vandalism work orders and their cost per area and for the whole municipality, per
    calendar month of the report (every month from the first to the last with data).

    Suppression (macros/suppression.sql), the "persons" count being the number of orders:
      primary:   vandalism_orders < min_persons → orders and cost NULL;
      secondary: per month, if exactly one area row is suppressed while the municipality
                 row is published, the published area with the fewest orders is suppressed too.
-#}

with

all_orders as (

    select * from {{ ref('int_work_orders_counted') }}

),

counted as (

    select * from all_orders
    where is_vandalism

),

areas as (

    select * from {{ ref('stg_reference__areas') }}

),

months as (

    select distinct reported_month as month from all_orders

),

spine as (

    select 'area' as scope, areas.area_code, areas.area_name, months.month
    from areas
    cross join months

    union all

    select
        'municipality' as scope,
        {{ municipality_code_literal() }} as area_code,
        {{ municipality_name_literal() }} as area_name,
        months.month
    from months

),

measured as (

    select
        spine.scope,
        spine.area_code,
        spine.area_name,
        spine.month,
        coalesce(sum(counted.orders), 0) as vandalism_orders,
        coalesce(sum(counted.cost_sek), 0) as vandalism_cost_sek

    from spine
    left join counted
        on counted.reported_month = spine.month
        and (spine.scope = 'municipality' or counted.area_code = spine.area_code)
    group by spine.scope, spine.area_code, spine.area_name, spine.month

),

flagged as (

    select
        measured.*,
        {{ is_small_count('vandalism_orders') }} as is_primary_suppressed

    from measured

),

secondary as (

    select
        flagged.*,
        {{ secondary_suppression(
            partition_by=['month'],
            is_part="scope = 'area'",
            is_total="scope = 'municipality'",
            primary_flag='is_primary_suppressed',
            order_by=['vandalism_orders', 'area_code']
        ) }} as is_secondary_suppressed

    from flagged

),

final as (

    select
        scope,
        area_code,
        area_name,
        month,
        {{ suppress_if('is_primary_suppressed or is_secondary_suppressed',
                       'cast(vandalism_orders as bigint)') }}
            as vandalism_orders,
        {{ suppress_if('is_primary_suppressed or is_secondary_suppressed',
                       'cast(vandalism_cost_sek as decimal(18, 2))') }}
            as vandalism_cost_sek,
        {{ suppression_flag(['is_primary_suppressed', 'is_secondary_suppressed']) }}
            as is_suppressed

    from secondary

)

select * from final
