{#- The clean work orders, typed; costs in SEK excluding VAT (exact decimals). -#}

with

source as (

    {{ source_or_empty(
        'housing', 'work_orders',
        env_var('LAGESBILD_CLEAN_DIR') ~ '/housing_work_orders/period=*/*.parquet',
        {'company': 'varchar', 'order_id': 'varchar', 'reported_date': 'date',
         'completed_date': 'date', 'property_id': 'varchar', 'building': 'varchar',
         'entrance': 'varchar', 'area_code': 'varchar', 'category': 'varchar',
         'is_vandalism': 'boolean', 'status': 'varchar', 'cost_excl_vat_ore': 'bigint',
         'credit_notes': 'integer', 'versions': 'integer', 'source': 'varchar',
         'load_id': 'varchar'}
    ) }}

),

renamed as (

    select
        ---------- ids
        cast(company as {{ string_type() }}) as company,
        cast(order_id as {{ string_type() }}) as order_id,
        cast(property_id as {{ string_type() }}) as property_id,
        cast(building as {{ string_type() }}) as building,
        cast(entrance as {{ string_type() }}) as entrance,
        cast(area_code as {{ string_type() }}) as area_code,

        ---------- dates
        cast(reported_date as date) as reported_date,
        cast(extract(year from reported_date) as integer) as reported_year,
        cast({{ dbt.date_trunc('month', 'reported_date') }} as date) as reported_month,
        cast(completed_date as date) as completed_date,

        ---------- text
        cast(category as {{ string_type() }}) as category,
        cast(is_vandalism as boolean) as is_vandalism,
        cast(status as {{ string_type() }}) as status,
        coalesce(status = 'cancelled', false) as is_cancelled,
        cast(source as {{ string_type() }}) as source_layout,
        cast(load_id as {{ string_type() }}) as load_id,

        ---------- numerics
        -- exact decimals (a division would give a double, whose sums depend on the order
        -- rows arrive in and round differently from one run to the next)
        cast(cost_excl_vat_ore * 0.01 as decimal(18, 2)) as cost_excl_vat_sek,
        cast(credit_notes as integer) as credit_notes,
        cast(versions as integer) as versions

    from source

)

select * from renamed
