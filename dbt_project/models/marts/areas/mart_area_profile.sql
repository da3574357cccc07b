{#-
    The cross-sector lägesbild per area: one row per area × year joining school attendance,
    the housing companies' vandalism costs, population and the survey and statistics values
    published for the area. Every figure comes from a published mart or from
    int_indicator_values_unioned (suppressed with the same macros), so nothing here is
    finer than what those publish.

    Year alignment: a school year counts for the calendar year it ends in (2024/25 → 2025),
    as Kolada counts school-year KPIs; vandalism and population are calendar years. The
    survey and statistics columns are the indicators listed in var('area_profile_indicators').
-#}

with

areas as (

    select area_code, area_name from {{ ref('dim_area') }}

),

area_values as (

    select * from {{ ref('int_indicator_values_unioned') }}
    where area_level = 'area'

),

attendance as (

    select
        area_code,
        cast(substr(period, 1, 4) as integer) + 1 as year,
        period as school_year,
        max(case when indicator_id = 'school_absence_pct' then value end) as school_absence_pct,
        max(case when indicator_id = 'problematic_absence_15_pct' then value end)
            as problematic_absence_15_pct,
        {%- for indicator in ['school_absence_pct', 'problematic_absence_15_pct'] %}
        bool_or(indicator_id = '{{ indicator }}' and is_suppressed and value is null)
            as is_{{ indicator }}_withheld,
        {%- endfor %}
        max(case when is_preliminary then 1 else 0 end) = 1 as is_school_year_in_progress,
        max(case when is_suppressed then 1 else 0 end) = 1 as is_attendance_suppressed

    from area_values
    where source = 'attendance'
    group by area_code, period

),

vandalism as (

    select * from {{ ref('mart_vandalism_area_year') }}
    where scope = 'area'

),

population as (

    select * from {{ ref('int_population_area_year') }}
    where area_level = 'area'

),

statistics as (

    select
        area_code,
        cast(period as integer) as year,
        {%- for indicator in var('area_profile_indicators') %}
        max(case when indicator_id = '{{ indicator }}' then value end) as {{ indicator }},
        bool_or(indicator_id = '{{ indicator }}' and is_suppressed and value is null)
            as is_{{ indicator }}_withheld,
        {%- endfor %}
        max(case when is_suppressed then 1 else 0 end) = 1 as is_statistics_suppressed

    from area_values
    where source in ('kolada', 'pxweb', 'survey')
    group by area_code, period

),

area_years as (

    select area_code, year from attendance
    union
    select area_code, year from vandalism
    union
    select area_code, year from population
    union
    select area_code, year from statistics

),

final as (

    select
        areas.area_code,
        areas.area_name,
        area_years.year,
        cast(population.inhabitants as bigint) as inhabitants,
        cast(population.inhabitants_0_19 as bigint) as inhabitants_0_19,
        attendance.school_year,
        {{ as_pct('attendance.school_absence_pct', 2) }} as school_absence_pct,
        {{ measure_status('attendance.school_absence_pct', 'attendance.is_school_absence_pct_withheld') }}
            as school_absence_pct_status,
        {{ as_pct('attendance.problematic_absence_15_pct', 2) }} as problematic_absence_15_pct,
        {{ measure_status('attendance.problematic_absence_15_pct',
                          'attendance.is_problematic_absence_15_pct_withheld') }}
            as problematic_absence_15_pct_status,
        coalesce(attendance.is_school_year_in_progress, false) as is_school_year_in_progress,
        vandalism.vandalism_orders,
        vandalism.vandalism_cost_sek,
        -- a vandalism row whose orders are NULL was withheld; no row is no data
        {{ measure_status('vandalism.vandalism_orders',
                          'vandalism.area_code is not null and vandalism.vandalism_orders is null') }}
            as vandalism_orders_status,
        vandalism.apartments,
        vandalism.cost_per_apartment_sek,
        coalesce(vandalism.cost_per_apartment_sek_status, 'missing') as cost_per_apartment_sek_status,
        vandalism.cost_per_1000_inhabitants_sek,
        coalesce(vandalism.cost_per_1000_inhabitants_sek_status, 'missing')
            as cost_per_1000_inhabitants_sek_status,
        vandalism.data_through as vandalism_data_through,
        {%- for indicator in var('area_profile_indicators') %}
        statistics.{{ indicator }},
        {{ measure_status('statistics.' ~ indicator, 'statistics.is_' ~ indicator ~ '_withheld') }}
            as {{ indicator }}_status,
        {%- endfor %}
        coalesce(attendance.is_attendance_suppressed, false)
            or coalesce(vandalism.is_suppressed, false)
            or coalesce(statistics.is_statistics_suppressed, false) as is_suppressed

    from area_years
    inner join areas
        on area_years.area_code = areas.area_code
    left join population
        on area_years.area_code = population.area_code
        and area_years.year = population.year
    left join attendance
        on area_years.area_code = attendance.area_code
        and area_years.year = attendance.year
    left join vandalism
        on area_years.area_code = vandalism.area_code
        and area_years.year = vandalism.year
    left join statistics
        on area_years.area_code = statistics.area_code
        and area_years.year = statistics.year

)

select * from final
