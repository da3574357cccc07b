{#-
    Disclosure control for every published mart (docs/design.md, invariant 6).

    * A count of persons below var('min_persons') (default 5, 0 included) is published as NULL.
    * A rate whose denominator (a count of persons) is below var('min_denominator')
      (default 10) is published as NULL; so is a rate whose numerator count is suppressed.
    * `is_suppressed` is true whenever anything in the row was nulled.

    The marts compute the boolean conditions once (is_small_count / is_rate_suppressed),
    apply them with suppress_if / suppress_count / suppress_rate, and OR them into
    `is_suppressed` with suppression_flag. secondary_suppression covers totals that would
    reveal a single suppressed part. The generic test `no_small_cells` checks the result.
-#}

{#- true when a count of persons is too small to publish -#}
{% macro is_small_count(count_expr) -%}
    ({{ count_expr }} < {{ var('min_persons') }})
{%- endmacro %}

{#- true when a denominator (count of persons) is too small to publish a rate on -#}
{% macro is_small_denominator(denominator_expr) -%}
    ({{ denominator_expr }} < {{ var('min_denominator') }})
{%- endmacro %}

{#- true when a rate must be withheld: small denominator, or a small numerator count -#}
{% macro is_rate_suppressed(denominator_expr, numerator_expr=none) -%}
    ({{ is_small_denominator(denominator_expr) }}
        or {{ is_small_count(denominator_expr) }}
        {%- if numerator_expr is not none %}
        or {{ is_small_count(numerator_expr) }}
        {%- endif %})
{%- endmacro %}

{#- NULL out any value when the condition holds (NULL condition = keep the value) -#}
{% macro suppress_if(condition, value_expr) -%}
    case when {{ condition }} then null else {{ value_expr }} end
{%- endmacro %}

{% macro suppress_count(count_expr) -%}
    {{ suppress_if(is_small_count(count_expr), count_expr) }}
{%- endmacro %}

{% macro suppress_rate(rate_expr, denominator_expr, numerator_expr=none) -%}
    {{ suppress_if(is_rate_suppressed(denominator_expr, numerator_expr), rate_expr) }}
{%- endmacro %}

{#- is_suppressed: true if any of the given conditions holds, never NULL -#}
{% macro suppression_flag(conditions) -%}
    coalesce(({{ conditions | join(') or (') }}), false)
{%- endmacro %}

{#-
    Secondary suppression, as a boolean expression (window functions; use it in a
    select over a relation that already has the primary flag as a column).

    Within each group of `partition_by`, the rows are parts (`is_part`) and one total
    (`is_total`). When exactly one part is primarily suppressed (`primary_flag`) and the
    total is published, the total minus the published parts would reveal the suppressed
    cell; so the published part that comes first by `order_by` (smallest count first,
    ties by code) is flagged for suppression as well.
-#}
{% macro secondary_suppression(partition_by, is_part, is_total, primary_flag, order_by) -%}
    {%- set partition = partition_by | join(', ') -%}
    {%- set published_part -%}
        case when ({{ is_part }}) and not ({{ primary_flag }}) then 1 else 0 end
    {%- endset -%}
    (
        ({{ is_part }}) and not ({{ primary_flag }})
        and sum(case when ({{ is_part }}) and ({{ primary_flag }}) then 1 else 0 end)
            over (partition by {{ partition }}) = 1
        and max(case when ({{ is_total }}) and not ({{ primary_flag }}) then 1 else 0 end)
            over (partition by {{ partition }}) = 1
        and row_number()
            over (partition by {{ partition }}, {{ published_part }} order by {{ order_by | join(', ') }}) = 1
    )
{%- endmacro %}

{#-
    Band suppression for nested counts (disclosure by subtraction), as a select over
    `relation` adding `is_band_suppressed`.

    Within each group of `partition_by`, the rows ordered by `order_by` carry a `count` that
    never increases (pupils at or above 10 %, 15 %, 20 % ...) below a `total` (all pupils).
    Walking up the order, a count is withheld when the band between it and the last published
    value (the total to start with) is 1 to min_persons - 1; otherwise it becomes the last
    published value. Rows already withheld (`primary_flag`) are skipped. A recursive CTE: the
    walk is sequential, and the number of steps is data (the thresholds seed).
-#}
{% macro band_suppression(relation, partition_by, order_by, total, count, primary_flag) -%}
    {%- set keys = partition_by | join(', ') -%}
    {%- set small_band = "between 1 and " ~ (var('min_persons') - 1) %}
    with recursive steps as (
        select
            *,
            row_number() over (partition by {{ keys }} order by {{ order_by }}) as band_step
        from {{ relation }}
    ),
    walk as (
        select
            {% for k in partition_by %}{{ k }}, {% endfor %}band_step,
            {{ count }}, {{ primary_flag }} as withheld_before,
            {{ total }} as last_published
        from steps
        where band_step = 1
        union all
        select
            {% for k in partition_by %}steps.{{ k }}, {% endfor %}steps.band_step,
            steps.{{ count }}, steps.{{ primary_flag }},
            case
                when (walk.withheld_before) is not true
                    and not (walk.last_published - walk.{{ count }} {{ small_band }})
                    then walk.{{ count }}
                else walk.last_published
            end
        from walk
        join steps
            on {% for k in partition_by %}steps.{{ k }} is not distinct from walk.{{ k }}{% if not loop.last %} and {% endif %}{% endfor %}
            and steps.band_step = walk.band_step + 1
    )
    select
        steps.*,
        coalesce(
            (walk.withheld_before) is not true
            and walk.last_published - walk.{{ count }} {{ small_band }},
            false
        ) as is_band_suppressed
    from steps
    join walk
        on {% for k in partition_by %}steps.{{ k }} is not distinct from walk.{{ k }} and {% endfor %}steps.band_step = walk.band_step
{%- endmacro %}
