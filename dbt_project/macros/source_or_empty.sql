{#-
    select * from a dbt source that reads parquet files, or, while no file matches yet
    (e.g. a municipality that has not delivered any housing export), an empty relation with
    the given columns, so the rest of the project still builds. `path` is the glob the
    source's external_location reads; `columns` maps column name → SQL type.
    Uses DuckDB's glob() table function: staging only.
-#}
{% macro source_or_empty(source_name, table_name, path, columns) -%}
    {%- set relation = source(source_name, table_name) -%}
    {%- set found = 1 -%}
    {%- if execute -%}
        {%- set found = run_query("select count(*) from glob('" ~ path ~ "')").columns[0].values()[0] -%}
    {%- endif -%}
    {%- if found > 0 -%}
        select * from {{ relation }}
    {%- else -%}
        select
        {%- for name, type in columns.items() %}
            cast(null as {{ type }}) as {{ name }}{{ "," if not loop.last }}
        {%- endfor %}
        where false
    {%- endif -%}
{%- endmacro %}
