-- The release history publishes survey values under the same rule as the current mart.
select *
from {{ ref('mart_indicator_releases') }}
where source = 'survey'
    and value is not null
    and (
        respondents is null
        or respondents < {{ var('min_denominator') }}
        or response_rate_pct is null
        or response_rate_pct < {{ var('min_response_rate_pct') }}
    )
