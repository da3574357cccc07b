"""Process-wide defaults that must be in place before Prefect or GX is imported, and the
local Prefect server of `lagesbild serve`.

Prefect's home (its database, profiles) is Prefect's own: `PREFECT_HOME`, by default
`~/.prefect`, so the `prefect` command line and `lagesbild` see the same server, deployments
and runs.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.error import URLError
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


def _configured_api_url() -> str | None:
    """PREFECT_API_URL from the environment or the active profile of PREFECT_HOME, read
    without importing Prefect (that import alone takes seconds)."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    home = Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    profiles_file = Path(os.environ.get("PREFECT_PROFILES_PATH", home / "profiles.toml"))
    try:
        profiles = tomllib.loads(profiles_file.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active", "ephemeral")
    return profiles.get("profiles", {}).get(active, {}).get("PREFECT_API_URL") or None


class TemporaryApi:
    """Prefect's temporary API server for one run, started before the flows are imported:
    it boots on the second core while this process imports Prefect, polars and dbt's
    helpers (Prefect itself would start it only when the flow is called, after those
    imports, and import its server code here too). Same command and environment as
    Prefect's own temporary server (prefect/server/api/server.py), under `setpriv
    --pdeathsig KILL` so that Linux ends it with this process, even after kill -9."""

    def __init__(self) -> None:
        with socket.socket() as probe:  # a free port on the loopback interface
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/api"
        spec = importlib.util.find_spec("prefect")  # its folder, without importing it
        assert spec is not None and spec.submodule_search_locations
        app_dir = str(Path(spec.submodule_search_locations[0]).parent)
        command = [sys.executable, "-m", "uvicorn", "--app-dir", app_dir, "--factory"]
        command += ["prefect.server.api.server:create_app", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--log-level", "error", "--lifespan", "on"]
        setpriv = shutil.which("setpriv")
        if setpriv:
            command = [setpriv, "--pdeathsig", "KILL", *command]
        env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
        }
        self.started = time.monotonic()
        self.process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
        # Registered before Prefect is imported, so it runs after Prefect's own exit
        # handlers, which send the run's last log lines to this server.
        atexit.register(self.stop)
        # read by Prefect when it is imported: this process is a client of that server
        os.environ["PREFECT_API_URL"] = self.url

    def wait(self) -> None:
        timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", 180))
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except (URLError, OSError):
                pass
            if self.process.poll() is not None or time.monotonic() - self.started > timeout:
                self.stop()
                raise ConfigError(
                    f"Prefect's temporary API server did not start at {self.url} (exit code "
                    f"{self.process.poll()}); set PREFECT_API_URL to a running Prefect server "
                    "(`lagesbild serve`) instead"
                )
            time.sleep(0.1)
        log.info(
            "Prefect temporary API at %s (pid %d), up after %.1f s",
            self.url,
            self.process.pid,
            time.monotonic() - self.started,
        )

    def stop(self) -> None:
        os.environ.pop("PREFECT_API_URL", None)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_temporary_api() -> TemporaryApi | None:
    """The temporary API, unless a Prefect server is configured (PREFECT_API_URL) or this
    process has imported Prefect already (its settings are fixed at import)."""
    if _configured_api_url() or "prefect" in sys.modules or sys.platform != "linux":
        return None
    return TemporaryApi()
