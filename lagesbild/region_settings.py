"""The configuration of several municipalities on one installation, and of their region.

One TOML file (`region.toml`, or the file named by `LAGESBILD_REGION_CONFIG` or `--config`)
lists the municipalities; each keeps its own settings file (its `lagesbild.toml`: data
folder, drop folder, key file, thresholds, schedule). The file's keys: docs/region.md.
"""

from __future__ import annotations

import os
import tomllib
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from lagesbild.errors import ConfigError
from lagesbild.settings import Settings, Suppression

DEFAULT_REGION_FILE = "region.toml"


class Member(BaseModel):
    """One municipality of the region."""

    model_config = {"extra": "forbid"}

    config: Path = Field(description="the municipality's own settings file (lagesbild.toml)")
    marts: Path | None = Field(
        None,
        description="its published marts (marts.duckdb or the marts parquet folder); default "
        "<data_dir>/warehouse/marts.duckdb of its settings",
    )

    @cached_property
    def settings(self) -> Settings:
        return Settings.from_file(self.config)

    @property
    def code(self) -> str:
        return self.settings.municipality.code

    @property
    def name(self) -> str:
        return self.settings.municipality.name

    @property
    def served_marts(self) -> Path:
        return (self.marts or self.settings.paths.marts_db).resolve()


class Region(BaseModel):
    model_config = {"extra": "forbid"}

    name: str = Field(description="the region's name, e.g. Region Ekdala")
    code: str = Field("region", pattern=r"^[0-9A-Za-z_-]+$", description="the region's code")
    data_dir: Path = Field(Path("data/region"), description="where the region build writes")
    work_pool: str = Field("lagesbild", description="the Prefect work pool of the deployments")
    suppression: Suppression = Field(
        Suppression(),
        description="the region's own thresholds; the strictest of these and every member's apply",
    )
    served_storage_version: str = Field("v1.4.0", description="as the municipalities'")
    run_lock_timeout: float = Field(900, ge=0, description="seconds the build waits for another")
    municipalities: list[Member] = Field(min_length=1)

    @cached_property
    def effective_suppression(self) -> Suppression:
        """The strictest thresholds: the region's and every member's."""
        members = [m.settings.suppression for m in self.municipalities]
        return Suppression(
            min_persons=max([self.suppression.min_persons, *(s.min_persons for s in members)]),
            min_denominator=max(
                [self.suppression.min_denominator, *(s.min_denominator for s in members)]
            ),
        )


def load_region(path: Path | None = None) -> Region:
    """Read and check the region file: every member's settings file readable, and no two
    members sharing a code, a data folder, a drop folder or a key."""
    path = Path(path or os.environ.get("LAGESBILD_REGION_CONFIG", DEFAULT_REGION_FILE))
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"region file {path} does not exist; start from region.toml.example (docs/region.md)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"region file {path} is not valid TOML: {exc}") from None
    try:
        region = Region.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'top level'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"region file {path}: {problems}") from None
    for member in region.municipalities:
        try:
            member.settings  # noqa: B018 - read now, so a broken file is named here
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"settings file {member.config}: {problems}") from None
    check_apart(region)
    return region


def check_apart(region: Region) -> None:
    """Municipalities share nothing they write or read pupil-level data from."""
    problems = []
    seen: dict[str, dict[object, Path]] = {"code": {}, "data folder": {}, "drop folder": {}}
    keys: dict[bytes, Path] = {}
    for member in region.municipalities:
        s = member.settings
        for what, value in (
            ("code", s.municipality.code),
            ("data folder", s.paths.data),
            ("drop folder", s.paths.drop),
        ):
            if value in seen[what]:
                problems.append(f"{member.config} and {seen[what][value]} have the same {what}")
            seen[what][value] = member.config
        try:
            key = s.require_pseudonym_key()
        except ConfigError:
            key = None  # no key file: the run asks for one; nothing to compare here
        if key is not None:
            if key in keys:
                problems.append(
                    f"{member.config} and {keys[key]} have the same pseudonym key: a pupil "
                    "would get the same pseudonym in both; give each municipality its own"
                )
            keys[key] = member.config
    data = {m.config: m.settings.paths.data for m in region.municipalities}
    for config, folder in data.items():
        for other, other_folder in data.items():
            if config != other and folder != other_folder and folder.is_relative_to(other_folder):
                problems.append(f"the data folder of {config} lies inside that of {other}")
    if problems:
        raise ConfigError("region: " + "; ".join(problems))
