{#- The housing companies' property registers (reference/properties.csv), typed. -#}

with

source as (

    {{ source_or_empty(
        'housing', 'properties',
        env_var('LAGESBILD_CLEAN_DIR') ~ '/reference/properties.parquet',
        {'company': 'varchar', 'property_id': 'varchar', 'area_code': 'varchar',
         'apartments': 'bigint'}
    ) }}

),

renamed as (

    select
        ---------- ids
        cast(company as {{ string_type() }}) as company,
        cast(property_id as {{ string_type() }}) as property_id,
        cast(area_code as {{ string_type() }}) as area_code,

        ---------- numerics
        cast(apartments as integer) as apartments

    from source

)

select * from renamed
