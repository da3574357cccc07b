{#-
    safe_pct: 100 * numerator / denominator, NULL when the denominator is 0 or NULL
    (no division by zero). `decimals` rounds the result; none = unrounded.
-#}
{% macro safe_pct(numerator, denominator, decimals=none) -%}
    {%- set pct -%}
        (100.0 * ({{ numerator }}) / nullif({{ denominator }}, 0))
    {%- endset -%}
    {%- if decimals is none -%}
        {{ pct }}
    {%- else -%}
        round({{ pct }}, {{ decimals }})
    {%- endif -%}
{%- endmacro %}

{#-
    Absence as a percentage of offered time: 100 * absence minutes / offered minutes.
    NULL when offered minutes are 0 or NULL. Marts publish 2 decimals (decimals=2);
    pupil-level figures stay unrounded.
-#}
{% macro absence_pct(minutes, offered, decimals=none) -%}
    {{ safe_pct(minutes, offered, decimals) }}
{%- endmacro %}
