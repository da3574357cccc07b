"""Process-wide defaults that must be in place before Prefect or GX is imported."""

from __future__ import annotations

import logging
import os
from pathlib import Path


def configure(data_dir: Path | None = None) -> None:
    """Quiet, local-first defaults; anything already set in the environment wins."""
    defaults = {
        # Telemetry otherwise races Prefect's SQLite setup ("database is locked").
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "false",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        # The ephemeral API needs 15-25 s to start on a 2-core machine.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    if data_dir is not None and "PREFECT_API_URL" not in os.environ:
        defaults["PREFECT_HOME"] = str((data_dir / "prefect").resolve())
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
    if "PREFECT_HOME" in os.environ:
        # Prefect creates its home without parents; on a fresh data folder that fails.
        Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)


# The packages whose `logging.getLogger(__name__)` records belong in a run's log.
LOGGERS = ("flows", "connectors", "lagesbild")


def route_logs_to_prefect() -> None:
    """Send the project's log records (INFO and up) to the Prefect run they happen in, as
    Prefect's own `PREFECT_LOGGING_EXTRA_LOGGERS` would; they still reach the console
    through the root logger. Idempotent: called at the start of every flow run."""
    from prefect.logging.handlers import APILogHandler

    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        if not any(isinstance(handler, APILogHandler) for handler in logger.handlers):
            logger.addHandler(APILogHandler())
