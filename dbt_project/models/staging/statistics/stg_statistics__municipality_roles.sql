with

source as (

    select * from {{ source('statistics', 'municipality_roles') }}

)

select
    cast(area_code as {{ string_type() }}) as area_code,
    cast(role as {{ string_type() }}) as role,
    cast(role_name as {{ string_type() }}) as role_name
from source
