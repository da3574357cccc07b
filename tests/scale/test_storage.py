"""The layers' files on a filesystem without rename (fsspec's memory filesystem, as an object
store behaves): a load appears only with its manifest, what an interrupted run left is swept,
a swap replaces and removes partitions file by file (flows/layers/storage.py)."""

from __future__ import annotations

import uuid

import polars as pl
import pytest
from upath import UPath

from flows.layers.files import Staging, sweep_leftovers
from flows.layers.landing import DATA_FILE, MANIFEST, land, landed_loads, remove_load
from flows.layers.manifest import Manifest
from lagesbild.settings import Paths


@pytest.fixture
def paths(tmp_path):
    layers = UPath(f"memory://layers-{uuid.uuid4().hex}")
    yield Paths(tmp_path, tmp_path / "drop", layers)
    if layers.exists():
        layers.fs.rm(layers.path, recursive=True)


def manifest(load_id: str) -> Manifest:
    return Manifest(
        source="attendance_export",
        dataset="skola24_csv",
        load_id=load_id,
        file=f"attendance/{load_id}.csv",
        partition_kind="month",
        partitions=["2025-09"],
        sha256="0" * 64,
        rows=2,
        extracted_at="2025-10-01T04:30:00+00:00",
        columns=["a"],
    )


def test_a_load_on_an_object_store_is_landed_read_and_removed(paths):
    rows = pl.DataFrame({"a": ["1", "2"]})
    load = land(paths.landing, manifest("20251001T043000000000-aaaa"), rows)
    assert not isinstance(load.folder, type(paths.data))
    folder = (
        "landing/attendance_export/skola24_csv/period=2025-09/load_id=20251001T043000000000-aaaa"
    )
    assert str(load.folder) == f"{paths.layers}/{folder}"
    assert sorted(p.name for p in load.folder.iterdir()) == [MANIFEST, DATA_FILE]
    [found] = landed_loads(paths.landing, "attendance_export")
    assert found.manifest.data_size == load.manifest.data_size
    found.verify()  # size and sha256 as recorded
    assert found.read().equals(rows)
    assert found.scan().collect().equals(rows)
    remove_load(found, paths.landing)
    assert landed_loads(paths.landing, "attendance_export") == []
    assert not load.folder.exists()


def test_what_an_interrupted_run_left_on_an_object_store_is_swept(paths):
    kept = land(paths.landing, manifest("20251001T043000000000-aaaa"), pl.DataFrame({"a": ["1"]}))
    # a landing cut short after its rows, before its manifest: never read as landed
    cut = paths.landing / "attendance_export/skola24_csv/period=2025-10/load_id=b"
    (cut / DATA_FILE).write_bytes(b"PAR1")
    (paths.clean / ".attendance-staging-run1/period=2025-10/part-0.parquet").write_bytes(b"x")
    (paths.quarantine / "attendance/period=2025-10/.quarantine.parquet.0f.tmp").write_bytes(b"x")
    assert [load.load_id for load in landed_loads(paths.landing, "attendance_export")] == [
        kept.load_id
    ]
    assert sorted(sweep_leftovers(paths)) == [
        "clean/.attendance-staging-run1",
        "landing/attendance_export/skola24_csv/period=2025-10/load_id=b",
        "quarantine/attendance/period=2025-10/.quarantine.parquet.0f.tmp",
    ]
    assert paths.layers.fs.find(paths.layers.path) == [
        f"{(kept.folder / name).path}" for name in (MANIFEST, DATA_FILE)
    ]


def served(paths: Paths) -> dict[str, list[int]]:
    root = paths.clean / "attendance"
    return {
        str(p.relative_to(root)): pl.read_parquet(p.read_bytes())["n"].to_list()
        for p in sorted(root.rglob("*.parquet"))
    }


def test_a_swap_on_an_object_store_replaces_and_removes_partitions(paths):
    first = Staging(paths.clean, "attendance", "attendance", "run1")
    for period, n in (("2025-08", 8), ("2025-09", 9)):
        first.stage(f"period={period}/part-0.parquet", pl.DataFrame({"n": [n]}))
    first.swap(remove_others=False)
    first.discard()
    assert served(paths) == {
        "period=2025-08/part-0.parquet": [8],
        "period=2025-09/part-0.parquet": [9],
    }

    gate_failed = Staging(paths.clean, "attendance", "attendance", "run2")
    gate_failed.stage("period=2025-09/part-0.parquet", pl.DataFrame({"n": [0]}))
    gate_failed.discard()  # no swap after a failed gate: what is served stays
    assert served(paths)["period=2025-09/part-0.parquet"] == [9]

    rebuild = Staging(paths.clean, "attendance", "attendance", "run3")
    rebuild.stage("period=2025-09/part-0.parquet", pl.DataFrame({"n": [90]}))
    rebuild.stage("period=2025-10/part-0.parquet", pl.DataFrame({"n": [10]}))
    rebuild.swap(remove_others=True)  # a dataset rebuilt whole: 2025-08 is gone
    rebuild.discard()
    assert served(paths) == {
        "period=2025-09/part-0.parquet": [90],
        "period=2025-10/part-0.parquet": [10],
    }
    assert sweep_leftovers(paths) == []
