"""Process-wide defaults that must be in place before Prefect or GX is imported, and the
local Prefect server of `lagesbild serve`.

Prefect's home (its database, profiles) is Prefect's own: `PREFECT_HOME`, by default
`~/.prefect`, so the `prefect` command line and `lagesbild` see the same server, deployments
and runs.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from lagesbild.errors import ConfigError

log = logging.getLogger(__name__)

# Where `lagesbild serve` starts its Prefect server when PREFECT_API_URL is not set.
DEFAULT_API_URL = "http://127.0.0.1:4200/api"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def configure(data_dir: Path | None = None) -> None:
    """Quiet, local-first defaults; anything already set in the environment wins.
    `data_dir` is accepted for callers that have one; Prefect's home does not depend on it."""
    defaults = {
        # Telemetry otherwise races Prefect's SQLite setup ("database is locked").
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "false",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        # The ephemeral API needs 15-25 s to start on a 2-core machine.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
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
    for name in LOGGERS:
        route_logger_to_prefect(logging.getLogger(name))


def route_logger_to_prefect(logger: logging.Logger) -> None:
    """One logger's INFO records to the Prefect run. A deployment loads its entrypoint file
    (flows/nightly.py) as a module named after the file ("nightly"), outside LOGGERS."""
    from prefect.logging.handlers import APILogHandler

    logger.setLevel(logging.INFO)
    if not any(isinstance(handler, APILogHandler) for handler in logger.handlers):
        logger.addHandler(APILogHandler())


def api_url() -> str:
    """The Prefect API this process uses: PREFECT_API_URL from the environment or the active
    Prefect profile (`prefect config set`), else the local server `lagesbild serve` starts."""
    from prefect.settings import get_current_settings

    return get_current_settings().api.url or DEFAULT_API_URL


def api_answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url.rstrip('/')}/health", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the server gets SIGTERM when `lagesbild serve` dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@contextmanager
def prefect_server(url: str, log_file: Path, timeout: float = 180) -> Iterator[bool]:
    """A Prefect server (API, UI, scheduler and automations) at `url`: the one that answers
    there, else `prefect server start` on this machine, stopped on exit and killed with this
    process. Yields whether it was started here."""
    if api_answers(url):
        yield False
        return
    parts = urlsplit(url)
    if parts.hostname not in LOOPBACK or parts.port is None:
        raise ConfigError(
            f"no Prefect server answers at {url} (PREFECT_API_URL): start it, or unset "
            f"PREFECT_API_URL so `lagesbild serve` starts one on this machine ({DEFAULT_API_URL})"
        )
    log_file.parent.mkdir(parents=True, exist_ok=True)
    command = [str(Path(sys.executable).parent / "prefect"), "server", "start"]
    command += ["--host", parts.hostname, "--port", str(parts.port)]
    with log_file.open("ab") as output:
        server = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    try:
        deadline = time.monotonic() + timeout
        while not api_answers(url):
            if server.poll() is not None or time.monotonic() > deadline:
                raise ConfigError(
                    f"the Prefect server did not start at {url} (exit code {server.poll()}); "
                    f"its output is in {log_file}"
                )
            time.sleep(0.5)
        log.info("Prefect server started at %s (pid %d)", url, server.pid)
        yield True
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
