{#- The day a run is for: var as_of_date (YYYY-MM-DD) from the pipeline, else today.
    Keeps a rerun of the same load on another day identical. -#}
{% macro as_of_date() -%}
    {%- if var('as_of_date', none) -%}
        cast('{{ var("as_of_date") }}' as date)
    {%- else -%}
        cast({{ dbt.current_timestamp() }} as date)
    {%- endif -%}
{%- endmacro %}
