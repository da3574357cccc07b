with

source as (

    select * from {{ source('statistics', 'population_ages') }}

)

select
    cast(age as {{ string_type() }}) as age,
    cast(is_total as boolean) as is_total
from source
