"""The demo's statistics sources: the local Kolada and PxWeb servers, and survey results.

`local_statistics_servers()` starts both servers on 127.0.0.1 and points the settings
(environment `LAGESBILD_STATISTICS__*`) at them for the duration of the block;
`write_survey_results()` writes a filled-in survey template into the drop folder.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import date, datetime
from pathlib import Path

from demo import kolada_server, pxweb_server
from demo.generate import AREAS, MUNICIPALITY_CODE
from demo.servers import serve

SURVEY_FILE = "surveys/folkhalsorapport_barn_och_unga_2024.csv"


@contextmanager
def local_statistics_servers(revise: bool = False) -> Iterator[dict]:
    """Serve the demo's Kolada and PxWeb; with `revise`, publish revisions first.

    A revision run moves one Kolada value (reported vandalism, the latest year), withdraws
    another (a comparison municipality's youth mental ill-health) and publishes a new version
    of the population table, as the real sources do between fetches.
    """
    kolada = kolada_server.KoladaState()
    pxweb = pxweb_server.PxWebState()
    if revise:
        today = date.today()
        latest = kolada_server.LAST_YEAR
        old = kolada.data.original("U07452", MUNICIPALITY_CODE, latest, "T") or 0.0
        kolada.data.revise("U07452", MUNICIPALITY_CODE, latest, "T", round(old * 0.97, 1), today)
        kolada.data.delete("N33820", "1264", latest - 1, today)
        pxweb.touch(pxweb_server.POPULATION, datetime.combine(today, datetime.min.time()))
    with ExitStack() as stack:
        kolada_url = stack.enter_context(serve(kolada_server.create_app(kolada)))
        pxweb_url = stack.enter_context(serve(pxweb_server.create_app(pxweb)))
        values = {
            "LAGESBILD_STATISTICS__ENABLED": "true",
            "LAGESBILD_STATISTICS__KOLADA_URL": f"{kolada_url}/v3",
            "LAGESBILD_STATISTICS__SCB_URL": f"{pxweb_url}/api/v2",
            "LAGESBILD_STATISTICS__FOHM_URL": f"{pxweb_url}/Folkhalsodata/api/v1/sv",
        }
        previous = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        try:
            yield {"kolada": kolada, "pxweb": pxweb, "kolada_url": kolada_url,
                   "pxweb_url": pxweb_url}  # fmt: skip
        finally:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


# (indicator, grade, value for the municipality, county value, respondents in the municipality)
SURVEY_RESULTS = [
    ("alcohol_last_month_y9", "åk 9", 2021, 24.6, 27.9, 231),
    ("alcohol_last_month_y9", "åk 9", 2024, 21.8, 25.2, 224),
    ("feel_safe_outdoors_evening", "åk 9", 2021, 71.0, 69.4, 230),
    ("feel_safe_outdoors_evening", "åk 9", 2024, 67.5, 68.8, 221),
    ("physically_active_daily", "åk 6", 2021, 22.4, 21.0, 248),
    ("physically_active_daily", "åk 6", 2024, 19.9, 20.3, 240),
    ("meaningful_leisure", "åk 9", 2024, 71.3, 73.5, 219),
]


def write_survey_results(drop: Path) -> Path:
    """A filled-in survey template (Folkhälsorapport barn och unga, fictional figures):
    the municipality by sex, two areas (one with too few respondents) and the county."""
    path = drop / SURVEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    survey = "Folkhälsorapport barn och unga"
    rows = []
    for indicator, grade, year, own, county, respondents in SURVEY_RESULTS:
        rate = 74 if year == 2021 else 71
        rows += [
            (survey, year, MUNICIPALITY_CODE, grade, "T", indicator, own, respondents, rate),
            (survey, year, MUNICIPALITY_CODE, grade, "K", indicator, round(own + 1.4, 1),
             respondents // 2, rate),
            (survey, year, MUNICIPALITY_CODE, grade, "M", indicator, round(own - 1.5, 1),
             respondents - respondents // 2, rate),
            (survey, year, "0012", grade, "T", indicator, county, 8200, 69),
        ]  # fmt: skip
        if year == 2024:  # the areas: the main town has enough answers, a village has not
            rows += [
                (survey, year, AREAS[3][0], grade, "T", indicator, round(own + 2.1, 1), 46, rate),
                (survey, year, AREAS[0][0], grade, "T", indicator, round(own - 3.0, 1), 7, rate),
            ]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["survey", "year", "area_code", "grade", "sex", "indicator",
                         "value_pct", "respondents", "response_rate_pct"])  # fmt: skip
        writer.writerows(rows)
    return path
