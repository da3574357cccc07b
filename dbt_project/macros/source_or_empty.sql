{#-
    select * from a dbt source that reads parquet files, or, while no file matches yet
    (e.g. a municipality that has not delivered any housing export), an empty relation with
    the given columns, so the rest of the project still builds. `path` is the glob the
    source's external_location reads; `columns` maps column name → SQL type.
    The files are counted by `count_files` (engines.sql): staging only.
-#}
{% macro source_or_empty(source_name, table_name, path, columns) -%}
    {%- set relation = source(source_name, table_name) -%}
    {%- set found = 1 -%}
    {%- if execute -%}
        {%- set found = count_files(path) -%}
    {%- endif -%}
    {%- if found > 0 -%}
        select * from {{ relation }}
    {%- else -%}
        select
        {%- for name, type in columns.items() %}
            cast(null as {{ string_type() if type == 'varchar' else type }}) as {{ name }}{{ "," if not loop.last }}
        {%- endfor %}
        where false
    {%- endif -%}
{%- endmacro %}
