"""Key identity: a load records its key's fingerprint; another key stops before landing."""

from __future__ import annotations

import polars as pl
import pytest

from flows.layers import keys
from flows.layers.landing import land
from flows.layers.manifest import Manifest

KEY, OTHER = b"the-key-the-data-was-landed-with", b"a-new-key"


def _land(root, key_fingerprint: str | None, name: str) -> None:
    rows = pl.DataFrame({"pupil_key": ["a" * 64], "date": ["2025-09-01"]})
    manifest = Manifest(
        source="attendance_export",
        dataset="skola24_csv",
        load_id=f"20250901T000000-{name}",
        file=f"attendance/skola24/{name}.csv",
        partition_kind="month",
        partitions=["2025-09"],
        sha256=name * 8,
        rows=1,
        extracted_at="2025-09-01T00:00:00+00:00",
        columns=rows.columns,
        pseudonymised={"Personnummer": "pupil_key"},
        key_fingerprint=key_fingerprint,
    )
    land(root, manifest, rows)


def test_the_fingerprint_is_stable_short_and_not_the_key():
    assert keys.fingerprint(KEY) == keys.fingerprint(KEY) != keys.fingerprint(OTHER)
    assert len(keys.fingerprint(KEY)) == 16
    assert KEY.hex()[:16] != keys.fingerprint(KEY)


def test_a_run_with_another_key_stops_with_a_clear_message(tmp_path):
    keys.check_landed_key(tmp_path, OTHER)  # nothing landed yet: any key
    _land(tmp_path, None, "old")  # a load from before fingerprints: no opinion
    _land(tmp_path, keys.fingerprint(KEY), "sept")
    keys.check_landed_key(tmp_path, KEY)
    with pytest.raises(keys.KeyMismatch) as raised:
        keys.check_landed_key(tmp_path, OTHER)
    message = str(raised.value)
    assert f"fingerprint {keys.fingerprint(OTHER)}" in message
    assert f"(fingerprint {keys.fingerprint(KEY)}, e.g. load attendance/skola24/sept.csv)" in (
        message
    )
    assert "rebuilding from the source exports" in message
    assert KEY.decode() not in message and OTHER.decode() not in message
