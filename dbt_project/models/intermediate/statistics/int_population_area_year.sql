{#-
    Inhabitants per area and year from the PxWeb population table (latest release), the
    denominators for per-1,000-inhabitants measures: the total, the age bands youth work
    uses (single years or SCB's 5-year bands: see `aged`), and the municipality's total
    beside each area. The municipality itself is a row
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

totals as (

    select age from {{ ref('stg_statistics__population_ages') }} where is_total

),

aged as (

    -- an age code is the total (the catalogue says which), a single year (`15`), a band
    -- (`15-19`, SCB's DeSO tables) or open-ended (`100+`, `80-`)
    select
        latest.*,
        t.age is not null as is_total,
        try_cast(regexp_extract(latest.age, '^(\d+)', 1) as integer) as age_from,
        coalesce(
            try_cast(regexp_extract(latest.age, '^\d+-(\d+)$', 1) as integer),
            try_cast(regexp_extract(latest.age, '^(\d+)(\+|-)?$', 1) as integer)
        ) as age_to
    from latest
    left join totals as t on t.age = latest.age

),

{#- The people of an age code inside a range of years: all of a single year or a band inside
    it, a band's share by its years where it straddles the range (10-14 counts 2 of its 5
    years towards 13-19): exact for single years, an estimate for bands. -#}
{%- set in_years = "inhabitants * greatest(0, least(age_to, HI) - greatest(age_from, LO) + 1)"
    ~ " / (age_to - age_from + 1)" %}

per_area as (

    select
        area_code,
        year,
        sum(case when is_total then inhabitants end) as inhabitants,
        cast(round(sum(case when not is_total then {{ in_years.replace('LO', '0').replace('HI', '19') }} end)) as {{ hugeint_type() }})
            as inhabitants_0_19,
        cast(round(sum(case when not is_total then {{ in_years.replace('LO', '13').replace('HI', '19') }} end)) as {{ hugeint_type() }})
            as inhabitants_13_19,
        cast(round(sum(case when not is_total then {{ in_years.replace('LO', '16').replace('HI', '24') }} end)) as {{ hugeint_type() }})
            as inhabitants_16_24,
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
