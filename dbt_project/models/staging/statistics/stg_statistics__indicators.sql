with

source as (

    select * from {{ source('statistics', 'indicators') }}

)

select
    cast(indicator_id as varchar) as indicator_id,
    cast(source as varchar) as source,
    nullif(cast(source_id as varchar), '') as source_id,
    cast(title as varchar) as title,
    cast(unit as varchar) as unit,
    cast(higher_is_better as boolean) as higher_is_better,
    cast(population_group as varchar) as population_group,
    nullif(cast(goals as varchar), '') as goals
from source
