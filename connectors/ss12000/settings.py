"""The settings of an SS 12000 connection: the `[ss12000]` table of lagesbild.toml and the
`LAGESBILD_SS12000__*` environment variables (docs/sources/ss12000.md).

Off while `base_url` is unset. The client secret comes from the environment
(`LAGESBILD_SS12000__CLIENT_SECRET`) or a Prefect Secret block, never from a file.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

from connectors.http import RetryPolicy
from lagesbild.errors import ConfigError


class SS12000Settings(BaseModel):
    base_url: str | None = Field(None, description="API root, e.g. https://host/ss12000/v2")
    token_url: str | None = Field(None, description="OAuth2 client-credentials token endpoint")
    client_id: str | None = None
    client_secret: SecretStr | None = Field(None, description="environment only")
    client_secret_block: str | None = Field(None, description="Prefect Secret block name")
    scopes: list[str] = Field(default_factory=list, description="OAuth2 scopes to request")
    token_auth: Literal["post", "basic"] = Field(
        "post", description="client credentials in the token request body, or HTTP Basic"
    )
    page_size: int = Field(500, ge=1, description="`limit` per page")
    timeout: float = Field(30, gt=0, description="seconds per HTTP call")
    max_attempts: int = Field(5, ge=1, description="tries per call on timeouts, 429 and 5xx")
    backoff: float = Field(0.5, ge=0, description="first backoff in seconds, doubled per try")
    max_backoff: float = Field(
        30, gt=0, description="longest wait between tries in seconds, Retry-After included"
    )
    first_day: date | None = Field(
        None, description="first day fetched when nothing has landed; default calendar start"
    )
    school_types: list[str] = Field(
        ["GR", "GRS", "FKLASS"],
        description="school forms (SS 12000 SchoolTypesEnum) whose attendance is fetched",
    )
    refetch_school_days: int = Field(
        10, ge=0, description="recent school days asked for again each night (late reports)"
    )
    watermark_overlap: int = Field(
        600, ge=0, description="seconds re-asked before each meta.modified watermark"
    )

    @property
    def enabled(self) -> bool:
        return bool(self.base_url)

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.timeout, self.max_attempts, self.backoff, self.max_backoff)

    def require_connection(self) -> None:
        """A ConfigError naming what is missing unless base_url, token_url and client_id are set."""
        missing = [n for n in ("base_url", "token_url", "client_id") if not getattr(self, n)]
        if missing:
            raise ConfigError(
                "SS 12000 is half configured: set "
                + ", ".join(f"LAGESBILD_SS12000__{n.upper()}" for n in missing)
                + " (or [ss12000] in lagesbild.toml), or unset base_url to turn it off."
            )

    def resolve_client_secret(self) -> str:
        """The client secret (environment, else the Prefect Secret block), after checking
        that the connection is completely configured; a ConfigError says what is missing."""
        self.require_connection()
        secret = self.client_secret.get_secret_value() if self.client_secret else None
        if not secret and self.client_secret_block:
            from prefect.blocks.system import Secret  # only when a block is configured

            secret = Secret.load(self.client_secret_block).get()
        if not secret:
            raise ConfigError(
                "SS 12000 client secret missing: set LAGESBILD_SS12000__CLIENT_SECRET in the "
                "environment or name a Prefect Secret block in ss12000.client_secret_block."
            )
        return secret
