"""The indicator catalogue (`catalogue/indicators.yml`): which statistics to fetch, for whom.

Validated on load, so a typo stops the run with a message naming the entry, before any call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import polars as pl
import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from lagesbild.settings import ConfigError

PROJECT_CATALOGUE = Path(__file__).resolve().parents[2] / "catalogue" / "indicators.yml"


class Region(BaseModel):
    kolada: str = Field(pattern=r"^\d{4}$")
    pxweb: str
    name: str


class ComparisonGroup(BaseModel):
    name: str
    codes: list[str] = Field(min_length=1)


class Municipalities(BaseModel):
    county: Region
    country: Region
    comparison_group: ComparisonGroup


class Indicator(BaseModel):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    source: Literal["kolada", "pxweb", "survey"]
    title: str
    unit: str
    higher_is_better: bool
    group: str = "all"
    goals: list[str] = []
    kpi: str | None = None  # kolada
    api: Literal["scb", "fohm"] | None = None  # pxweb
    table: str | None = None
    contents: str | None = None  # the measure's value code, in whichever variable holds it
    dimensions: dict[str, str] = {}  # area / sex / period → the table's variable codes
    selection: dict[str, list[str]] = {}  # further variables, fixed values
    sex_codes: dict[str, Literal["T", "K", "M"]] = {}
    # A table without an area dimension (national or county tables) describes one area: its
    # Kolada-style code ("0000" the country, "00LL" a county); default the country.
    area: str | None = Field(None, pattern=r"^\d{4}$")

    @model_validator(mode="after")
    def _source_fields(self) -> Indicator:
        if self.source == "kolada" and not self.kpi:
            raise ValueError(f"{self.id}: a kolada indicator needs `kpi`")
        if self.source == "pxweb":
            missing = [f for f in ("api", "table") if not getattr(self, f)]
            missing += [f"dimensions.{d}" for d in ("period",) if d not in self.dimensions]
            if "sex" in self.dimensions and not self.sex_codes:
                missing.append("sex_codes")
            if missing:
                raise ValueError(f"{self.id}: a pxweb indicator needs {', '.join(missing)}")
            if "area" in self.dimensions and self.area:
                raise ValueError(
                    f"{self.id}: give either `dimensions.area` (the table's region variable) "
                    "or `area` (the one area a table without one describes), not both"
                )
        return self


class Population(BaseModel):
    api: Literal["scb", "fohm"]
    table: str
    contents: str | None = None  # the measure's value code, in whichever variable holds it
    dimensions: dict[str, str]
    total_age: str | list[str]  # the age code(s) of all ages ("tot", SCB's "totalt")
    sex_codes: dict[str, Literal["K", "M"]]

    @property
    def total_ages(self) -> list[str]:
        return [self.total_age] if isinstance(self.total_age, str) else list(self.total_age)

    def ages(self) -> pl.DataFrame:
        """The total age codes, for dbt (int_population_area_year): every other code is a
        single year (`15`), a band (`15-19`) or open-ended (`100+`, `80-`)."""
        return pl.DataFrame({"age": self.total_ages, "is_total": [True] * len(self.total_ages)})


class Catalogue(BaseModel):
    municipalities: Municipalities
    first_year: int = Field(ge=1990)
    indicators: list[Indicator]
    population: Population | None = None
    own: str = ""  # the own municipality's code, from the settings

    @model_validator(mode="after")
    def _unique(self) -> Catalogue:
        ids = [i.id for i in self.indicators]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"indicator ids used twice: {', '.join(twice)}")
        known = set(self.kolada_areas)
        for indicator in self.of("pxweb"):
            if indicator.area and indicator.area not in known:
                raise ValueError(
                    f"{indicator.id}: `area: {indicator.area}` is none of the catalogue's "
                    f"areas ({', '.join(sorted(known))})"
                )
        return self

    def fixed_area(self, indicator: Indicator) -> str | None:
        """The area of a table without an area dimension (None: the table has one)."""
        if "area" in indicator.dimensions:
            return None
        return indicator.area or self.municipalities.country.kolada

    def of(self, source: str) -> list[Indicator]:
        return [i for i in self.indicators if i.source == source]

    @property
    def kolada_areas(self) -> list[str]:
        m = self.municipalities
        return [self.own, m.county.kolada, m.country.kolada, *m.comparison_group.codes]

    def pxweb_areas(self) -> dict[str, str]:
        """PxWeb region code → our area code (Kolada's: 0000 the country, 00LL a county)."""
        m = self.municipalities
        codes = {c: c for c in (self.own, *m.comparison_group.codes)}
        return codes | {m.county.pxweb: m.county.kolada, m.country.pxweb: m.country.kolada}

    def roles(self) -> pl.DataFrame:
        """One row per municipality-level area code and its role in the comparisons."""
        m = self.municipalities
        rows = [
            (self.own, "own", "own municipality"),
            (m.county.kolada, "county", m.county.name),
            (m.country.kolada, "country", m.country.name),
        ] + [(c, "comparison", m.comparison_group.name) for c in m.comparison_group.codes]
        return pl.DataFrame(rows, schema=["area_code", "role", "role_name"], orient="row")

    def indicator_table(self) -> pl.DataFrame:
        return pl.DataFrame(
            [
                {
                    "indicator_id": i.id,
                    "source": i.source,
                    "source_id": i.kpi or i.table or "",
                    "title": i.title,
                    "unit": i.unit,
                    "higher_is_better": i.higher_is_better,
                    "population_group": i.group,
                    "goals": ",".join(i.goals),
                }
                for i in self.indicators
            ],
            schema={
                "indicator_id": pl.String,
                "source": pl.String,
                "source_id": pl.String,
                "title": pl.String,
                "unit": pl.String,
                "higher_is_better": pl.Boolean,
                "population_group": pl.String,
                "goals": pl.String,
            },
        )


def contents_selection(variables: dict[str, list[str]], contents: str | None) -> dict:
    """The variable that holds the measure's value code, read from the table's metadata
    (SCB calls it ContentsCode; Folkhälsomyndigheten's tables name their measure variable
    after what it measures): {variable: [contents]}, or {} when no code is catalogued."""
    if not contents:
        return {}
    holders = [v for v, codes in variables.items() if contents in codes]
    if len(holders) != 1:
        where = "no variable" if not holders else f"several variables ({', '.join(holders)})"
        raise ConfigError(
            f"indicator catalogue: the value code {contents!r} is in {where} of the table; "
            f"it has {', '.join(variables)}. Name it under `selection` instead of `contents`."
        )
    return {holders[0]: [contents]}


def load_catalogue(path: Path, own_code: str) -> Catalogue:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Catalogue.model_validate({**raw, "own": own_code})
    except FileNotFoundError as exc:
        raise ConfigError(
            f"indicator catalogue {path} not found (setting statistics.catalogue)"
        ) from exc
    except ValidationError as exc:  # fields named, without pydantic's input dump
        from connectors.drop_files import describe_validation_error

        raise ConfigError(
            f"indicator catalogue {path} is not valid: {describe_validation_error(exc)}"
        ) from None
    except (yaml.YAMLError, TypeError) as exc:
        raise ConfigError(f"indicator catalogue {path} is not valid: {exc}") from None
