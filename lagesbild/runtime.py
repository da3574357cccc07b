"""Process-wide defaults that must be in place before Prefect or GX is imported."""

from __future__ import annotations

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
