{#- School units with their area; reference data only, no persons. -#}

with

schools as (

    select * from {{ ref('stg_reference__schools') }}

),

areas as (

    select * from {{ ref('stg_reference__areas') }}

),

final as (

    select
        schools.school_unit_code,
        schools.school_name,
        schools.school_type,
        schools.grades,
        schools.area_code,
        areas.area_name,
        schools.municipality_code,
        schools.attendance_system

    from schools
    left join areas
        on schools.area_code = areas.area_code

)

select * from final
