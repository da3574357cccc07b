{#-
    Vandalism work orders and their cost per area and for the whole municipality, per
    calendar year of the report (the current year so far, up to data_through), with cost
    per apartment and the change against the same period of the previous year.

    Suppression (macros/suppression.sql), the "persons" count being the number of orders:
      primary:   vandalism_orders < min_persons → orders, cost, cost per apartment NULL;
      secondary: per year, if exactly one area row is suppressed while the municipality row
                 is published, the published area with the fewest orders is suppressed too;
      change:    NULL when this row or the previous period's figures are suppressed (the
                 previous period goes through the same primary and secondary rules), and
                 when the previous year has no data at all.
-#}

with

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

data_end as (

    select max(reported_date) as last_date from all_orders

),

report_years as (

    select distinct reported_year as year from all_orders

),

years as (

    -- the current year runs up to the last report date; earlier years are whole
    select
        report_years.year,
        report_years.year - 1 in (select year from report_years) as has_previous_year,
        case
            when extract(year from data_end.last_date) = report_years.year
                then data_end.last_date
            else cast(cast(report_years.year as {{ string_type() }}) || '-12-31' as date)
        end as data_through

    from report_years
    cross join data_end

),

spine as (

    select
        'area' as scope,
        areas.area_code,
        areas.area_name,
        years.year,
        years.data_through,
        years.has_previous_year

    from areas
    cross join years

    union all

    select
        'municipality' as scope,
        {{ municipality_code_literal() }} as area_code,
        {{ municipality_name_literal() }} as area_name,
        years.year,
        years.data_through,
        years.has_previous_year

    from years

),

apartments as (

    select area_code, sum(apartments) as apartments
    from properties
    group by area_code

),

measured as (

    select
        spine.scope,
        spine.area_code,
        spine.area_name,
        spine.year,
        spine.data_through,
        spine.has_previous_year,
        coalesce(sum(case when counted.reported_year = spine.year then counted.orders end), 0)
            as vandalism_orders,
        coalesce(sum(case when counted.reported_year = spine.year then counted.cost_sek end), 0)
            as vandalism_cost_sek,
        coalesce(sum(case when counted.reported_year = spine.year - 1 then counted.orders end), 0)
            as previous_orders,
        coalesce(sum(case when counted.reported_year = spine.year - 1 then counted.cost_sek end), 0)
            as previous_cost_sek

    from spine
    left join counted
        on (spine.scope = 'municipality' or counted.area_code = spine.area_code)
        and (
            counted.reported_year = spine.year
            or (
                counted.reported_year = spine.year - 1
                and counted.reported_date <= {{ dbt.dateadd('year', -1, 'spine.data_through') }}
            )
        )
    group by
        spine.scope,
        spine.area_code,
        spine.area_name,
        spine.year,
        spine.data_through,
        spine.has_previous_year

),

with_apartments as (

    select
        measured.*,
        case
            when measured.scope = 'municipality'
                then (select sum(apartments) from apartments)
            else apartments.apartments
        end as apartments,
        {{ is_small_count('measured.vandalism_orders') }} as is_primary_suppressed,
        {{ is_small_count('measured.previous_orders') }} as is_previous_primary_suppressed

    from measured
    left join apartments
        on measured.scope = 'area'
        and measured.area_code = apartments.area_code

),

secondary as (

    select
        with_apartments.*,
        {{ secondary_suppression(
            partition_by=['year'],
            is_part="scope = 'area'",
            is_total="scope = 'municipality'",
            primary_flag='is_primary_suppressed',
            order_by=['vandalism_orders', 'area_code']
        ) }} as is_secondary_suppressed,
        {{ secondary_suppression(
            partition_by=['year'],
            is_part="scope = 'area'",
            is_total="scope = 'municipality'",
            primary_flag='is_previous_primary_suppressed',
            order_by=['previous_orders', 'area_code']
        ) }} as is_previous_secondary_suppressed

    from with_apartments

),

flagged as (

    select
        secondary.*,
        is_primary_suppressed or is_secondary_suppressed as is_hidden,
        has_previous_year
            and (is_previous_primary_suppressed or is_previous_secondary_suppressed)
            as is_change_suppressed

    from secondary

),

population as (

    select area_code, year, inhabitants from {{ ref('int_population_area_year') }}

),

final as (

    select
        flagged.scope,
        flagged.area_code,
        flagged.area_name,
        flagged.year,
        flagged.data_through,
        {{ suppress_if('is_hidden', 'cast(vandalism_orders as bigint)') }} as vandalism_orders,
        {{ suppress_if('is_hidden', 'cast(vandalism_cost_sek as decimal(18, 2))') }}
            as vandalism_cost_sek,
        cast(apartments as bigint) as apartments,
        {{ suppress_if('is_hidden', as_money('vandalism_cost_sek / nullif(apartments, 0)')) }}
            as cost_per_apartment_sek,
        {{ measure_status('nullif(apartments, 0)', 'is_hidden') }} as cost_per_apartment_sek_status,
        cast(population.inhabitants as bigint) as inhabitants,
        {{ suppress_if('is_hidden',
                       as_money('1000 * vandalism_cost_sek / nullif(population.inhabitants, 0)')) }}
            as cost_per_1000_inhabitants_sek,
        {{ measure_status('nullif(population.inhabitants, 0)', 'is_hidden') }}
            as cost_per_1000_inhabitants_sek_status,
        {{ suppress_if('is_hidden or is_change_suppressed or not has_previous_year',
                       as_pct(safe_pct('vandalism_cost_sek - previous_cost_sek', 'previous_cost_sek'), 1)) }}
            as cost_change_pct,
        {{ measure_status(
            "case when has_previous_year then nullif(previous_cost_sek, 0) end",
            'is_hidden or is_change_suppressed') }} as cost_change_pct_status,
        {{ suppression_flag(['is_hidden', 'is_change_suppressed']) }} as is_suppressed

    from flagged
    -- Population is known for years SCB has published (31 December): NULL before that.
    left join population
        on flagged.area_code = population.area_code
        and flagged.year = population.year

)

select * from final
