{#-
    Helpers of the incremental pupil-level models (int_pupil_days_enriched,
    int_pupil_term_absence_summed). Each row carries the version of the input it was built
    from (a month's clean file, or a term's set of month versions); an incremental run
    deletes the rows whose version is no longer current (pre-hook) and builds the rest.
    Nothing depends on what an earlier run did or meant to do: a failed or killed run is
    caught up by the next one. `dbt build --full-refresh` rebuilds everything.
-#}

{#- Pre-hook: in an incremental run, delete the rows of {{ this }} whose version is not among
    the current ones (changed or vanished months / terms). The delete, the insert of the
    rebuilt rows and the commit are one transaction. -#}
{% macro delete_outdated_versions(version_column, current_versions, keep_retired=false) -%}
    {%- if is_incremental() -%}
        delete from {{ this }}
        where {{ version_column }} not in (
            select {{ version_column }}
            from ({{ current_versions }}) as current_versions
            where {{ version_column }} is not null
        )
        {%- if keep_retired %}
        -- months whose clean files retention deleted: their rows stay (the marts keep them)
        and cast(strftime(month, '%Y-%m') as varchar) not in ({{ retired_months_sql() }})
        {%- endif %}
    {%- endif -%}
{%- endmacro %}


{#- The months (YYYY-MM) whose clean files retention deleted, as a SQL list of literals
    (LAGESBILD_RETIRED_MONTHS, set by the pipeline; '' when none: not null, with which
    `not in` would keep every row). -#}
{% macro retired_months_sql() -%}
    {%- set months = env_var('LAGESBILD_RETIRED_MONTHS', '').split(',') | reject('equalto', '') | list -%}
    {%- if months -%}
        {%- for month in months %}'{{ month | replace("'", "''") }}'{{ ", " if not loop.last }}{% endfor -%}
    {%- else -%}
        ''
    {%- endif -%}
{%- endmacro %}


{#- In an incremental run: the versions (rows of `current_versions`) not in {{ this }} yet,
    as a list of dicts of the given columns, read when the model is compiled, so that the
    model's SQL names them as literals (which DuckDB pushes down to the parquet scan).
    Outside an incremental run: an empty list. -#}
{% macro versions_to_build(version_column, current_versions, columns) -%}
    {%- if not (execute and is_incremental()) -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set query -%}
        select {{ columns | join(', ') }}
        from ({{ current_versions }}) as current_versions
        where {{ version_column }} not in (
            select distinct {{ version_column }}
            from {{ this }}
            where {{ version_column }} is not null
        )
        order by {{ columns | join(', ') }}
    {%- endset -%}
    {%- set table = run_query(query) -%}
    {%- set rows, labels = [], [] -%}
    {%- for row in table.rows -%}
        {%- do rows.append(dict(zip(columns, row.values()))) -%}
        {%- do labels.append(row.values() | join(' ')) -%}
    {%- endfor -%}
    {#- in the dbt log and the run's Prefect log: what this run rebuilds -#}
    {%- do log(this.identifier ~ ": incremental, rebuilding " ~ (labels | join(', ') or 'nothing'), info=True) -%}
    {{ return(rows) }}
{%- endmacro %}


{#- One version per (school_year, term) of the pupil days in `pupil_days` (a relation or a
    subquery with school_year, term, month, partition_version): an md5 over the term and the
    set of month versions its days come from. It changes when a month with days of the term
    is rebuilt, added or removed. Days with no term are left out (as in the term sums). -#}
{% macro pupil_term_versions(pupil_days) -%}
    select
        school_year,
        term,
        md5(
            coalesce(school_year, '-') || '#' || term || '#'
            || {{ ordered_string_agg(
                "cast(month as " ~ string_type() ~ ") || '@' || coalesce(partition_version, '-')",
                "','", 'month, partition_version'
            ) }}
        ) as term_version
    from (
        select distinct school_year, term, month, partition_version
        from {{ pupil_days }}
        where term is not null
    ) as term_months
    group by school_year, term
{%- endmacro %}


{#- `column = '<value>'` as SQL (a string literal, quotes escaped), or `column is null`. -#}
{% macro sql_equals(column, value) -%}
    {%- if value is none -%}
        {{ column }} is null
    {%- else -%}
        {{ column }} = '{{ value | string | replace("'", "''") }}'
    {%- endif -%}
{%- endmacro %}


{#- When this dbt invocation started (UTC; on Spark read in the session's time zone), stamped
    on every row an incremental pupil-level model writes: it identifies the build, so their
    tests can check the rows this build wrote (`where: this_build`, macro get_where_subquery)
    and a nightly that rebuilt one month does not scan every year. -#}
{% macro built_at() -%}
    cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as timestamp)
{%- endmacro %}
