"""Failure notification: a Prefect `on_failure` hook that POSTs to a configurable webhook.

The message has a `text` field (what Slack and Teams incoming webhooks show) plus the
details as fields. Posting is network I/O, so it is retried with backoff; a notification
that still fails is logged, never raised (the run already failed for its own reason).
"""

from __future__ import annotations

import logging

import httpx
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from lagesbild.settings import Settings

log = logging.getLogger("lagesbild.notify")


@retry(
    retry=retry_if_exception_type((httpx.TransportError, httpx.HTTPStatusError)),
    stop=stop_after_attempt(4),
    wait=wait_exponential(multiplier=0.5, max=8),
    reraise=True,
)
def post_webhook(url: str, payload: dict) -> None:
    response = httpx.post(url, json=payload, timeout=10)
    if response.status_code >= 500 or response.status_code == 429:
        response.raise_for_status()
    if response.status_code >= 400:  # a client error will not heal by retrying
        log.error("failure webhook answered %s: %s", response.status_code, response.text[:200])


def failure_message(flow_name: str, run_name: str, run_id: str, reason: str, reports: str) -> dict:
    return {
        "text": f"lagesbild: {flow_name} run '{run_name}' failed: {reason}",
        "flow": flow_name,
        "flow_run": run_name,
        "flow_run_id": run_id,
        "reason": reason,
        "run_summaries": reports,
        "published_marts": "unchanged",
    }


def notify_failure(flow, flow_run, state) -> None:
    """Prefect on_failure hook."""
    settings = Settings()
    if not settings.failure_webhook_url:
        return
    payload = failure_message(
        flow.name, flow_run.name, str(flow_run.id), str(state.message), str(settings.paths.runs)
    )
    try:
        post_webhook(settings.failure_webhook_url, payload)
    except Exception:  # the run's own failure is what matters; say that notifying failed
        log.exception("could not notify %s of the failed run", settings.failure_webhook_url)
