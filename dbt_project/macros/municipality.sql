{#-
    The municipality the warehouse is built for, as SQL string literals.
    var('municipality_code') is a 4-character kommunkod; if it arrives as a number
    (e.g. `--vars '{municipality_code: 0180}'` parsed by YAML as 180) it is zero-padded
    back to 4 characters.
-#}
{% macro municipality_code_literal() -%}
    {%- set code = var('municipality_code') -%}
    {%- if code is number -%}
        {%- set code = '%04d' % code -%}
    {%- endif -%}
    cast('{{ code | string | trim | replace("'", "''") }}' as {{ dbt.type_string() }})
{%- endmacro %}

{% macro municipality_name_literal() -%}
    cast('{{ var("municipality_name") | string | trim | replace("'", "''") }}' as {{ dbt.type_string() }})
{%- endmacro %}
