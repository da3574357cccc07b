{#- Areas of the municipality with their number of school units; reference data only. -#}

with

areas as (

    select * from {{ ref('stg_reference__areas') }}

),

schools as (

    select * from {{ ref('stg_reference__schools') }}

),

school_counts as (

    select
        area_code,
        count(*) as school_units

    from schools
    group by area_code

),

final as (

    select
        areas.area_code,
        areas.area_name,
        areas.area_type,
        areas.municipality_code,
        areas.municipality_name,
        coalesce(school_counts.school_units, 0) as school_units

    from areas
    left join school_counts
        on areas.area_code = school_counts.area_code

)

select * from final
