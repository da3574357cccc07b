{#-
    The SQL that differs between the warehouse engines, behind adapter.dispatch: default__
    is DuckDB's (what the default build compiles, unchanged), spark__ is Spark SQL's (dbt-spark:
    a local session in tests, Thrift or Databricks in production; docs/scale.md).
-#}

{#- The text type in casts: DuckDB `varchar`; Spark needs `string` (its varchar needs a length). -#}
{% macro string_type() -%}
    {{ return(adapter.dispatch('string_type')()) }}
{%- endmacro %}
{% macro default__string_type() -%}varchar{%- endmacro %}
{% macro spark__string_type() -%}string{%- endmacro %}

{#- A timestamp with time zone: DuckDB `timestamptz`; Spark's `timestamp` is one (an instant
    shown in the session time zone). -#}
{% macro timestamp_tz_type() -%}
    {{ return(adapter.dispatch('timestamp_tz_type')()) }}
{%- endmacro %}
{% macro default__timestamp_tz_type() -%}timestamptz{%- endmacro %}
{% macro spark__timestamp_tz_type() -%}timestamp{%- endmacro %}

{#- Concatenation of `expr` over a group, separated by `separator`, in the order of `order_by`. -#}
{% macro ordered_string_agg(expr, separator, order_by) -%}
    {{ return(adapter.dispatch('ordered_string_agg')(expr, separator, order_by)) }}
{%- endmacro %}
{% macro default__ordered_string_agg(expr, separator, order_by) -%}
    string_agg(
        {{ expr }},
        {{ separator }} order by {{ order_by }}
    )
{%- endmacro %}
{% macro spark__ordered_string_agg(expr, separator, order_by) -%}
    listagg({{ expr }}, {{ separator }}) within group (order by {{ order_by }})
{%- endmacro %}

{#- Microseconds since the epoch of a timestamp. -#}
{% macro epoch_microseconds(expr) -%}
    {{ return(adapter.dispatch('epoch_microseconds')(expr)) }}
{%- endmacro %}
{% macro default__epoch_microseconds(expr) -%}epoch_us({{ expr }}){%- endmacro %}
{% macro spark__epoch_microseconds(expr) -%}unix_micros({{ expr }}){%- endmacro %}

{#- The day one month after a date. -#}
{% macro plus_one_month(date_expr) -%}
    {{ return(adapter.dispatch('plus_one_month')(date_expr)) }}
{%- endmacro %}
{% macro default__plus_one_month(date_expr) -%}{{ date_expr }} + interval 1 month{%- endmacro %}
{% macro spark__plus_one_month(date_expr) -%}add_months({{ date_expr }}, 1){%- endmacro %}

{#-
    Sources. On DuckDB a source is its `external_location` (read_parquet / read_blob of the
    clean layer, dbt-duckdb). Spark reads the same files by path: read_parquet('<glob>') becomes
    parquet.`<glob>`, read_blob('<glob>') binaryFile.`<glob>` with DuckDB's column names. The
    glob and the options stay in one place, the source's YAML.
-#}
{% macro source(source_name, table_name) -%}
    {%- set relation = builtins.source(source_name, table_name) -%}
    {{ return(adapter.dispatch('clean_source')(relation, source_name, table_name)) }}
{%- endmacro %}
{% macro default__clean_source(relation, source_name, table_name) -%}
    {{ return(relation) }}
{%- endmacro %}
{% macro spark__clean_source(relation, source_name, table_name) -%}
    {%- if not execute -%}
        {{ return(relation) }}
    {%- endif -%}
    {%- set node = graph.sources.values() | selectattr('source_name', 'equalto', source_name)
        | selectattr('name', 'equalto', table_name) | first -%}
    {%- set location = node.meta.get('external_location') or node.config.meta.get('external_location') -%}
    {%- set reader, path = modules.re.match("\s*(read_parquet|read_blob)\('([^']*)'", location).groups() -%}
    {%- if reader == 'read_blob' -%}
        {{ return("(select path as filename, length as size, modificationTime as last_modified from binaryFile.`" ~ path ~ "`)") }}
    {%- endif -%}
    {{ return("parquet.`" ~ path ~ "`") }}
{%- endmacro %}

{#- How many files match a glob. -#}
{% macro count_files(path) -%}
    {{ return(adapter.dispatch('count_files')(path)) }}
{%- endmacro %}
{% macro default__count_files(path) -%}
    {{ return(run_query("select count(*) from glob('" ~ path ~ "')").columns[0].values()[0]) }}
{%- endmacro %}
{% macro spark__count_files(path) -%}
    {#- A glob that matches nothing is an error in Spark: read it together with a file that
        always exists (the schools reference; a Hadoop glob's {a,b} alternatives) and leave
        that one out of the count. -#}
    {%- set clean = env_var('LAGESBILD_CLEAN_DIR').rstrip('/') -%}
    {%- set sentinel = 'reference/schools.parquet' -%}
    {%- set files = clean ~ '/{' ~ path[clean | length + 1:] ~ ',' ~ sentinel ~ '}' -%}
    {%- set query -%}
        select count(*) from binaryFile.`{{ files }}`
        where path not like '%/{{ sentinel }}'
    {%- endset -%}
    {{ return(run_query(query).columns[0].values()[0]) }}
{%- endmacro %}

{#- The attendance files' row counts and date ranges (test assert_attendance_files_hold_their_month).
    DuckDB reads the parquet footers only; Spark has no footer table function and reads the
    `date` column (file name from the hidden _metadata column, as binaryFile names it). -#}
{% macro attendance_file_footers(files_glob) -%}
    {{ return(adapter.dispatch('attendance_file_footers')(files_glob)) }}
{%- endmacro %}
{% macro default__attendance_file_footers(files_glob) -%}
    select file_name, num_rows
    from parquet_file_metadata('{{ files_glob }}')
{%- endmacro %}
{% macro spark__attendance_file_footers(files_glob) -%}
    select _metadata.file_path as file_name, count(*) as num_rows
    from parquet.`{{ files_glob }}`
    group by _metadata.file_path
{%- endmacro %}

{% macro attendance_file_date_statistics(files_glob) -%}
    {{ return(adapter.dispatch('attendance_file_date_statistics')(files_glob)) }}
{%- endmacro %}
{% macro default__attendance_file_date_statistics(files_glob) -%}
    select
        file_name,
        min(cast(stats_min_value as date)) as first_date,
        max(cast(stats_max_value as date)) as last_date,
        bool_or(
            row_group_num_rows > coalesce(stats_null_count, 0)
            and (stats_min_value is null or stats_max_value is null)
        ) as lacks_statistics
    from parquet_metadata('{{ files_glob }}')
    where path_in_schema = 'date'
    group by file_name
{%- endmacro %}
{% macro spark__attendance_file_date_statistics(files_glob) -%}
    select
        _metadata.file_path as file_name,
        min(cast(date as date)) as first_date,
        max(cast(date as date)) as last_date,
        false as lacks_statistics
    from parquet.`{{ files_glob }}`
    group by _metadata.file_path
{%- endmacro %}

{#- The two pupil-level models: incremental with delete+insert on DuckDB (dbt_project/README.md);
    a table rebuilt whole on Spark, whose dbt-spark strategies (append, insert_overwrite, merge
    on Delta/Iceberg) have no delete+insert. -#}
{% macro pupil_level_materialization() -%}
    {{ return(adapter.dispatch('pupil_level_materialization')()) }}
{%- endmacro %}
{% macro default__pupil_level_materialization() -%}{{ return('incremental') }}{%- endmacro %}
{% macro spark__pupil_level_materialization() -%}{{ return('table') }}{%- endmacro %}

{#- DuckDB's 128-bit integer (a sum of counts); Spark's widest exact type. -#}
{% macro hugeint_type() -%}
    {{ return(adapter.dispatch('hugeint_type')()) }}
{%- endmacro %}
{% macro default__hugeint_type() -%}hugeint{%- endmacro %}
{% macro spark__hugeint_type() -%}decimal(38, 0){%- endmacro %}

{#- A timestamp with time zone as the wall-clock timestamp (no zone) in UTC. -#}
{% macro utc_wall_clock(expr) -%}
    {{ return(adapter.dispatch('utc_wall_clock')(expr)) }}
{%- endmacro %}
{% macro default__utc_wall_clock(expr) -%}timezone('UTC', {{ expr }}){%- endmacro %}
{% macro spark__utc_wall_clock(expr) -%}
    cast(to_utc_timestamp({{ expr }}, current_timezone()) as timestamp_ntz)
{%- endmacro %}

{#- Whole days from date `start` to date `end` (DuckDB: date - date is an integer; Spark: an
    interval). -#}
{% macro days_between(start, end) -%}
    {{ return(adapter.dispatch('days_between')(start, end)) }}
{%- endmacro %}
{% macro default__days_between(start, end) -%}({{ end }} - {{ start }}){%- endmacro %}
{% macro spark__days_between(start, end) -%}datediff({{ end }}, {{ start }}){%- endmacro %}

{#- A date `years` years earlier (29 February → 28 February on both engines). -#}
{% macro minus_years(date_expr, years) -%}
    {{ return(adapter.dispatch('minus_years')(date_expr, years)) }}
{%- endmacro %}
{% macro default__minus_years(date_expr, years) -%}{{ date_expr }} - to_years({{ years }}){%- endmacro %}
{% macro spark__minus_years(date_expr, years) -%}add_months({{ date_expr }}, -12 * ({{ years }})){%- endmacro %}
