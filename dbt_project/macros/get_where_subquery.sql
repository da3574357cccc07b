{#-
    dbt's own `get_where_subquery` (a test's `where` config filters the relation it tests),
    plus one named filter for the incremental pupil-level models: `where: this_build`.
    When the pipeline sets LAGESBILD_TEST_THIS_BUILD_ONLY, such a test checks only the rows
    this dbt invocation wrote (`built_at`, macro built_at): after a nightly that rebuilt one
    month, that month's rows. It sets it only when the last build finished green
    (flows/warehouse/dbt.py, `work.build-unfinished`); otherwise, and in any dbt command run by
    hand, every row is tested. Defined in the project, so it replaces dbt's macro.
-#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where == 'this_build' -%}
        {%- set where = ('built_at = ' ~ built_at())
            if env_var('LAGESBILD_TEST_THIS_BUILD_ONLY', '') else '' -%}
    {%- endif -%}
    {%- if where -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}
