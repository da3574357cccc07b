{#-
    The municipality's yearly vandalism follow-up in one row per year ("kostnader för
    skadegörelse, mäts årligen"): the municipality rows of mart_vandalism_area_year with
    the number of orders that were not vandalism next to them. Suppression as in those
    marts (a municipality total is only NULL when it has fewer than min_persons orders).
-#}

with

area_year as (

    select * from {{ ref('mart_vandalism_area_year') }}
    where scope = 'municipality'

),

categories as (

    select * from {{ ref('mart_work_orders_category_year') }}
    where category = 'not_vandalism'

),

final as (

    select
        area_year.year,
        area_year.data_through,
        area_year.vandalism_orders,
        area_year.vandalism_cost_sek,
        area_year.apartments,
        area_year.cost_per_apartment_sek,
        area_year.cost_per_apartment_sek_status,
        area_year.cost_change_pct,
        area_year.cost_change_pct_status,
        categories.orders as not_vandalism_orders,
        area_year.is_suppressed or categories.is_suppressed as is_suppressed

    from area_year
    left join categories
        on area_year.year = categories.year

)

select * from final
