{#-
    Work orders counted per area × report date × category, cancelled orders left out
    (a cancelled report, e.g. a duplicate report of the same damage, repaired nothing).
    The marts sum these rows per year, month and category.
-#}

with

work_orders as (

    select * from {{ ref('stg_housing__work_orders') }}
    where not is_cancelled

),

counted as (

    select
        area_code,
        reported_date,
        reported_year,
        reported_month,
        category,
        is_vandalism,
        count(*) as orders,
        sum(cost_excl_vat_sek) as cost_sek

    from work_orders
    group by area_code, reported_date, reported_year, reported_month, category, is_vandalism

)

select * from counted
