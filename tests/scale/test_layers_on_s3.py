"""The pupil-level layers on an object store (setting layers_url; flows/layers/storage.py):
landing, clean and quarantine in an S3 bucket served by moto on 127.0.0.1 (a real S3 API over
HTTP, reached through s3fs as production would reach its object store), the clean step in
this process and on a Dask LocalCluster. Each run writes the same landing loads, clean
partitions, quarantine, audit and marts as the baseline run on the local data folder."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import fsspec
import polars as pl
import pytest
from distributed import LocalCluster
from moto.server import ThreadedMotoServer

from flows.nightly import nightly
from tests.flows.conftest import pipeline_at
from tests.scale.test_dask_clean import (
    assert_same_audit_and_warehouse,
    parquet_files,
    without_landing_time,
)

pytestmark = pytest.mark.timeout(1800)

BUCKET = "lagesbild"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """An S3 API on loopback; the clients find it through fsspec's and AWS's own environment
    variables (never through the URL), Dask's worker processes too."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    values = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "FSSPEC_S3_ENDPOINT_URL": f"http://{host}:{port}",
    }
    patch = pytest.MonkeyPatch()
    for key, value in values.items():
        patch.setenv(key, value)
    # fsspec read its FSSPEC_* variables when it was imported: this process is told here
    patch.setitem(fsspec.config.conf, "s3", {"endpoint_url": values["FSSPEC_S3_ENDPOINT_URL"]})
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir(BUCKET)
    yield fs
    patch.undo()
    server.stop()


def s3_parquet_files(fs, root: str) -> dict[str, pl.DataFrame]:
    """Like `parquet_files`, of a folder in the bucket."""
    return {
        re.sub(r"load_id=[^-/]*-", "load_id=", key[len(root) + 1 :]): without_landing_time(
            pl.read_parquet(io.BytesIO(fs.cat_file(key)))
        )
        for key in sorted(fs.find(root))
        if key.endswith(".parquet") and not key.rsplit("/", 1)[-1].startswith(".")
    }


@pytest.mark.parametrize("where", ["in-process", "dask"])
def test_layers_on_s3_equal_local(where, baseline, municipality, s3, tmp_path):
    drop = tmp_path / "drop"
    shutil.copytree(municipality["drop"], drop)
    prefix = f"{BUCKET}/{where}"
    settings = {"layers_url": f"s3://{prefix}"}
    if where == "dask":
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        settings["dask_scheduler_address"] = cluster.scheduler_address
    try:
        with pipeline_at(tmp_path / "data", drop, **settings):
            state = nightly(return_state=True)
    finally:
        if where == "dask":
            cluster.close()
    assert state.is_completed(), state.message
    data, expected = tmp_path / "data", baseline["data"]
    # landing, clean and quarantine are not in the local data folder
    kept = sorted(p.name for p in data.iterdir() if not p.name.startswith("."))  # .build.lock
    assert kept == ["audit", "reports", "warehouse"]

    landing = s3.find(f"{prefix}/landing")
    assert len(landing) == 2 * len(list((expected / "landing").rglob("load_id=*")))
    for layer, count in (("clean", 19), ("quarantine", None)):
        got, want = s3_parquet_files(s3, f"{prefix}/{layer}"), parquet_files(expected / layer)
        assert sorted(got) == sorted(want)
        if count is not None:
            assert len(want) == count
        for name, frame in want.items():
            assert got[name].equals(frame), name

    assert_same_audit_and_warehouse(data, expected)


def test_credentials_never_in_the_url(tmp_path):
    from lagesbild.errors import ConfigError
    from lagesbild.settings import Settings

    settings = Settings(data_dir=tmp_path, layers_url="s3://KEY:SECRET@bucket/prefix")
    with pytest.raises(ConfigError, match="must not hold credentials"):
        settings.paths  # noqa: B018
    local = Settings(data_dir=tmp_path, layers_url=f"file://{tmp_path / 'layers'}").paths
    assert local.clean == tmp_path / "layers" / "clean"
    assert isinstance(local.clean, Path)
