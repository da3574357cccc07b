"""All configuration in one typed place.

Values come, highest priority first, from `LAGESBILD_*` environment variables (nested with
`__`, e.g. `LAGESBILD_SUPPRESSION__MIN_PERSONS=3`), then a `.env` file, then `lagesbild.toml`
in the working directory (or the file named by `LAGESBILD_CONFIG`), then the defaults below
(every setting is listed in docs/configuration.md; a test keeps it complete). Secrets
(`LAGESBILD_PSEUDONYM_KEY`) belong in the environment or a secret store, never in the toml.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from connectors.kolada.settings import KoladaSettings
from connectors.pxweb.settings import PxWebSettings
from connectors.ss12000.settings import SS12000Settings
from lagesbild.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Schedules and run dates are Swedish time, whatever zone the server's clock is set to.
TIMEZONE = "Europe/Stockholm"


def today(now: datetime | None = None) -> date:
    """The date in Sweden, the default run date: 00:30 in Sweden is 23:30 UTC the day before
    in winter, 22:30 in summer. `now` (for tests) must carry its time zone."""
    return (now or datetime.now(UTC)).astimezone(ZoneInfo(TIMEZONE)).date()


# The demo publishes fictional data only; it uses this fixed, public key and says so.
DEMO_PSEUDONYM_KEY = "lagesbild-demo-key-not-secret"


class Suppression(BaseModel):
    """Small-cell thresholds (docs/design.md, invariant 6); approve them with your DPO."""

    min_persons: int = Field(5, ge=1, description="counts of persons below this are NULL")
    min_denominator: int = Field(10, ge=1, description="rates with fewer persons are NULL")


class Municipality(BaseModel):
    code: str = Field("1299", pattern=r"^\d{4}$", description="kommunkod, 4 digits")
    name: str = "Ekdala kommun"


class PostgresTarget(BaseModel):
    """Optional second publish target for BI tools that want a database server."""

    url: SecretStr = Field(
        description="libpq URL, e.g. postgresql://lagesbild@db.example/lagesbild (a secret)"
    )
    schema_name: str = Field("marts", description="schema the marts are served in")
    readonly_role: str = Field("lagesbild_bi", description="granted USAGE and SELECT")
    connect_timeout: int = Field(10, ge=1, description="seconds")
    # Only a change of a mart's columns waits for BI readers (docs/bi-contract.md); while it
    # waits, new readers of that table wait behind it: at most this long per attempt.
    lock_timeout_ms: int = Field(
        5_000, ge=1, description="longest wait for a BI query's lock, per attempt"
    )
    lock_retries: int = Field(11, ge=0, description="attempts after a lock timeout")
    lock_retry_seconds: float = Field(10, ge=0, description="pause between attempts")


class Statistics(KoladaSettings, PxWebSettings):
    """Public statistics (Kolada, PxWeb) and survey tables; docs/sources/statistics.md.

    The connection keys (`kolada_*`, `scb_url`, `fohm_url`, `pxweb_*`, `timeout`, `attempts`,
    `backoff`, `max_backoff`) are defined with the connectors (connectors/kolada/settings.py,
    connectors/pxweb/settings.py); the rest says what the pipeline does with them.
    """

    enabled: bool = Field(
        False, description="fetch Kolada and PxWeb in the nightly (needs internet access)"
    )
    catalogue: Path = Field(
        PROJECT_ROOT / "catalogue" / "indicators.yml", description="which indicators to fetch"
    )
    min_response_rate_pct: float = Field(
        50.0, ge=0, le=100, description="survey values below this response rate are suppressed"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LAGESBILD_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="forbid",
    )

    data_dir: Path = Field(Path("data"), description="root of every layer the pipeline writes")
    layers_url: str | None = Field(
        None,
        description="where the pupil-level layers (landing, clean, quarantine) live: a "
        "folder or an fsspec URL such as s3://bucket/prefix, credentials never in it "
        "(unset: the data folder; docs/configuration.md)",
    )
    drop_dir: Path | None = Field(None, description="where exports arrive; default data/drop")
    pseudonym_key: SecretStr | None = Field(
        None, description="HMAC key for personal ids; required for real data"
    )
    pseudonym_key_file: Path | None = Field(
        None,
        description="a file holding the key instead (one per municipality on a shared "
        "installation); pseudonym_key wins when both are set",
    )
    attendance_layouts: Path = Field(
        PROJECT_ROOT / "connectors" / "attendance_export" / "layouts.yml",
        description="column mappings of the attendance export layouts",
    )
    housing_layouts: Path = Field(
        PROJECT_ROOT / "connectors" / "housing_export" / "layouts.yml",
        description="column, category and status mappings of the housing companies' exports",
    )
    min_file_age_seconds: float = Field(
        60,
        ge=0,
        description="a drop-folder file modified more recently is left for the next run "
        "(it may still be uploading)",
    )
    expectations_dir: Path = Field(PROJECT_ROOT / "expectations")
    dbt_project_dir: Path = Field(PROJECT_ROOT / "dbt_project")
    municipality: Municipality = Municipality()
    ss12000: SS12000Settings = SS12000Settings()
    attendance_precedence: list[str] = Field(
        ["ss12000", "skola24_csv", "ist_xlsx"],
        description="attendance sources, strongest first: decides each school x day both cover",
    )
    suppression: Suppression = Suppression()
    statistics: Statistics = Statistics()
    volume_tolerance: float = Field(
        0.5, gt=0, description="warn when a partition's rows differ more than this share"
    )
    remap_areas: bool = Field(
        False,
        description="place schools in the area their retired area became (area_revisions.csv), "
        "past figures too; off: past figures keep their own geography",
    )
    max_quarantine_share: float = Field(
        0.2, ge=0, le=1, description="a load with a larger share of rejected rows blocks the run"
    )
    run_lock_timeout: float = Field(
        900, ge=0, description="seconds a run waits for another run's build before giving up"
    )
    work_db_lock_timeout: float = Field(
        300, ge=0, description="seconds dbt waits for a session holding work.duckdb open"
    )
    failure_webhook_url: str | None = Field(
        None, description="POSTed a JSON message when a run fails (Slack/Teams-style 'text')"
    )
    retention_school_years: int | None = Field(
        None,
        ge=1,
        description="delete pupil-level attendance landing and clean data older than this "
        "many school years once published (None: keep everything)",
    )
    freshness_school_days: int = Field(
        2, ge=0, description="a source is stale when its latest day is more school days behind"
    )
    postgres: PostgresTarget | None = Field(
        None, description="also publish the marts to PostgreSQL (LAGESBILD_POSTGRES__URL)"
    )
    warehouse_memory_limit: str = Field(
        "4GB", description="DuckDB memory_limit of the dbt build (it spills to disk beyond it)"
    )
    dask_scheduler_address: str | None = Field(
        None,
        description="clean each period as a task on this Dask scheduler (tcp://host:8786), or "
        "'local' for a LocalCluster; unset: in this process (docs/scale.md)",
    )
    dbt_docs: bool = Field(
        True, description="write the dbt docs page (reports/dbt-docs/index.html) on each run"
    )
    nightly_cron: str = Field("30 4 * * *", description="Europe/Stockholm; avoid 02:00-03:00")
    served_storage_version: str = Field(
        "v1.4.0", description="DuckDB storage version of marts.duckdb, readable by 1.4+ drivers"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Read when the settings are made, not imported: one process may read several
        # municipalities' files (`Settings.from_file`, docs/region.md).
        toml_file = settings_cls.model_config.get("toml_file") or os.environ.get(
            "LAGESBILD_CONFIG", "lagesbild.toml"
        )
        toml = TomlConfigSettingsSource(settings_cls, toml_file=toml_file)
        if settings_cls.model_config.get("toml_only"):
            return (init_settings, toml)
        return (init_settings, env_settings, dotenv_settings, toml)

    @classmethod
    def from_file(cls, path: Path) -> Settings:
        """A municipality's settings from its own file only: no environment, no .env (the
        environment of the process reading several municipalities belongs to none of them)."""
        if not Path(path).is_file():
            raise ConfigError(f"settings file {path} does not exist")

        class FromFile(cls):
            model_config = SettingsConfigDict(toml_file=str(path), toml_only=True)

        return FromFile()

    @cached_property
    def paths(self) -> Paths:
        from flows.layers.storage import layers_root

        data = self.data_dir.resolve()
        drop = (self.drop_dir or self.data_dir / "drop").resolve()
        return Paths(data, drop, layers_root(self.layers_url, data))

    def require_pseudonym_key(self) -> bytes:
        if (self.pseudonym_key is None or not self.pseudonym_key.get_secret_value()) and (
            self.pseudonym_key_file is not None
        ):
            try:
                key = self.pseudonym_key_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"pseudonym_key_file {self.pseudonym_key_file} cannot be read "
                    f"({exc.strerror}); create it (one line, the key; readable by the owner "
                    "only) or set LAGESBILD_PSEUDONYM_KEY"
                ) from None
            if not key:
                raise ConfigError(
                    f"pseudonym_key_file {self.pseudonym_key_file} is empty; write the "
                    "municipality's key in it (one line)"
                )
            return key.encode()
        if self.pseudonym_key is None or not self.pseudonym_key.get_secret_value():
            raise ConfigError(
                "LAGESBILD_PSEUDONYM_KEY is not set. Personal ids are replaced by "
                "HMAC-SHA256(key, id) before anything is written; set a long random key in the "
                "environment (see .env.example), keep it outside the repository and never change "
                "it, or pupils get new pseudonyms."
            )
        return self.pseudonym_key.get_secret_value().encode()


class Paths:
    """Where each layer lives (docs/design.md, 'Layers and their contracts'). The pupil-level
    layers (landing, clean, quarantine) are under `layers`: the data folder, or the place
    `layers_url` names (a `upath.UPath` on an object store, flows/layers/storage.py)."""

    def __init__(self, data: Path, drop: Path, layers: Path | None = None):
        self.data = data
        self.drop = drop
        self.layers = data if layers is None else layers
        self.landing = self.layers / "landing"
        self.clean = self.layers / "clean"
        self.quarantine = self.layers / "quarantine"
        self.audit = data / "audit"
        self.warehouse = data / "warehouse"
        self.work_db = self.warehouse / "work.duckdb"
        self.marts_db = self.warehouse / "marts.duckdb"
        self.marts_parquet = self.warehouse / "marts"
        self.reports = data / "reports"
        self.validation = self.reports / "validation"
        self.runs = self.reports / "runs"

    def relative(self, path: Path) -> str:
        """A path for messages and the audit: relative to the data folder, or to the
        layers' place when that is elsewhere (never with credentials: the URL has none)."""
        for root in (self.data, self.layers):
            if type(root) is type(path) and path.is_relative_to(root):
                return str(path.relative_to(root))
        return str(path)
