{#-
    Fails for every row where attended + valid + invalid + other absence minutes do not
    add up to offered minutes (tolerance in minutes, default 0.01), or any of them is NULL.
-#}
{% test minutes_add_up(model, offered='offered_minutes', attended='attended_minutes',
                       valid='valid_absence_minutes', invalid='invalid_absence_minutes',
                       other='other_absence_minutes', tolerance=0.01) %}

select *
from {{ model }}
where {{ offered }} is null
    or {{ attended }} is null
    or {{ valid }} is null
    or {{ invalid }} is null
    or {{ other }} is null
    or abs({{ attended }} + {{ valid }} + {{ invalid }} + {{ other }} - {{ offered }}) > {{ tolerance }}

{% endtest %}
