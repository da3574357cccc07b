{#-
    Periods of different sources in one order: a term (HT2025, VT2026), a school year
    (2025/26, starting 1 July) or a calendar year (2024). period_start gives the first day,
    so they sort on one axis.
-#}

{#- HT2025 → 2025-07-01, VT2026 → 2026-01-01 -#}
{% macro term_start(term_expr) -%}
    cast(
        substr({{ term_expr }}, 3, 4)
        || case when substr({{ term_expr }}, 1, 2) = 'HT' then '-07-01' else '-01-01' end
        as date
    )
{%- endmacro %}

{#- a term, a school year or a calendar year (as text) → its first day -#}
{% macro period_start(period_expr) -%}
    case
        when substr({{ period_expr }}, 1, 2) in ('HT', 'VT') then {{ term_start(period_expr) }}
        when substr({{ period_expr }}, 5, 1) = '/'
            then cast(substr({{ period_expr }}, 1, 4) || '-07-01' as date)
        else cast(substr({{ period_expr }}, 1, 4) || '-01-01' as date)
    end
{%- endmacro %}
