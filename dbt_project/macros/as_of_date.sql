{#- The day a run is for: env var LAGESBILD_AS_OF_DATE (YYYY-MM-DD, the pipeline sets it to the
    run date), else var as_of_date, else today. Keeps a rerun of the same load on another day
    identical. An environment variable and not a --vars value: a changed var makes dbt parse
    the whole project again, a changed environment variable only the files that use it. -#}
{% macro as_of_date() -%}
    {%- set day = env_var('LAGESBILD_AS_OF_DATE', '') or var('as_of_date', none) -%}
    {%- if day -%}
        cast('{{ day }}' as date)
    {%- else -%}
        cast({{ dbt.current_timestamp() }} as date)
    {%- endif -%}
{%- endmacro %}
