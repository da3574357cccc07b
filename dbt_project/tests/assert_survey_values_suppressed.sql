-- A survey value is published only with enough respondents and a sufficient response rate
-- (docs/design.md, invariant 6; thresholds min_denominator, min_response_rate_pct).
select *
from {{ ref('mart_indicator_values') }}
where source = 'survey'
    and value is not null
    and (
        respondents is null
        or respondents < {{ var('min_denominator') }}
        or response_rate_pct is null
        or response_rate_pct < {{ var('min_response_rate_pct') }}
    )
