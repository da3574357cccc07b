from pathlib import Path

import yaml

from lagesbild.settings import PROJECT_ROOT


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
