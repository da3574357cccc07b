"""Disclosure end to end: the published marts withstand the attacker, and a headerless
housing export's free text (a tenant's name and phone number) is found nowhere."""

from __future__ import annotations

import json
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import duckdb
import polars as pl
import pytest

from flows import disclosure
from flows.layers.landing import land, landed_loads, remove_load
from flows.nightly import nightly
from lagesbild.settings import Settings
from tests.flows.conftest import pipeline_at

pytestmark = pytest.mark.flow

TENANT = "Karin Lund"
PERSONNUMMER = "6408233234"
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


def test_pupil_level_files_are_the_service_account_s_only(first_run):
    """After a run: landing, clean, quarantine, validation results, run summaries, the audit
    and work.duckdb are 0600 files in 0700 folders; the served marts are world-readable."""
    paths = first_run
    private = [paths.landing, paths.clean, paths.quarantine, paths.validation, paths.runs]
    modes: dict[str, set[int]] = {"file": set(), "folder": set()}
    files = 0
    for root in [*private, paths.audit]:
        for path in [root, *root.rglob("*")]:
            kind = "folder" if path.is_dir() else "file"
            modes[kind].add(stat.S_IMODE(path.stat().st_mode))
            files += kind == "file"
    assert files > 100
    assert modes == {"file": {0o600}, "folder": {0o700}}
    assert stat.S_IMODE(paths.work_db.stat().st_mode) == 0o600
    served = [paths.marts_db, *paths.marts_parquet.resolve().glob("*.parquet")]
    assert {stat.S_IMODE(p.stat().st_mode) for p in served} == {0o644}


def test_a_run_with_another_key_stops_before_landing(first_run):
    """The data was landed with one key; a run with another (a new pseudonym space) stops
    at once, naming both fingerprints, and lands nothing, not even a new export."""
    export = sorted((first_run.drop / "attendance" / "skola24").glob("*.csv"))[-1]
    new = export.with_name("franvaro_ny.csv")  # a new file: one row fewer
    new.write_bytes(b"".join(export.read_bytes().splitlines(keepends=True)[:-1]))
    before = sorted(first_run.landing.rglob("*"))
    try:
        with pipeline_at(first_run.data, first_run.drop, pseudonym_key="another-key-0123456789"):
            state = nightly(return_state=True)
    finally:
        new.unlink()
    assert state.is_failed()
    assert "fingerprint" in state.message and "rebuilding from the source exports" in (
        state.message
    )
    assert sorted(first_run.landing.rglob("*")) == before


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


def _failing_run(paths) -> tuple[object, str, dict[str, str]]:
    """A nightly that fails, with a failure webhook: its state, the webhook's body and the
    text of every place a value could reach (state message, webhook, Prefect logs)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    received: list[bytes] = []
    Receiver.received = received
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        with pipeline_at(paths.data, paths.drop, failure_webhook_url=url):
            state = nightly(return_state=True)
    finally:
        server.shutdown()
    assert state.is_failed()
    run_logs = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:
        for _ in range(40):  # the run's logs reach the API in batches, a few seconds later
            logs = client.read_logs(run_logs)
            if logs:
                break
            time.sleep(0.5)
    assert logs
    assert len(received) == 1
    body = received[0].decode()
    return (
        state,
        body,
        {
            "state message": str(state.message),
            "webhook": body,
            "prefect logs": "\n".join(log.message for log in logs),
        },
    )


def test_a_personnummer_caught_by_the_gate_is_echoed_nowhere(first_run):
    """A landed load whose pupil_key holds a raw personnummer (what a connector bug would
    land; planted here, 3 rows copied from a landed export) fails the attendance gate; the
    value reaches neither the state message, the webhook, the Prefect logs nor any file the
    run wrote (the planted load taken out again)."""
    source = landed_loads(first_run.landing, "attendance_export")[0]
    rows = source.read().head(3).with_columns(pupil_key=pl.lit(PERSONNUMMER))
    manifest = source.manifest.model_copy(
        update={"load_id": f"{source.load_id}-planted", "sha256": "0" * 64,
                "file": "attendance/planted.csv", "rows": rows.height}
    )  # fmt: skip
    planted = land(first_run.landing, manifest, rows)
    try:
        _, body, places = _failing_run(first_run)
    finally:
        remove_load(planted, first_run.landing)
    assert "critical expectations failed" in json.loads(body)["reason"]
    places["data folder"] = _everything_written(first_run.data)
    for place, text in places.items():
        assert PERSONNUMMER not in text, f"the personnummer is in the {place}"
    # what was caught, by expectation and column
    assert "expect_column_values_to_match_regex on pupil_key" in places["webhook"]


def test_a_headerless_housing_export_fails_without_echoing_a_cell(first_run):
    drop = first_run.drop / "housing" / "ekdalahem"
    row = (
        "100774;F;2025-10-02;2025-10-06;2025-10-06 19:58;Björken 12;02;A;ÖVERF;"
        f"Skadegörelse övrigt;Ring {TENANT} {PHONE};{TENANT} {PHONE};;5 193,40 kr"
    )
    (drop / "arbetsorder_utan_rubrik.csv").write_bytes((row + "\r\n").encode("cp1252"))
    state, body, places = _failing_run(first_run)
    assert "arbetsorder_utan_rubrik.csv" in state.message
    places["data folder"] = _everything_written(first_run.data)
    for place, text in places.items():
        for value in (TENANT, PHONE, "123 45 67"):
            assert value not in text, f"{value!r} is in the {place}"
    assert "arbetsorder_utan_rubrik.csv" in json.loads(body)["reason"]
