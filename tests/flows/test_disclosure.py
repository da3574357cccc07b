"""Disclosure end to end: the published marts withstand the attacker, and a headerless
housing export's free text (a tenant's name and phone number) is found nowhere."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import duckdb
import polars as pl
import pytest

from flows import disclosure
from flows.nightly import nightly
from lagesbild.settings import Settings
from tests.flows.conftest import pipeline_at

pytestmark = pytest.mark.flow

TENANT = "Karin Lund"
PHONE = "070-123 45 67"


@pytest.fixture(scope="module")
def first_run(pipeline_env):
    state = nightly(return_state=True)
    assert state.is_completed(), state.message
    return Settings().paths


def test_the_served_marts_withstand_the_attacker(first_run):
    """Exact figures: the cells read, withheld and audited (rates included), and the
    narrowest count interval any withheld value keeps."""
    con = duckdb.connect(str(first_run.marts_db), read_only=True)
    try:
        result = disclosure.audit(con)
    finally:
        con.close()
    assert result.passed, disclosure.report_markdown(result)
    narrowest = result.narrowest()
    rates = sum(1 for q in result.quantities if q.kind == "rate")
    figures = (
        result.cells,
        result.withheld,
        len(result.quantities),
        rates,
        narrowest.label,
        narrowest.lower,
        narrowest.upper,
    )
    assert figures == (
        1124,  # published or withheld cells in a relation
        1826,  # withheld: 722 counts and magnitudes, 1,104 rates
        945,  # audited: every withheld count, magnitude and nested band, 204 rates
        204,
        "band mart_problematic_absence_area_term[area, 1299B0010, HT2025, 10.00]"
        ".pupils_at_or_above - pupils_at_or_above@15.00",
        0,
        5,
    ), repr(figures)


def _protected_copy(work_db, shuffle: float | None) -> tuple[list[str], dict[str, list]]:
    """The publish's linked suppression on the run's own dbt marts, their rows read in
    their order or shuffled: the cells it withholds and every row it serves."""
    con = duckdb.connect()
    try:
        con.execute(f"attach '{work_db}' as work (read_only)")
        tables = [
            name
            for (name,) in con.execute(
                "select table_name from information_schema.tables "
                "where table_catalog = 'work' and table_schema = 'marts' order by 1"
            ).fetchall()
        ]
        if shuffle is not None:
            con.execute(f"select setseed({shuffle})")
        order = "" if shuffle is None else "order by random()"
        for name in tables:
            con.execute(f'create table main."{name}" as select * from work.marts."{name}" {order}')
        con.execute("detach work")
        added, _ = disclosure.protect(con)
        served = {name: con.execute(f'from "{name}" order by all').fetchall() for name in tables}
        return [disclosure._label(c) for c in added], served
    finally:
        con.close()


def test_the_linked_suppression_does_not_depend_on_row_order(first_run):
    """The same dbt marts, read in two row orders: the same cells withheld, the same rows."""
    added, served = _protected_copy(first_run.work_db, None)
    shuffled_added, shuffled_served = _protected_copy(first_run.work_db, 0.15)
    assert shuffled_added == added
    assert shuffled_served == served
    counts = (len(added), sum(1 for label in added if label.endswith("total_absence_pct")))
    # 16 more vandalism months withheld; no rate needed more than the counts already gave
    assert counts == (16, 0), (counts, added)


class Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[bytes]] = []

    def do_POST(self):
        Receiver.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def _everything_written(root) -> str:
    """The text of every file under root; parquet files as their rows."""
    parts = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or ".wal" in path.suffix:
            continue
        if path.suffix == ".parquet":
            parts.append(str(pl.read_parquet(path).rows()))
        else:
            parts.append(path.read_bytes().decode("utf-8", errors="replace"))
    return "\n".join(parts)


def test_a_headerless_housing_export_fails_without_echoing_a_cell(first_run):
    received: list[bytes] = []
    Receiver.received = received
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    drop = first_run.drop / "housing" / "ekdalahem"
    row = (
        "100774;F;2025-10-02;2025-10-06;2025-10-06 19:58;Björken 12;02;A;ÖVERF;"
        f"Skadegörelse övrigt;Ring {TENANT} {PHONE};{TENANT} {PHONE};;5 193,40 kr"
    )
    (drop / "arbetsorder_utan_rubrik.csv").write_bytes((row + "\r\n").encode("cp1252"))
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        with pipeline_at(first_run.data, first_run.drop, failure_webhook_url=url):
            state = nightly(return_state=True)
    finally:
        server.shutdown()
    assert state.is_failed()
    assert "arbetsorder_utan_rubrik.csv" in state.message
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    run_logs = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:
        for _ in range(40):  # the run's logs reach the API in batches, a few seconds later
            logs = client.read_logs(run_logs)
            if logs:
                break
            time.sleep(0.5)
    assert logs
    assert len(received) == 1
    places = {
        "state message": str(state.message),
        "webhook": received[0].decode(),
        "prefect logs": "\n".join(log.message for log in logs),
        "data folder": _everything_written(first_run.data),
    }
    for place, text in places.items():
        for value in (TENANT, PHONE, "123 45 67"):
            assert value not in text, f"{value!r} is in the {place}"
    assert "arbetsorder_utan_rubrik.csv" in json.loads(received[0])["reason"]
