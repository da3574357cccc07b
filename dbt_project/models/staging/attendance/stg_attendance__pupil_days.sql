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
        -- exact decimals: a sum of doubles depends on the order rows arrive in, and a rate
        -- rounded from it can differ from one run to the next
        cast(offered_minutes as decimal(18, 2)) as offered_minutes,
        cast(attended_minutes as decimal(18, 2)) as attended_minutes,
        cast(valid_absence_minutes as decimal(18, 2)) as valid_absence_minutes,
        cast(invalid_absence_minutes as decimal(18, 2)) as invalid_absence_minutes,
        cast(other_absence_minutes as decimal(18, 2)) as other_absence_minutes,
        cast(lessons as integer) as lessons

    from source

)

select * from renamed
