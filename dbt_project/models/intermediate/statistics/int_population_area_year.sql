{#-
    Inhabitants per area and year from the PxWeb population table (latest release), the
    denominators for per-1,000-inhabitants measures: the total, the age bands youth work
    uses, and the municipality's total beside each area. The municipality itself is a row
    too (`area_level = 'municipality'`). From reference year 2025 SCB adds cell-key noise,
    so areas need not sum exactly to the municipality total: each figure is as published.
-#}
with

latest as (

    select *
    from {{ ref('stg_statistics__population') }}
    -- releases store only what changed: the latest release of each cell is its value
    qualify row_number() over (
        partition by area_code, age, sex, year order by release_id desc
    ) = 1

),

aged as (

    select
        *,
        try_cast(replace(age, '+', '') as integer) as age_years
    from latest

),

per_area as (

    select
        area_code,
        year,
        sum(case when age = '{{ var("population_total_age", "tot") }}' then inhabitants end)
            as inhabitants,
        sum(case when age_years between 0 and 19 then inhabitants end) as inhabitants_0_19,
        sum(case when age_years between 13 and 19 then inhabitants end) as inhabitants_13_19,
        sum(case when age_years between 16 and 24 then inhabitants end) as inhabitants_16_24,
        max(release_id) as release_id
    from aged
    group by area_code, year

)

select
    a.area_code,
    case when length(a.area_code) = 4 then 'municipality' else 'area' end as area_level,
    left(a.area_code, 4) as municipality_code,
    a.year,
    a.inhabitants,
    a.inhabitants_0_19,
    a.inhabitants_13_19,
    a.inhabitants_16_24,
    m.inhabitants as municipality_inhabitants,
    a.release_id
from per_area as a
left join per_area as m
    on m.area_code = left(a.area_code, 4)
    and m.year = a.year
