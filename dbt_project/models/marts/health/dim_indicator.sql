select * from {{ ref('stg_statistics__indicators') }}
