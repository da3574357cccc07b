"""Failure alerts: a Prefect hook that POSTs to a configurable webhook, and the run labels
(municipality, source, the stage running) that alerts and the Prefect UI show.

The message has a `text` field (what Slack and Teams incoming webhooks show) plus the
details as fields. It names the run, the stage it stopped in and what to do; it carries the
error text only of lagesbild's own errors (which never include cell values), of anything
else only its type. Posting is network I/O, so it is retried with backoff; a notification
that still fails raises, so Prefect marks the hook as failed in the run's log, and a
`lagesbild.notification.failed` event is emitted.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import httpx
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from lagesbild import runtime
from lagesbild.settings import Settings

log = logging.getLogger(__name__)

# The automations that send the same alerts from the Prefect server
# (flows/reports/automations.py); when one is active the hook leaves its alert to it, so
# nobody gets two.
FAILED_AUTOMATION = "lagesbild: run failed"
CRASHED_AUTOMATION = "lagesbild: run crashed"

# The message of `_pipeline`'s stage line (flows/nightly.py).
STAGE_MESSAGE = "stage %s: start"

WHAT_TO_DO = {
    "start": "The run stopped before its first stage: check the settings and "
    "LAGESBILD_PSEUDONYM_KEY where the flow runs (worker or `lagesbild serve`), then run "
    "`lagesbild run`.",
    "extract": "A source could not be read or landed: check the drop folder and the source "
    "named in the run's log, then run `lagesbild run` again.",
    "clean": "A quality gate failed or too many rows were rejected: read the gate results and "
    "quarantine in the run summary, ask the source for a corrected export and put it in the "
    "drop folder; the next run picks it up.",
    "dbt": "A dbt model or test failed: read the dbt output in the run's log, fix the cause, "
    "then run `lagesbild run`.",
    "publish": "Publishing failed: check disk space and the PostgreSQL target, then run "
    "`lagesbild run`.",
    "report": "The marts are published; only the report failed: see the run's log.",
    "locked": "Another run held the build lock: see `lagesbild status`; nothing was changed "
    "and the next run does the work.",
    "crashed": "The process running the flow died (killed, out of memory, restarted): check "
    "that the worker or `lagesbild serve` runs; the next run completes the work.",
}

# Error types whose text is written for operators and never holds a cell value.
OWN_ERRORS = ("flows.", "lagesbild.", "connectors.", "prefect.")


class NotificationFailed(RuntimeError):
    """The failure webhook could not be reached or refused the message."""


class _Retryable(Exception):
    pass


@retry(
    retry=retry_if_exception_type((httpx.TransportError, _Retryable)),
    stop=stop_after_attempt(4),
    wait=wait_exponential(multiplier=0.5, max=8),
    reraise=True,
)
def post_webhook(url: str, payload: dict) -> None:
    response = httpx.post(url, json=payload, timeout=10)
    if response.status_code >= 500 or response.status_code == 429:
        raise _Retryable(f"the webhook answered {response.status_code}")
    if response.status_code >= 400:  # a client error will not heal by retrying
        raise NotificationFailed(f"the webhook refused the message: {response.status_code}")


# -- run labels --------------------------------------------------------------------------------

_stage: dict[str, str] = {}  # flow run id → the stage running in this process


class _StageFollower(logging.Filter):
    """Follows `_pipeline`'s "stage X: start" lines: remembers the stage for the failure hook
    and shows it as the run's `stage:X` tag (what the server-side automations name)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == STAGE_MESSAGE and record.args:
            _set_stage(str(record.args[0]))
        return True


def _current_run():
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return context.flow_run if context and context.flow_run else None


def _set_stage(stage: str) -> None:
    run = _current_run()
    if run is None:
        return
    _stage[str(run.id)] = stage
    _update_tags(run, add={f"stage:{stage}"}, drop_prefix="stage:")


def _update_tags(run, add: set[str], drop_prefix: str | None = None) -> None:
    from prefect.client.orchestration import get_client

    tags = {t for t in run.tags if not (drop_prefix and t.startswith(drop_prefix))} | add
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(run.id, tags=sorted(tags))
        run.tags = sorted(tags)
    except Exception:  # labels help reading; they must never fail a run
        log.warning("could not update the tags of run %s", run.name, exc_info=True)


def label_run(logger: logging.Logger, *tags: str) -> None:
    """Tag the running flow run (municipality, source) and follow the stages `logger` logs
    (the flow module's own: a deployment loads flows/nightly.py under another name)."""
    run = _current_run()
    if run is None:
        return
    if not logger.name.startswith(runtime.LOGGERS):
        runtime.route_logger_to_prefect(logger)  # else its INFO lines never reach the filter
    if not any(isinstance(f, _StageFollower) for f in logger.filters):
        logger.addFilter(_StageFollower())
    _update_tags(run, add={"lagesbild", *tags}, drop_prefix="stage:")


# -- the message -------------------------------------------------------------------------------


def _reason(state) -> tuple[str, str | None]:
    """(reason text, error type): the text of our own errors, only the type of any other."""
    try:
        error = state.result(raise_on_failure=False)
    except Exception as exc:  # a result that cannot be read: the state message says why
        error = exc
    if not isinstance(error, BaseException):
        return str(state.message or state.name), None
    kind = type(error).__name__
    if type(error).__module__.startswith(OWN_ERRORS):
        return f"{kind}: {error}"[:500], kind
    return f"{kind} (the details are in the run's log)", kind


def failure_message(
    flow_name: str,
    run_name: str,
    run_id: str,
    state_name: str,
    stage: str,
    reason: str,
    reports: str,
    advice: str | None = None,
) -> dict:
    """The alert; `advice` picks what to do when it is not the stage's ('crashed', 'locked')."""
    what = WHAT_TO_DO.get(advice or stage, WHAT_TO_DO["start"])
    published = "published" if stage == "report" else "unchanged"
    return {
        "text": (
            f"lagesbild: {flow_name} run '{run_name}' {state_name.lower()} in stage {stage}: "
            f"{reason}. What to do: {what}"
        ),
        "flow": flow_name,
        "flow_run": run_name,
        "flow_run_id": run_id,
        "state": state_name,
        "stage": stage,
        "reason": reason,
        "what_to_do": what,
        "run_summaries": reports,
        "published_marts": published,
    }


def _automation_alerts(name: str) -> bool:
    """Whether the Prefect server sends this alert itself (the automation `name` is on)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():  # the ephemeral API runs no automations
        return False
    try:
        with get_client(sync_client=True) as client:
            return any(a.enabled for a in client.read_automations_by_name(name))
    except Exception:
        return False


def notify_failure(flow, flow_run, state) -> None:
    """Prefect on_failure and on_crashed hook."""
    settings = Settings()
    if not settings.failure_webhook_url:
        return
    automation = CRASHED_AUTOMATION if state.is_crashed() else FAILED_AUTOMATION
    if _automation_alerts(automation):
        log.info("the Prefect automation '%s' sends the alert", automation)
        return
    reason, kind = _reason(state)
    advice = "crashed" if state.is_crashed() else "locked" if kind == "RunLocked" else None
    payload = failure_message(
        flow.name,
        flow_run.name,
        str(flow_run.id),
        state.name,
        _stage.get(str(flow_run.id), "start"),
        reason,
        str(settings.paths.runs),
        advice,
    )
    try:
        post_webhook(settings.failure_webhook_url, payload)
    except Exception as exc:
        host = urlsplit(settings.failure_webhook_url).netloc  # the path may hold a secret
        _emit_failed(flow_run, host, exc)
        raise NotificationFailed(
            f"the failure alert of run '{flow_run.name}' did not reach the webhook at {host} "
            f"after retries ({type(exc).__name__}); the run's own failure is in its log"
        ) from exc


def _emit_failed(flow_run, host: str, exc: Exception) -> None:
    from prefect.events import emit_event

    emit_event(
        event="lagesbild.notification.failed",
        resource={"prefect.resource.id": f"prefect.flow-run.{flow_run.id}"},
        payload={"webhook_host": host, "error": type(exc).__name__},
    )
