{#- The days each attendance source delivered (before precedence); empty until a clean step
    has written them (a warehouse cleaned by an older version). -#}

with

source as (

    {{ source_or_empty(
        'attendance', 'source_days',
        env_var('LAGESBILD_CLEAN_DIR') ~ '/attendance/source_days/period=*.parquet',
        {'source': 'varchar', 'date': 'date', 'lessons': 'bigint'}
    ) }}

),

renamed as (

    select
        cast(source as {{ string_type() }}) as source_layout,
        cast(date as date) as attendance_date,
        cast(lessons as bigint) as lessons

    from source

)

select * from renamed
