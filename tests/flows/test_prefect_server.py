"""The one-machine path against a real Prefect server: `lagesbild serve` starts its own
`prefect server start` (scheduler, automations) on a free loopback port with a temporary
PREFECT_HOME, and every test here shares that one server (it takes ~25 s to start).

Order matters and is the order of the file: the scheduled nightly, a backfill from the
`prefect` CLI that waits for it, a failing run whose webhook answers 500, then the
automations and a late nightly.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from zoneinfo import ZoneInfo

import pytest

from lagesbild.settings import PROJECT_ROOT
from tests.flows.conftest import TEST_KEY

# `make test-scenarios`: a Prefect server, workers, schedules and automations
pytestmark = pytest.mark.scenario

STOCKHOLM = ZoneInfo("Europe/Stockholm")


class Hook(BaseHTTPRequestHandler):
    """The failure webhook: records every POST; answers `status`."""

    received: ClassVar[list[dict]] = []
    status: ClassVar[int] = 200

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append(json.loads(body))
        self.send_response(Hook.status)
        self.end_headers()

    def log_message(self, *args):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def server(municipality, tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    drop = root / "drop"
    shutil.copytree(municipality["drop"], drop)
    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    Hook.received, Hook.status = [], 200

    # The nightly fires once, at the first whole minute at least 75 s away (the server and
    # the registration take ~30 s of that).
    first = (datetime.now(STOCKHOLM) + timedelta(seconds=135)).replace(second=0, microsecond=0)
    if first.hour == 2:
        pytest.skip("the 02:00 hour is refused for the nightly schedule")
    url = f"http://127.0.0.1:{free_port()}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(root / "prefect-home"),
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "5",
        "LAGESBILD_DATA_DIR": str(root / "data"),
        "LAGESBILD_DROP_DIR": str(drop),
        "LAGESBILD_PSEUDONYM_KEY": TEST_KEY,
        "LAGESBILD_DBT_DOCS": "false",
        "LAGESBILD_NIGHTLY_CRON": f"{first.minute} {first.hour} * * *",
        "LAGESBILD_FAILURE_WEBHOOK_URL": f"http://127.0.0.1:{hook.server_port}/hook",
        "LAGESBILD_HOME": str(PROJECT_ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    output = (root / "serve.log").open("w")
    started = time.monotonic()
    serve = subprocess.Popen(
        [sys.executable, "-m", "lagesbild.cli", "serve"],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    state = {"url": url, "env": env, "root": root, "first": first, "serve": serve}
    try:
        with prefect_at(url):
            wait_for(
                lambda: served_count() == 2 or serve.poll() is not None,
                180,
                "the served deployments",
            )
        assert serve.poll() is None, (root / "serve.log").read_text()[-3000:]
        state["ready_seconds"] = time.monotonic() - started
        yield state
    finally:
        if serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(60)
            except subprocess.TimeoutExpired:
                serve.kill()
        hook.shutdown()
        output.close()


def prefect_at(url: str):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings(updates={PREFECT_API_URL: url})


def client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def served_count() -> int:
    import httpx

    try:
        return len(deployments())
    except httpx.HTTPError:  # the server is still starting
        return 0


def deployments() -> dict[str, object]:
    with client() as c:
        return {f"{d.name}": d for d in c.read_deployments()}


def prefect_cli(server, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(PROJECT_ROOT / ".venv/bin/prefect"), "--no-prompt", *args],
        env={**server["env"], "COLUMNS": "200"},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_run(run_id):
    with client() as c:
        return c.read_flow_run(run_id)


def test_served_and_yaml_deployments_coexist_on_one_server(server):
    """`prefect deploy` of deployments/prefect.yaml next to the served ones: four
    deployments, none overwritten; the prefect CLI sees them all; every one shares the one
    build limit, and re-deploying keeps that link."""
    assert (
        prefect_cli(server, "work-pool", "create", "lagesbild", "--type", "process").returncode == 0
    )
    deploy = ["deploy", "--all", "--prefect-file", "deployments/prefect.yaml"]
    result = prefect_cli(server, *deploy)
    assert result.returncode == 0, result.stdout + result.stderr
    listed = prefect_cli(server, "deployment", "ls")
    for name in (
        "nightly/nightly",
        "nightly/nightly-served",
        "backfill/backfill",
        "backfill/backfill-served",
    ):
        assert name in listed.stdout, listed.stdout

    from flows.deployments import share_build_limit

    with prefect_at(server["url"]), client() as c:
        assert sorted(share_build_limit(c)) == ["backfill", "nightly"]  # served ones: linked
    result = prefect_cli(server, *deploy)  # a second deploy must not undo the link
    assert result.returncode == 0, result.stdout + result.stderr

    with prefect_at(server["url"]):
        found = deployments()
        assert sorted(found) == ["backfill", "backfill-served", "nightly", "nightly-served"]
        for name in ("nightly", "backfill"):
            assert found[name].work_pool_name == "lagesbild" and found[name].pull_steps
            assert found[f"{name}-served"].work_pool_name is None
            assert not found[f"{name}-served"].pull_steps
        limits = {d.global_concurrency_limit.name for d in found.values()}
        assert limits == {"lagesbild-build"}
        assert {d.global_concurrency_limit.limit for d in found.values()} == {1}

        from flows.deployments import refuse_overwriting
        from lagesbild.settings import ConfigError

        class Named:  # a served deployment that would take a YAML deployment's name
            flow_name, name = "nightly", "nightly"

        with client() as c, pytest.raises(ConfigError, match="will not overwrite"):
            refuse_overwriting(c, [Named()])


def test_the_scheduled_nightly_fires_and_a_cli_backfill_waits_for_it(server):
    """The nightly fires by itself at its cron time and completes; a backfill started with
    `prefect deployment run` meanwhile waits as AwaitingConcurrencySlot, then completes."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
    )

    with prefect_at(server["url"]):

        def nightly_run():
            with client() as c:
                runs = c.read_flow_runs(
                    deployment_filter=DeploymentFilter(
                        name=DeploymentFilterName(any_=["nightly-served"])
                    )
                )
            return next((r for r in runs if r.state.is_running() or r.state.is_final()), None)

        run = wait_for(nightly_run, 240, "the scheduled nightly to start")
        started = run.start_time or datetime.now(UTC)
        delay = (started - server["first"]).total_seconds()
        print(
            f"serve ready in {server['ready_seconds']:.0f} s; nightly started {delay:.1f} s "
            "after its scheduled time"
        )
        assert run.expected_start_time == server["first"]
        assert -5 <= delay < 30  # the scheduler may hand a run out a moment early

        backfill = prefect_cli(
            server,
            "deployment",
            "run",
            "backfill/backfill-served",
            "-p",
            "date_from=2025-09-01",
            "-p",
            "date_to=2025-09-30",
        )
        assert backfill.returncode == 0, backfill.stdout + backfill.stderr
        with client() as c:
            (waiting,) = c.read_flow_runs(
                deployment_filter=DeploymentFilter(
                    name=DeploymentFilterName(any_=["backfill-served"])
                )
            )
        states = set()

        def done(run_id):
            current = read_run(run_id)
            states.add(current.state.name)
            return current if current.state.is_final() else None

        nightly = wait_for(lambda: done(run.id), 300, "the nightly to finish")
        assert nightly.state.is_completed(), nightly.state.message
        days = {nightly.start_time.astimezone(STOCKHOLM).date(), datetime.now(STOCKHOLM).date()}
        assert nightly.name in {f"nightly-{day}" for day in days}  # it may cross midnight
        assert {"lagesbild", "municipality:1299", "stage:report"} <= set(nightly.tags)
        states.clear()
        finished = wait_for(lambda: done(waiting.id), 300, "the backfill to finish")
        assert finished.state.is_completed(), finished.state.message
        assert finished.name == "backfill-attendance_export-2025-09-01..2025-09-30"
        assert "source:attendance_export" in finished.tags
        with client() as c:
            history = [s.name for s in c.read_flow_run_states(waiting.id)]
        print(
            f"backfill states: {history}; nightly took "
            f"{(nightly.end_time - nightly.start_time).total_seconds():.0f} s"
        )
        assert "AwaitingConcurrencySlot" in history

        refused = prefect_cli(
            server,
            "deployment",
            "run",
            "backfill/backfill-served",
            "-p",
            "date_from=2025-13-01",
            "-p",
            "date_to=2025-12-31",
        )
        assert refused.returncode != 0
        assert "Validation failed for field 'date_from'" in refused.stdout + refused.stderr
        bad_source = prefect_cli(
            server,
            "deployment",
            "run",
            "backfill/backfill-served",
            "-p",
            "source=attendence_export",
            "-p",
            "date_from=2025-09-01",
            "-p",
            "date_to=2025-09-30",
        )
        assert bad_source.returncode != 0
        with client() as c:
            runs = c.read_flow_runs(
                flow_run_filter=FlowRunFilter(),
                deployment_filter=DeploymentFilter(
                    name=DeploymentFilterName(any_=["backfill-served"])
                ),
            )
        assert len(runs) == 1  # neither refused run was created


def deploy_yaml(server) -> None:
    """The deployments of deployments/prefect.yaml on the server (again: it is idempotent)."""
    prefect_cli(server, "work-pool", "create", "lagesbild", "--type", "process")  # may exist
    deploy = ["deploy", "--all", "--prefect-file", "deployments/prefect.yaml"]
    result = prefect_cli(server, *deploy)
    assert result.returncode == 0, result.stdout + result.stderr


def failing_backfill(server) -> object:
    """A backfill whose window is empty: it fails at start, in a second."""
    result = prefect_cli(
        server,
        "deployment",
        "run",
        "backfill/backfill-served",
        "-p",
        "date_from=2025-09-30",
        "-p",
        "date_to=2025-09-01",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    run_id = result.stdout.split("UUID:")[1].split()[0]
    return wait_for(
        lambda: (r := read_run(run_id)).state.is_final() and r, 180, "the failing backfill"
    )


def test_a_webhook_that_fails_is_retried_and_the_hook_shows_failed(server):
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    Hook.received.clear()
    Hook.status = 500
    try:
        with prefect_at(server["url"]):
            run = failing_backfill(server)
            assert run.state.is_failed()

            def hook_logged():
                with client() as c:
                    logs = c.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
                return [log.message for log in logs if "error was encountered" in log.message]

            (line,) = wait_for(hook_logged, 60, "the hook's log line")
    finally:
        Hook.status = 200
    assert line.startswith("An error was encountered while running hook 'notify_failure'")
    assert len(Hook.received) == 4  # the first try and three retries
    message = Hook.received[-1]
    assert message["flow_run"] == "backfill-attendance_export-2025-09-30..2025-09-01"
    assert message["stage"] == "start" and message["state"] == "Failed"
    assert "ConfigError: backfill window is empty" in message["reason"]
    assert "What to do:" in message["text"]


def test_automations_alert_on_a_failed_run_and_a_late_nightly(server):
    """With the automations created, the Prefect server sends the alerts: a failed run
    (once: the flow's hook leaves it to the automation) and a nightly that did not start."""
    from prefect.states import Scheduled

    created = subprocess.run(
        [sys.executable, "-m", "lagesbild.cli", "automations", "create"],
        env=server["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    for name in ("run crashed", "run failed", "nightly late", "nightly missed"):
        assert f"automation 'lagesbild: {name}'" in created.stdout
    Hook.received.clear()
    with prefect_at(server["url"]):
        run = failing_backfill(server)
        failed = wait_for(
            lambda: [m for m in Hook.received if m.get("flow_run_id") == str(run.id)],
            90,
            "the failed-run alert",
        )
        time.sleep(3)  # a second message (from the hook) would have arrived by now
        (message,) = [m for m in Hook.received if m.get("flow_run_id") == str(run.id)]
        assert failed == [message] and message["sent_by"] == "prefect automation"
        assert message["text"].startswith(
            f"lagesbild: backfill run '{run.name}' failed in stage start. What to do:"
        )

        deploy_yaml(server)  # this test's own precondition, whatever ran before it
        with client() as c:
            yaml_nightly = c.read_deployment_by_name("nightly/nightly")
            late = c.create_flow_run_from_deployment(
                yaml_nightly.id,
                state=Scheduled(scheduled_time=datetime.now(UTC) - timedelta(minutes=1)),
            )
        created = time.monotonic()
        (alert,) = wait_for(
            lambda: [m for m in Hook.received if m.get("flow_run") == late.name],
            120,
            "the late-nightly alert",
        )
        print(f"late alert {time.monotonic() - created:.0f} s after the late run was created")
    assert alert["text"].startswith(f"lagesbild: the nightly run '{late.name}' is late")
    assert "lagesbild serve" in alert["text"]


def test_killing_serve_stops_its_prefect_server(server):
    """`kill -9` of `lagesbild serve` leaves no Prefect server behind (PR_SET_PDEATHSIG)."""
    import httpx

    serve = server["serve"]
    serve.kill()
    serve.wait(60)

    def down():
        try:
            httpx.get(f"{server['url']}/health", timeout=2)
        except httpx.HTTPError:
            return True
        return False

    wait_for(down, 30, "the Prefect server to stop")
