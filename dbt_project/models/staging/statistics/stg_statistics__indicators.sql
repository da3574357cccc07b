with

source as (

    select * from {{ source('statistics', 'indicators') }}

)

select
    cast(indicator_id as {{ string_type() }}) as indicator_id,
    cast(source as {{ string_type() }}) as source,
    nullif(cast(source_id as {{ string_type() }}), '') as source_id,
    cast(title as {{ string_type() }}) as title,
    cast(unit as {{ string_type() }}) as unit,
    cast(higher_is_better as boolean) as higher_is_better,
    cast(population_group as {{ string_type() }}) as population_group,
    nullif(cast(goals as {{ string_type() }}), '') as goals
from source
