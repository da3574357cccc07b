{#-
    The absence measures shared by the attendance marts, so every mart computes and
    suppresses them the same way. `absence_pct_columns` reads the summed minutes of
    `relation`; `suppressed_absence_columns` publishes them with the suppression rules
    (needs the columns is_small_group and is_rate_withheld). Types per docs/bi-contract.md:
    pupils BIGINT, offered_minutes DECIMAL(18, 2), percentages DECIMAL(9, 2);
    `absence_pct_status` says why the four percentages are NULL (withheld or no offered time).
-#}

{% macro absence_pct_columns(relation) -%}
    {%- for kind in ['valid', 'invalid', 'other', 'total'] %}
        {{ absence_pct(relation ~ '.' ~ kind ~ '_absence_minutes', relation ~ '.offered_minutes', 2) }} as {{ kind }}_absence_pct,
    {%- endfor %}
        {{ is_small_count(relation ~ '.pupils') }} as is_small_group,
        {{ is_rate_suppressed(relation ~ '.pupils') }} as is_rate_withheld
{%- endmacro %}

{% macro suppressed_absence_columns() -%}
        cast({{ suppress_count('pupils') }} as bigint) as pupils,
        cast({{ suppress_if('is_small_group', 'offered_minutes') }} as decimal(18, 2)) as offered_minutes,
    {%- for kind in ['valid', 'invalid', 'other', 'total'] %}
        {{ suppress_if('is_rate_withheld', as_pct(kind ~ '_absence_pct', 2)) }} as {{ kind }}_absence_pct,
    {%- endfor %}
        {{ measure_status('total_absence_pct', 'is_rate_withheld') }} as absence_pct_status,
        {{ suppression_flag(['is_small_group', 'is_rate_withheld']) }} as is_suppressed
{%- endmacro %}
