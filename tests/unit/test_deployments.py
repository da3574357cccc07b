from pathlib import Path

import pytest
import yaml

from lagesbild.settings import PROJECT_ROOT, Settings


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


def test_served_and_yaml_deployments_carry_the_same_schedule_and_parameters():
    from flows.deployments import build_deployments

    served = {d.name: d for d in build_deployments(Settings())}
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


@pytest.mark.parametrize("cron", ["30 2 * * *", "0 1-3 * * *", "0 */2 * * *", "15 5,2 * * 1-5"])
def test_a_nightly_schedule_in_the_dst_hour_is_refused(monkeypatch, cron):
    from flows.deployments import build_deployments, cron_hours

    monkeypatch.setenv("LAGESBILD_NIGHTLY_CRON", cron)
    with pytest.raises(ValueError, match="skipped in March"):
        build_deployments(Settings())
    assert cron_hours("30 4 * * *") == {4} and cron_hours("0 1-9/4 * * *") == {1, 5, 9}
