{#-
    The absence measures shared by the attendance marts, so every mart computes and
    suppresses them the same way. `absence_pct_columns` reads the summed minutes of
    `relation`; `suppressed_absence_columns` publishes them with the suppression rules
    (needs the columns is_small_group and is_rate_withheld).
-#}

{% macro absence_pct_columns(relation) -%}
    {%- for kind in ['valid', 'invalid', 'other', 'total'] %}
        {{ absence_pct(relation ~ '.' ~ kind ~ '_absence_minutes', relation ~ '.offered_minutes', 2) }} as {{ kind }}_absence_pct,
    {%- endfor %}
        {{ is_small_count(relation ~ '.pupils') }} as is_small_group,
        {{ is_rate_suppressed(relation ~ '.pupils') }} as is_rate_withheld
{%- endmacro %}

{% macro suppressed_absence_columns() -%}
        {{ suppress_count('pupils') }} as pupils,
        {{ suppress_if('is_small_group', 'offered_minutes') }} as offered_minutes,
    {%- for kind in ['valid', 'invalid', 'other', 'total'] %}
        {{ suppress_if('is_rate_withheld', kind ~ '_absence_pct') }} as {{ kind }}_absence_pct,
    {%- endfor %}
        {{ suppression_flag(['is_small_group', 'is_rate_withheld']) }} as is_suppressed
{%- endmacro %}
