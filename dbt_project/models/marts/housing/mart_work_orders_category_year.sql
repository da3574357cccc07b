{#-
    Work orders and their cost per category for the whole municipality, per calendar year
    of the report: each vandalism category, their total (`all_vandalism`) and the orders
    that are not vandalism (`not_vandalism`, counted but outside the vandalism total).

    Suppression (macros/suppression.sql), the "persons" count being the number of orders:
      primary:   orders < min_persons → orders and cost NULL;
      secondary: per year, if exactly one vandalism category is suppressed while
                 all_vandalism is published, the published vandalism category with the
                 fewest orders is suppressed too.
-#}

with

counted as (

    select * from {{ ref('int_work_orders_counted') }}

),

categories as (

    select category, is_vandalism, sort_order
    from (
        values
            ('graffiti', true, 1),
            ('broken_glass', true, 2),
            ('fire', true, 3),
            ('doors_and_locks', true, 4),
            ('other_vandalism', true, 5),
            ('all_vandalism', true, 6),
            ('not_vandalism', false, 7)
    ) as listed (category, is_vandalism, sort_order)

),

years as (

    select distinct reported_year as year from counted

),

measured as (

    select
        years.year,
        categories.category,
        categories.is_vandalism,
        categories.sort_order,
        coalesce(sum(counted.orders), 0) as orders,
        coalesce(sum(counted.cost_sek), 0) as cost_sek

    from years
    cross join categories
    left join counted
        on counted.reported_year = years.year
        and (
            counted.category = categories.category
            or (categories.category = 'all_vandalism' and counted.is_vandalism)
        )
    group by years.year, categories.category, categories.is_vandalism, categories.sort_order

),

flagged as (

    select
        measured.*,
        {{ is_small_count('orders') }} as is_primary_suppressed

    from measured

),

secondary as (

    select
        flagged.*,
        {{ secondary_suppression(
            partition_by=['year'],
            is_part="is_vandalism and category <> 'all_vandalism'",
            is_total="category = 'all_vandalism'",
            primary_flag='is_primary_suppressed',
            order_by=['orders', 'sort_order']
        ) }} as is_secondary_suppressed

    from flagged

),

final as (

    select
        year,
        category,
        is_vandalism,
        {{ suppress_if('is_primary_suppressed or is_secondary_suppressed',
                       'cast(orders as bigint)') }}
            as orders,
        {{ suppress_if('is_primary_suppressed or is_secondary_suppressed',
                       'cast(cost_sek as decimal(18, 2))') }}
            as cost_sek,
        {{ suppression_flag(['is_primary_suppressed', 'is_secondary_suppressed']) }}
            as is_suppressed

    from secondary

)

select * from final
