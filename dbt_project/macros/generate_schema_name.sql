{#-
    Use the configured schema name as is (`staging`, `intermediate`, `marts`, `seeds`)
    instead of dbt's default `<target_schema>_<custom_schema>` (`main_marts`).
    The publish step copies every table of schema `marts`, so the name must be exact.
    Nodes without a custom schema land in the target schema (`main` for DuckDB).
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
