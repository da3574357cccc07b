{#-
    Disclosure check on a published model (docs/design.md, invariant 6). Returns one row per
    violation:

    * count_columns: a published (non-NULL) count of persons below var('min_persons').
    * rate_columns: a published rate while `denominator_column` is NULL or below
      var('min_denominator') (or below min_persons), or while `numerator_column` is NULL
      (the numerator count was suppressed, so the rate must be too).
    * group_value_columns: other values describing the group (e.g. offered minutes)
      published while `denominator_column` is NULL.
    * flag_column: a row where a count column is NULL or the denominator is below
      min_denominator, but the flag (is_suppressed) is not true.
-#}
{% test no_small_cells(model, count_columns=[], rate_columns=[], denominator_column=none,
                       numerator_column=none, group_value_columns=[], flag_column=none) %}

{%- set min_persons = var('min_persons') -%}
{%- set min_denominator = var('min_denominator') -%}
{%- set checks = [] -%}

{%- for c in count_columns -%}
    {%- do checks.append(
        "select 'count ' || '" ~ c ~ "' || ' below min_persons' as violation, * from " ~ model
        ~ " where " ~ c ~ " is not null and " ~ c ~ " < " ~ min_persons) -%}
{%- endfor -%}

{%- for r in rate_columns -%}
    {%- if denominator_column is not none -%}
        {%- do checks.append(
            "select 'rate ' || '" ~ r ~ "' || ' published on a small or suppressed denominator' as violation, * from "
            ~ model ~ " where " ~ r ~ " is not null and (" ~ denominator_column ~ " is null or "
            ~ denominator_column ~ " < " ~ min_denominator ~ " or " ~ denominator_column ~ " < " ~ min_persons ~ ")") -%}
    {%- endif -%}
    {%- if numerator_column is not none -%}
        {%- do checks.append(
            "select 'rate ' || '" ~ r ~ "' || ' published while its numerator is suppressed' as violation, * from "
            ~ model ~ " where " ~ r ~ " is not null and " ~ numerator_column ~ " is null") -%}
    {%- endif -%}
{%- endfor -%}

{%- if denominator_column is not none -%}
    {%- for g in group_value_columns -%}
        {%- do checks.append(
            "select 'value ' || '" ~ g ~ "' || ' published for a suppressed group' as violation, * from "
            ~ model ~ " where " ~ g ~ " is not null and " ~ denominator_column ~ " is null") -%}
    {%- endfor -%}
{%- endif -%}

{%- if flag_column is not none -%}
    {%- set conditions = [] -%}
    {%- for c in count_columns -%}
        {%- do conditions.append(c ~ " is null") -%}
    {%- endfor -%}
    {%- if denominator_column is not none -%}
        {%- do conditions.append(denominator_column ~ " < " ~ min_denominator) -%}
    {%- endif -%}
    {%- if conditions -%}
        {%- do checks.append(
            "select '" ~ flag_column ~ " not set on a suppressed row' as violation, * from " ~ model
            ~ " where (" ~ conditions | join(" or ") ~ ") and not coalesce(" ~ flag_column ~ ", false)") -%}
    {%- endif -%}
{%- endif -%}

{%- if not checks -%}
    {{ exceptions.raise_compiler_error("no_small_cells on " ~ model ~ ": give count_columns and/or rate_columns") }}
{%- endif %}

{{ checks | join('\nunion all\n') }}

{% endtest %}
