"""The Prefect automations that alert on what a flow's own hook cannot report: a run whose
process died (Crashed), a failed run, and a nightly that is late or did not complete at all.

Created (again) by `lagesbild automations create` on the Prefect server; each POSTs to the
`failure_webhook_url` through a Prefect Webhook block. The message names the run, the stage
it was in (the run's `stage:` tag, see notify.label_run), and what to do; it never carries
the error text, so no cell value can reach it.
"""

from __future__ import annotations

import json
from datetime import timedelta

from flows.reports.notify import CRASHED_AUTOMATION, FAILED_AUTOMATION, WHAT_TO_DO

WEBHOOK_BLOCK = "lagesbild-alerts"
FLOWS = ["nightly", "backfill"]
STAGES = ["extract", "clean", "dbt", "publish", "report"]

# The stage a run was in: its `stage:` tag, "start" before the first one.
STAGE = (
    "{% for t in flow_run.tags if t.startswith('stage:') %}{{ t[6:] }}{% else %}start{% endfor %}"
)


RUN_NAME = "{{ flow_run.name }}"


def _quoted(text: str) -> str:
    """Text for inside a JSON string in the template."""
    return json.dumps(text)[1:-1]


def _advice_by_stage() -> str:
    chain = "".join(
        f"{{% {'if' if i == 0 else 'elif'} 'stage:{s}' in flow_run.tags %}}{_quoted(WHAT_TO_DO[s])}"
        for i, s in enumerate(STAGES)
    )
    return f"{chain}{{% else %}}{_quoted(WHAT_TO_DO['start'])}{{% endif %}}"


def _run_payload(state: str, advice: str) -> str:
    text = (
        f"lagesbild: {{{{ flow.name }}}} run '{{{{ flow_run.name }}}}' {state.lower()} in stage "
        f"{STAGE}. What to do: {advice}"
    )
    fields = {
        "flow": "{{ flow.name }}",
        "flow_run": "{{ flow_run.name }}",
        "flow_run_id": "{{ flow_run.id }}",
        "state": state,
        "stage": STAGE,
        "what_to_do": advice,
    }
    body = ", ".join(f'"{k}": "{v}"' for k, v in fields.items())
    return f'{{"text": "{text}", {body}, "sent_by": "prefect automation"}}'


LATE_ADVICE = (
    "The nightly did not start on time: check that `lagesbild serve` (or the worker of the "
    "work pool) runs and can reach the Prefect server; start a run with `lagesbild run` or "
    "`prefect deployment run`."
)
MISSED_ADVICE = (
    "No nightly run has completed for a day: see `lagesbild status` and the last runs in the "
    "Prefect UI; check that `lagesbild serve` (or the worker) runs."
)


def automations(block_id, missed_after: timedelta) -> list:
    """The automations, unsaved, posting through the Webhook block `block_id`.
    `missed_after`: how long without a completed nightly before the alert."""
    from prefect.automations import Automation
    from prefect.events.schemas.automations import EventTrigger, Posture

    def flow_runs(*flows: str) -> dict:
        return {"prefect.resource.role": "flow", "prefect.resource.name": list(flows)}

    def reactive(event: str, *flows: str) -> EventTrigger:
        return EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=flow_runs(*flows),
            expect={event},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        )

    def action(payload: str):
        from prefect.events.actions import CallWebhook

        return CallWebhook(block_document_id=block_id, payload=payload)

    late_payload = _quoted(
        "lagesbild: the nightly run '{{ flow_run.name }}' is late (scheduled "
        "{{ flow_run.expected_start_time }}). What to do: " + LATE_ADVICE
    )
    missed_payload = _quoted(
        f"lagesbild: no nightly run completed in the last {missed_after}. What to do: "
        + MISSED_ADVICE
    )
    return [
        Automation(
            name=CRASHED_AUTOMATION,
            description="A lagesbild run's process died; its own hook may not have run.",
            trigger=reactive("prefect.flow-run.Crashed", *FLOWS),
            actions=[action(_run_payload("Crashed", _quoted(WHAT_TO_DO["crashed"])))],
        ),
        Automation(
            name=FAILED_AUTOMATION,
            description="A lagesbild run failed (the flow's hook then leaves the alert to this).",
            trigger=reactive("prefect.flow-run.Failed", *FLOWS),
            actions=[action(_run_payload("Failed", _advice_by_stage()))],
        ),
        Automation(
            name="lagesbild: nightly late",
            description="A scheduled nightly has not started on time (Prefect marks it Late).",
            trigger=reactive("prefect.flow-run.Late", "nightly"),
            actions=[
                action(f'{{"text": "{late_payload}", "flow_run": "{{{{ flow_run.name }}}}"}}')
            ],
        ),
        Automation(
            name="lagesbild: nightly missed",
            description=f"No nightly run completed within {missed_after}.",
            trigger=EventTrigger(
                match={"prefect.resource.id": "prefect.flow-run.*"},
                match_related=flow_runs("nightly"),
                expect={"prefect.flow-run.Completed"},
                posture=Posture.Proactive,
                threshold=1,
                within=missed_after,
            ),
            actions=[action(f'{{"text": "{missed_payload}"}}')],
        ),
    ]


def create_automations(
    webhook_url: str,
    missed_after: timedelta = timedelta(hours=26),
) -> list:
    """Save the webhook block and (re)create the automations; returns them as saved."""
    from prefect.blocks.webhook import Webhook
    from prefect.client.orchestration import get_client

    block = Webhook(
        method="POST",
        url=webhook_url,
        headers={"Content-Type": "application/json"},
    )
    wanted = automations(block.save(WEBHOOK_BLOCK, overwrite=True), missed_after)
    with get_client(sync_client=True) as client:
        for automation in wanted:
            for old in client.read_automations_by_name(automation.name):
                client.delete_automation(old.id)
    return [automation.create() for automation in wanted]
