"""Where the pupil-level layers (landing, clean, quarantine) live: the local data folder (the
default) or any fsspec filesystem, named by the setting `layers_url` (docs/configuration.md).

The layer modules and the datasets' rules handle a layer's files as paths: a `pathlib.Path`
on the local filesystem, a `upath.UPath` (pathlib's API over fsspec) elsewhere, so a rule
never knows where its files live. The few operations whose meaning differs between a local
filesystem and an object store are here, and only here:

- writing a file: local: a temporary name renamed into place (`files.replace`); object
  store: one upload (`put`), the object appears whole when it completes or not at all;
- `move`: local: `os.replace` (one atomic rename, a folder too); object store: a copy and a
  delete per object (not atomic for a folder: see docs/design.md, "Layers on object storage");
- `remove`, `read_parquet`, `scan_parquet`.

Credentials never come from the URL: an object store's client takes them from its own
mechanisms (s3fs: the AWS environment variables, profiles and instance roles; any fsspec
filesystem: `FSSPEC_<PROTOCOL>_<OPTION>` environment variables or fsspec's config files).
Object storage needs the optional extra `spark` (s3fs, universal-pathlib).
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import polars as pl

from lagesbild.errors import ConfigError


def layers_root(url: str | None, data: Path) -> Path:
    """The folder holding landing/, clean/ and quarantine/: the data folder when `url` is
    unset, a local folder for a path or `file://` URL, else the fsspec location."""
    if not url:
        return data
    parts = urlsplit(url)
    if parts.username or parts.password or "@" in parts.netloc:
        raise ConfigError(
            "layers_url must not hold credentials: give the object store's keys through its "
            "client's own settings (for s3://, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or "
            "a profile), never in the URL"
        )
    if parts.scheme in ("", "file", "local"):
        return Path(parts.path if parts.scheme else url).expanduser().resolve()
    try:
        from upath import UPath
    except ImportError as exc:  # the extra is optional
        raise ConfigError(
            f"layers_url is {parts.scheme}://…, which needs the optional extra `spark` "
            "(uv sync --extra spark); or unset LAGESBILD_LAYERS_URL to keep the layers in "
            "the data folder"
        ) from exc
    try:
        root = UPath(url.rstrip("/"))
        root.fs  # noqa: B018 (the filesystem's package is imported here, not mid-run)
    except (ValueError, ImportError) as exc:  # unknown protocol, its package not installed
        raise ConfigError(f"layers_url {parts.scheme}://… cannot be used: {exc}") from exc
    return root


def is_local(path: Path) -> bool:
    """A path on this machine's filesystem (renames are atomic there)."""
    return not hasattr(path, "fs")  # a UPath carries its fsspec filesystem


def put(path: Path, write: Any) -> None:
    """Write an object-store file through `write(handle)`: one upload, the object appears
    whole when it completes or not at all (local files: `files.write_parquet_atomic`)."""
    with path.open("wb") as handle:
        write(handle)


def move(source: Path, target: Path) -> None:
    """Rename a file or folder. Local: one atomic `os.replace`. Object store: each object
    copied, then the source removed (an object store has no rename)."""
    if is_local(source):
        os.replace(source, target)
        return
    fs = source.fs
    if fs.isfile(source.path):
        fs.mv(source.path, target.path)
        return
    files = fs.find(source.path)  # a folder: its objects (an object store has no folders)
    for name in files:
        fs.copy(name, target.path + name[len(source.path) :])
    fs.rm(files)


def remove(path: Path) -> None:
    """Remove a file or a folder with everything in it; nothing there is fine."""
    if is_local(path):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    elif path.exists():
        path.fs.rm(path.path, recursive=True)


def version(path: Path) -> str:
    """What changes whenever a file is rewritten: size and modification time (ns) locally;
    an object store keeps modification times in seconds only, so its ETag there."""
    if is_local(path):
        stat = path.stat()
        return f"{stat.st_size}:{stat.st_mtime_ns}"
    info = path.fs.info(path.path)
    return f"{info['size']}:{info.get('ETag') or info.get('etag') or info.get('mtime')}"


def read_parquet(path: Path, **options: Any) -> pl.DataFrame:
    if is_local(path):
        return pl.read_parquet(path, **options)
    with path.open("rb") as handle:
        return pl.read_parquet(handle, **options)


def scan_parquet(path: Path) -> pl.LazyFrame:
    """Lazily where the file is local; from an object store the file is fetched whole
    first (polars' own object-store reader would need credentials of its own)."""
    if is_local(path):
        return pl.scan_parquet(path)
    return pl.scan_parquet(io.BytesIO(path.read_bytes()))
