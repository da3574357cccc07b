import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from lagesbild.settings import PROJECT_ROOT, Settings, today


def test_nightly_deployment_is_scheduled_outside_the_dst_hour():
    spec = yaml.safe_load((PROJECT_ROOT / "deployments" / "prefect.yaml").read_text())
    nightly = next(d for d in spec["deployments"] if d["name"] == "nightly")
    path, function = nightly["entrypoint"].split(":")
    assert (PROJECT_ROOT / path).exists()
    assert f"def {function}(" in Path(PROJECT_ROOT / path).read_text()
    (schedule,) = nightly["schedules"]
    assert schedule["timezone"] == "Europe/Stockholm"
    _minute, hour = schedule["cron"].split()[:2]
    assert hour.isdigit() and int(hour) != 2
    assert nightly["concurrency_limit"] == 1
    assert {d["name"] for d in spec["deployments"]} == {"nightly", "backfill"}  # not *-served


def test_the_run_date_is_the_date_in_sweden_whatever_the_server_zone():
    assert today(datetime(2026, 11, 30, 22, 59, tzinfo=UTC)) == date(2026, 11, 30)  # 23:59 CET
    assert today(datetime(2026, 11, 30, 23, 0, tzinfo=UTC)) == date(2026, 12, 1)
    assert today(datetime(2026, 6, 30, 21, 59, tzinfo=UTC)) == date(2026, 6, 30)  # 23:59 CEST
    assert today(datetime(2026, 6, 30, 22, 0, tzinfo=UTC)) == date(2026, 7, 1)


def test_served_and_yaml_deployments_carry_the_same_schedule_and_parameters():
    from flows.deployments import SERVED_SUFFIX, build_deployments

    served = {d.name.removesuffix(SERVED_SUFFIX): d for d in build_deployments(Settings())}
    assert {d.name for d in served.values()} == {"nightly-served", "backfill-served"}
    spec = yaml.safe_load((PROJECT_ROOT / "deployments/prefect.yaml").read_text())
    declared = {d["name"]: d for d in spec["deployments"]}
    assert served.keys() == declared.keys() == {"nightly", "backfill"}
    (schedule,) = served["nightly"].schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == (
        "30 4 * * *",
        "Europe/Stockholm",
    )
    assert declared["nightly"]["schedules"][0]["cron"] == schedule.schedule.cron
    assert (
        served["backfill"].parameters
        == declared["backfill"]["parameters"]
        == {"source": "attendance_export"}
    )
    assert not served["backfill"].schedules
    for name, deployment in served.items():
        assert deployment.entrypoint == declared[name]["entrypoint"]
        assert deployment.concurrency_limit == declared[name]["concurrency_limit"] == 1
        assert deployment.description == declared[name]["description"]
        assert set(declared[name]["tags"]) <= set(deployment.tags)


@pytest.mark.parametrize("cron", ["30 2 * * *", "0 1-3 * * *", "0 */2 * * *", "15 5,2 * * 1-5"])
def test_a_nightly_schedule_in_the_dst_hour_is_refused(monkeypatch, cron):
    from flows.deployments import build_deployments, cron_hours

    monkeypatch.setenv("LAGESBILD_NIGHTLY_CRON", cron)
    with pytest.raises(ValueError, match="skipped in March"):
        build_deployments(Settings())
    assert cron_hours("30 4 * * *") == {4} and cron_hours("0 1-9/4 * * *") == {1, 5, 9}


def test_a_yaml_error_in_a_layouts_file_names_the_file(tmp_path):
    from pydantic import BaseModel

    from connectors.drop_files import LayoutError, read_layouts

    broken = tmp_path / "layouts.yml"
    broken.write_text("skola24_csv:\n  delimiter: ';'\n   encoding: cp1252\n")
    with pytest.raises(LayoutError) as error:
        read_layouts(broken, BaseModel, "attendance")
    message = str(error.value)
    assert message == (
        f"attendance layouts file {broken}: line 3, column 4: not valid YAML (expected "
        "<block end>, but found '<block mapping start>'). Check the indentation and quoting "
        "there (a value with ':' or '#' needs quotes)."
    )


def test_backfill_parameters_are_checked_before_a_run_is_created():
    """Prefect validates a deployment run's parameters against this schema when the run is
    created (enforce_parameter_schema; without checking formats, hence the date pattern): an
    unknown source or a date like 2025-13-01 is refused there, with the parameter named."""
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools import validate

    from flows.nightly import backfill

    schema = parameter_schema(backfill).model_dump()
    assert schema["definitions"]["BackfillSource"]["enum"] == [
        "attendance_export",
        "ss12000",
        "housing_export",
    ]
    assert all(p["description"] for p in schema["properties"].values())
    good = {"source": "ss12000", "date_from": "2025-09-01", "date_to": "2025-09-30"}
    validate(good, schema, raise_on_error=True)  # what the server runs: no error
    for bad, refusal in (
        (
            {**good, "date_from": "2025-13-01"},
            "for field 'date_from'. Failure reason: '2025-13-01'",
        ),
        ({**good, "date_to": "2025-09-32"}, "for field 'date_to'. Failure reason: '2025-09-32'"),
        ({**good, "source": "attendence_export"}, "for field 'source'. Failure reason: 'atten"),
    ):
        with pytest.raises(Exception, match=refusal):
            validate(bad, schema, raise_on_error=True)


def test_flows_and_the_dbt_task_have_timeouts():
    from flows.nightly import backfill as backfill_flow
    from flows.nightly import build_warehouse, nightly

    assert nightly.timeout_seconds == 4 * 3600 and backfill_flow.timeout_seconds == 8 * 3600
    assert build_warehouse.timeout_seconds == 2 * 3600


def test_a_failure_alert_names_run_stage_and_what_to_do_but_no_cell_value():
    from prefect.states import Failed

    from flows.layers.gate import GateFailed
    from flows.reports.notify import WHAT_TO_DO, _reason, failure_message

    # An error of a library may quote a cell: only its type goes out.
    foreign = _reason(Failed(data=ValueError("could not parse '19121212-1212' as a date")))
    assert foreign == ("ValueError (the details are in the run's log)", "ValueError")
    own = _reason(Failed(data=GateFailed("critical expectations failed: period=2025-09: x")))
    assert own[0] == "GateFailed: critical expectations failed: period=2025-09: x"

    message = failure_message(
        "nightly", "nightly-2025-10-01", "id-1", "Failed", "clean", own[0], "/data/reports/runs"
    )
    assert message["text"] == (
        "lagesbild: nightly run 'nightly-2025-10-01' failed in stage clean: "
        f"{own[0]}. What to do: {WHAT_TO_DO['clean']}"
    )
    assert message["published_marts"] == "unchanged"
    crashed = failure_message("nightly", "n", "i", "Crashed", "dbt", "-", "r", advice="crashed")
    assert crashed["stage"] == "dbt" and crashed["what_to_do"] == WHAT_TO_DO["crashed"]


def test_automation_payloads_render_to_json_naming_run_and_stage():
    """The templates the Prefect server renders (Jinja, sandboxed) give valid JSON."""
    from uuid import uuid4

    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from flows.reports.automations import automations
    from flows.reports.notify import WHAT_TO_DO

    made = {a.name: a for a in automations(uuid4(), timedelta(hours=26))}
    assert sorted(made) == [
        "lagesbild: nightly late",
        "lagesbild: nightly missed",
        "lagesbild: run crashed",
        "lagesbild: run failed",
    ]
    context = {
        "flow": {"name": "nightly"},
        "flow_run": {
            "name": "nightly-2025-10-01",
            "id": "abc",
            "tags": ["lagesbild", "stage:dbt"],
            "expected_start_time": "2025-10-01T04:30:00+02:00",
        },
    }
    env = ImmutableSandboxedEnvironment()

    def render(name: str) -> dict:
        (action,) = made[name].actions
        return json.loads(env.from_string(action.payload).render(**context))

    failed = render("lagesbild: run failed")
    assert failed["text"] == (
        "lagesbild: nightly run 'nightly-2025-10-01' failed in stage dbt. "
        f"What to do: {WHAT_TO_DO['dbt']}"
    )
    assert render("lagesbild: run crashed")["what_to_do"] == WHAT_TO_DO["crashed"]
    context["flow_run"]["tags"] = ["lagesbild"]
    assert render("lagesbild: run failed")["stage"] == "start"
    assert render("lagesbild: nightly late")["text"].startswith(
        "lagesbild: the nightly run 'nightly-2025-10-01' is late (scheduled 2025-10-01T04:30"
    )
    assert render("lagesbild: nightly missed")["text"].startswith(
        "lagesbild: no nightly run completed in the last 1 day, 2:00:00."
    )
