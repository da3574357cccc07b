with

source as (

    select * from {{ source('attendance', 'pupil_days') }}

),

renamed as (

    select
        ---------- ids
        cast(pupil_key as {{ string_type() }}) as pupil_key,
        trim(cast(school_unit_code as {{ string_type() }})) as school_unit_code,

        ---------- dates
        cast(date as date) as attendance_date,

        ---------- text
        upper(trim(cast(grade as {{ string_type() }}))) as grade,
        cast(source as {{ string_type() }}) as source_layout,
        cast(load_id as {{ string_type() }}) as load_id,

        ---------- numerics (minutes)
        cast(offered_minutes as double) as offered_minutes,
        cast(attended_minutes as double) as attended_minutes,
        cast(valid_absence_minutes as double) as valid_absence_minutes,
        cast(invalid_absence_minutes as double) as invalid_absence_minutes,
        cast(other_absence_minutes as double) as other_absence_minutes,
        cast(lessons as integer) as lessons

    from source

)

select * from renamed
