{#-
    dbt's own `get_where_subquery` (a test's `where` config filters the relation it tests),
    plus one named filter: `where: latest_build` tests only the rows the latest build of an
    incremental model wrote (its `built_at` column, macro built_at). After a nightly that
    rebuilt one month those are that month's rows; after a first build or a full refresh,
    every row. When the last build failed or was killed (its rows may be untested), the
    pipeline sets LAGESBILD_TEST_EVERY_ROW and every row is tested (flows/warehouse/dbt.py).
    Defined in the project, so it replaces dbt's macro of the same name.
-#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where == 'latest_build' and env_var('LAGESBILD_TEST_EVERY_ROW', '') -%}
        {%- set where = '' -%}
    {%- elif where == 'latest_build' -%}
        {%- set where = 'built_at = (select max(built_at) from ' ~ relation ~ ')' -%}
    {%- endif -%}
    {%- if where -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}
