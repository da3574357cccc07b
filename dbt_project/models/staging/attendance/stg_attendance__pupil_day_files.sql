{#-
    The clean attendance files and their month, size and modification time: file metadata
    only (read_blob without `content` reads no file). Incremental models compare these with
    what they were built from (int_attendance_months_versioned).
-#}

with

source as (

    select filename, size, last_modified from {{ source('attendance', 'pupil_day_files') }}

),

renamed as (

    select
        ---------- ids
        cast(filename as {{ string_type() }}) as file_path,
        regexp_extract(filename, '[^/]*$', 0) as file_name,

        ---------- dates
        -- the hive partition folder `period=YYYY-MM` the file is in
        cast(
            regexp_extract(filename, 'period=([0-9]{4}-[0-9]{2})/[^/]*$', 1) || '-01' as date
        ) as month,
        last_modified as file_modified_at,

        ---------- numerics
        cast(size as bigint) as file_bytes

    from source

)

select * from renamed
