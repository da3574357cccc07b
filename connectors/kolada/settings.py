"""Kolada's settings: the `[statistics]` keys `kolada_*` plus the shared timeout and retries.

The keys are flat (`statistics.kolada_calls`, `LAGESBILD_STATISTICS__KOLADA_CALLS`) because
the statistics settings combine this model with PxWeb's (`lagesbild.settings.Statistics`).
"""

from __future__ import annotations

from pydantic import Field

from connectors.http import HttpSettings

MAX_PER_PAGE = 5000  # Kolada's largest page


class KoladaSettings(HttpSettings):
    kolada_url: str = "https://api.kolada.se/v3"
    kolada_calls: int = Field(5, ge=1, description="at most this many Kolada calls ...")
    kolada_seconds: float = Field(1.0, gt=0, description="... per this many seconds")
    kolada_per_page: int = Field(MAX_PER_PAGE, ge=1, le=MAX_PER_PAGE)
