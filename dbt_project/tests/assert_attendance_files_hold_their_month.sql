-- Every row of a clean attendance file is a day of the month of its folder `period=YYYY-MM`.
-- The incremental pupil-level models rely on it: they replace a month's rows when that
-- month's file changed. Checked from the parquet footers (row counts and the statistics of
-- column `date`; no data is read). A file with rows but without date statistics fails, and
-- so does a file the footers and the file listing (read_blob) disagree about.
{%- set files_glob = env_var('LAGESBILD_CLEAN_DIR') ~ '/attendance/period=*/*.parquet' %}

with

files as (

    select * from {{ ref('stg_attendance__pupil_day_files') }}

),

footers as (

    {{ attendance_file_footers(files_glob) }}

),

date_statistics as (

    {{ attendance_file_date_statistics(files_glob) }}

)

select
    files.file_path,
    files.month,
    footers.num_rows,
    date_statistics.first_date,
    date_statistics.last_date
from files
left join footers
    on files.file_path = footers.file_name
left join date_statistics
    on files.file_path = date_statistics.file_name
where footers.file_name is null
    or (
        footers.num_rows > 0
        and (
            date_statistics.file_name is null
            or date_statistics.lacks_statistics
            or date_statistics.first_date < files.month
            or date_statistics.last_date >= {{ plus_one_month('files.month') }}
        )
    )
