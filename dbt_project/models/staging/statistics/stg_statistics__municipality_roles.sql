with

source as (

    select * from {{ source('statistics', 'municipality_roles') }}

)

select
    cast(area_code as varchar) as area_code,
    cast(role as varchar) as role,
    cast(role_name as varchar) as role_name
from source
