{#-
    The BI contract's column shapes (docs/bi-contract.md), so every mart writes them alike.

    * measure_status: why a measure is NULL, as 'ok' | 'withheld' | 'missing'. `withheld`
      when the disclosure rules nulled it (the condition), `missing` when there was nothing
      to publish (no data, a zero denominator), `ok` otherwise.
    * as_decimal / as_pct / as_money: a computed value rounded to its documented decimals
      and cast to a DECIMAL, so DuckDB, parquet and PostgreSQL hold the same exact value
      (no float noise): percentages DECIMAL(9, s), money DECIMAL(18, 2).
-#}

{% macro measure_status(value_expr, withheld_condition) -%}
    case
        when coalesce(({{ withheld_condition }}), false) then 'withheld'
        when ({{ value_expr }}) is null then 'missing'
        else 'ok'
    end
{%- endmacro %}

{% macro as_decimal(expr, decimals, precision=18) -%}
    cast(round({{ expr }}, {{ decimals }}) as decimal({{ precision }}, {{ decimals }}))
{%- endmacro %}

{% macro as_pct(expr, decimals) -%}
    {{ as_decimal(expr, decimals, 9) }}
{%- endmacro %}

{% macro as_money(expr) -%}
    {{ as_decimal(expr, 2, 18) }}
{%- endmacro %}
