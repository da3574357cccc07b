{#-
    Pupils at or above each absence threshold (seed absence_thresholds) per area and for
    the whole municipality, per term so far. A pupil counts as at or above the threshold
    when 100 * total absence minutes >= threshold_pct * offered minutes, summed over the
    pupil's days in the area (scope 'area') or at all schools (scope 'municipality').
    The comparison is made on minutes, not on a rounded percentage, so a pupil at exactly
    10.00 % counts for the 10 % threshold.

    Suppression (macros/suppression.sql):
      primary:   pupils NULL if < min_persons; pupils_at_or_above and share NULL if
                 pupils_at_or_above < min_persons or pupils < min_denominator;
      bands:     the counts of one area and term are nested (pupils >= at 10 % >= at 15 % ...),
                 so the difference of two published counts is a band of pupils. Going up the
                 thresholds, a count whose band to the last published count is 1 to
                 min_persons - 1 pupils is withheld (macro band_suppression). Sums of bands
                 that are 0 or >= min_persons are too, so later suppression keeps this safe;
      secondary: per (term, threshold_pct), if exactly one area row is suppressed (primary or
                 band) and the municipality row is published, the published area row with the
                 smallest pupils_at_or_above (ties: smallest area_code) is suppressed too; the
                 same for `pupils` of a small area against the municipality's pupils.
-#}

with

pupil_terms as (

    select * from {{ ref('int_pupil_term_absence_summed') }}

),

thresholds as (

    select * from {{ ref('absence_thresholds') }}

),

areas as (

    select * from {{ ref('stg_reference__areas') }}

),

counted as (

    select
        pupil_terms.scope,
        pupil_terms.area_code,
        pupil_terms.school_year,
        pupil_terms.term,
        thresholds.threshold_pct,
        count(distinct pupil_terms.pupil_key) as pupils,
        count(distinct
            case
                when pupil_terms.offered_minutes > 0
                    and 100 * pupil_terms.total_absence_minutes
                        >= thresholds.threshold_pct * pupil_terms.offered_minutes
                    then pupil_terms.pupil_key
            end
        ) as pupils_at_or_above

    from pupil_terms
    cross join thresholds
    group by
        pupil_terms.scope,
        pupil_terms.area_code,
        pupil_terms.school_year,
        pupil_terms.term,
        thresholds.threshold_pct

),

named as (

    select
        counted.*,
        case
            when counted.scope = 'municipality'
                then {{ municipality_name_literal() }}
            else areas.area_name
        end as area_name,
        {{ is_small_count('counted.pupils') }} as is_small_group,
        {{ is_rate_suppressed('counted.pupils', 'counted.pupils_at_or_above') }} as is_primary_suppressed

    from counted
    left join areas
        on counted.scope = 'area'
        and counted.area_code = areas.area_code

),

banded as (

    {{ band_suppression(
        relation='named',
        partition_by=['scope', 'area_code', 'school_year', 'term'],
        order_by='threshold_pct',
        total='pupils',
        count='pupils_at_or_above',
        primary_flag='is_primary_suppressed'
    ) }}

),

secondary as (

    select
        banded.*,
        {{ secondary_suppression(
            partition_by=['school_year', 'term', 'threshold_pct'],
            is_part="scope = 'area'",
            is_total="scope = 'municipality'",
            primary_flag='is_primary_suppressed or is_band_suppressed',
            order_by=['pupils_at_or_above', 'area_code']
        ) }} as is_secondary_suppressed,
        {{ secondary_suppression(
            partition_by=['school_year', 'term', 'threshold_pct'],
            is_part="scope = 'area'",
            is_total="scope = 'municipality'",
            primary_flag='is_small_group',
            order_by=['pupils', 'area_code']
        ) }} as is_group_secondary_suppressed

    from banded

),

{%- set withheld = 'is_primary_suppressed or is_band_suppressed or is_secondary_suppressed '
                  ~ 'or is_group_secondary_suppressed' %}

final as (

    select
        scope,
        area_code,
        area_name,
        school_year,
        term,
        threshold_pct,
        {{ suppress_if('is_small_group or is_group_secondary_suppressed', 'pupils') }} as pupils,
        {{ suppress_if(withheld, 'pupils_at_or_above') }} as pupils_at_or_above,
        {{ suppress_if(withheld, as_pct(safe_pct('pupils_at_or_above', 'pupils'), 2)) }}
            as share_at_or_above_pct,
        {{ suppression_flag(['is_small_group', 'is_group_secondary_suppressed', withheld]) }}
            as is_suppressed

    from secondary

)

select * from final
