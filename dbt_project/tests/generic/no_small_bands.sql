{#-
    Disclosure by subtraction (docs/design.md, invariant 6) in nested counts: within each group of
    `partition_by`, ordered by `order_by`, each published `count_column` and the last published
    value before it (the `total_column` to start with) must differ by 0 or by at least
    var('min_persons'); otherwise their difference publishes a band of too few persons.
    Returns one row per violation.
-#}
{% test no_small_bands(model, partition_by, order_by, total_column, count_column) %}

with ordered as (

    select
        *,
        coalesce(
            last_value({{ count_column }} ignore nulls) over (
                partition by {{ partition_by | join(', ') }}
                order by {{ order_by }}
                rows between unbounded preceding and 1 preceding
            ),
            {{ total_column }}
        ) as last_published

    from {{ model }}

)

select *
from ordered
where {{ count_column }} is not null
    and last_published - {{ count_column }} between 1 and {{ var('min_persons') }} - 1

{% endtest %}
