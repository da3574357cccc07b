"""PxWeb's settings: the `[statistics]` keys `scb_url`, `fohm_url`, `pxweb_*` plus the shared
timeout and retries.

The keys are flat (`statistics.pxweb_calls`, `LAGESBILD_STATISTICS__PXWEB_CALLS`) because the
statistics settings combine this model with Kolada's (`lagesbild.settings.Statistics`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from connectors.http import HttpSettings

Api = Literal["scb", "fohm"]
API_VERSIONS: dict[str, int] = {"scb": 2, "fohm": 1}  # SCB's PxWebApi 2, FoHM's PxWeb v1


class PxWebSettings(HttpSettings):
    scb_url: str = Field("https://statistikdatabasen.scb.se/api/v2", description="PxWeb v2")
    fohm_url: str = Field(
        "https://fohm-app.folkhalsomyndigheten.se/Folkhalsodata/api/v1/sv",
        description="Folkhälsomyndigheten's PxWeb v1",
    )
    pxweb_calls: int = Field(10, ge=1, description="at most this many PxWeb calls ...")
    pxweb_seconds: float = Field(10.0, gt=0, description="... per this many seconds")
    pxweb_max_cells: int = Field(100_000, ge=1, description="cells per PxWeb request")

    def url(self, api: Api) -> str:
        return {"scb": self.scb_url, "fohm": self.fohm_url}[api]
