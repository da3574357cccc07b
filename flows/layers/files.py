"""Atomic files: every write goes to a temporary name and is renamed into place (`replace`),
so a crash never leaves half a file behind and a reader sees the old file or the new one.
What a killed run leaves behind (temporary files, staging folders, a half-copied publish) is
removed by the next run before it writes anything (`sweep_leftovers`).

The pupil-level layers may be on an object store (setting `layers_url`), which has no
rename: there a file is written by one upload and a "rename" is a copy and a delete
(flows/layers/storage.py; what that keeps and what not: docs/design.md, "Layers on object
storage").
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from flows.layers import storage

if TYPE_CHECKING:
    from lagesbild.settings import Paths

# Pupil-level layers (landing, clean, quarantine, work.duckdb, validation results, run
# summaries) are the service account's only: files 0600, folders 0700. The served marts
# are made readable for BI users when they are published (`world_readable`).
PRIVATE_UMASK = 0o077


def private_files() -> int:
    """From now on, this process (and dbt, its child) creates owner-only files; returns the
    previous umask."""
    return os.umask(PRIVATE_UMASK)


def world_readable(path: Path) -> None:
    """A published file (0644) or folder with its files (0755 / 0644)."""
    if path.is_dir():
        path.chmod(0o755)
        for child in path.rglob("*"):
            child.chmod(0o755 if child.is_dir() else 0o644)
    else:
        path.chmod(0o644)


log = logging.getLogger(__name__)

# Test hook: `<point>` or `<point>:<n>` kills this process (SIGKILL, as the OOM killer
# would) just before the n-th (default: first) rename at that point. Never set in production.
KILL_BEFORE = "LAGESBILD_TEST_KILL_BEFORE"
_renames: dict[str, int] = {}


def replace(source: Path, target: Path, point: str) -> None:
    """`os.replace`, the one step that makes a write visible; `point` names it for the
    kill tests (landing, clean, quarantine, audit-loads, audit-runs, publish-marts, ...).
    On an object store: a copy and a delete (`storage.move`)."""
    wanted = os.environ.get(KILL_BEFORE)
    if wanted:
        name, _, nth = wanted.partition(":")
        if name == point:
            _renames[point] = _renames.get(point, 0) + 1
            if _renames[point] == int(nth or 1):
                os.kill(os.getpid(), signal.SIGKILL)
    storage.move(source, target)


def write_parquet_atomic(frame: pl.DataFrame, path: Path, point: str | None = None) -> None:
    if not storage.is_local(path):
        storage.put(path, lambda handle: frame.write_parquet(handle, statistics=True))
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    frame.write_parquet(tmp, statistics=True)
    replace(tmp, path, point or path.name)


def write_text_atomic(text: str, path: Path, point: str | None = None) -> None:
    if not storage.is_local(path):
        storage.put(path, lambda handle: handle.write(text.encode("utf-8")))
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text, encoding="utf-8")
    replace(tmp, path, point or path.name)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class CorruptFile(RuntimeError):
    """A file the pipeline reads is damaged (truncated, overwritten); the message names it
    and how to repair it."""


def check_parquet(path: Path, size: int | None = None, repair: str = "") -> None:
    """The cheap check of a file about to be read: its size (when recorded) and parquet's
    closing magic bytes; a truncated file fails one or the other."""
    fix = f" {repair}" if repair else ""
    try:
        actual = path.stat().st_size
        with path.open("rb") as handle:
            if actual >= 4:
                handle.seek(-4, os.SEEK_END)
            tail = handle.read(4)
    except OSError as exc:
        raise CorruptFile(f"{path} cannot be read ({exc.strerror}).{fix}") from exc
    if size is not None and actual != size:
        raise CorruptFile(
            f"{path} is {actual:,} bytes, but {size:,} were written: the file is damaged.{fix}"
        )
    if tail != b"PAR1":
        raise CorruptFile(f"{path} is not a complete parquet file (truncated?).{fix}")


def read_parquet_checked(path: Path, repair: str, **options) -> pl.DataFrame:
    """`pl.read_parquet`, but a damaged file is named, with its repair, instead of failing
    with the parquet reader's words alone."""
    check_parquet(path, repair=repair)
    try:
        return storage.read_parquet(path, **options)
    except Exception as exc:  # polars raises ComputeError, OSError, ... for a bad file
        raise CorruptFile(f"{path} cannot be read ({exc}). {repair}") from exc


class Staging:
    """The files of one dataset's new clean partitions, staged beside the served ones.

    `stage` writes a partition file under a staging folder; `swap` moves each one in with a
    single rename, so no reader sees an intermediate state: a new partition folder is renamed
    in whole (never created empty and filled), an existing one gets its file replaced. For a
    dataset rebuilt whole, `swap` removes the served partitions the rebuild no longer has,
    by renaming them into the staging folder first. A staging folder left by a crashed run
    is removed when the next one starts.
    """

    def __init__(self, clean_dir: Path, folder: str, name: str, run_id: str):
        self.root = clean_dir / folder
        for leftover in clean_dir.glob(f".{name}-staging-*"):
            storage.remove(leftover)
        self.folder = clean_dir / f".{name}-staging-{run_id}"
        self.staged: list[str] = []  # paths relative to the dataset's clean folder
        self.removed: list[Path] = []  # served paths the swap takes out (a period emptied)

    def remove_period(self, period: str) -> None:
        """Take a period out at the swap: its partition folder and any `period=<p>.parquet`
        summary beside it (e.g. when a retraction leaves it without any load)."""
        if self.root.exists():
            names = {f"period={period}", f"period={period}.parquet"}
            self.removed += sorted(p for p in self.root.rglob("period=*") if p.name in names)

    def stage(self, relative: str, frame: pl.DataFrame) -> None:
        write_parquet_atomic(frame, self.folder / relative, point="stage")
        self.staged.append(relative)

    def swap(self, remove_others: bool) -> None:
        remote = not storage.is_local(self.root)
        if self.staged and not self.root.exists() and not remote:  # the first build: one
            replace(self.folder, self.root, "clean")  # rename of it all
            return
        moved: set[Path] = set()
        for relative in [] if remote else self.staged:
            parts = Path(relative).parts
            for depth in range(1, len(parts) + 1):  # the outermost part not served yet
                part = Path(*parts[:depth])
                if part in moved:
                    break
                if depth == len(parts) or not (self.root / part).exists():
                    replace(self.folder / part, self.root / part, "clean")
                    moved.add(part)
                    break
        for relative in self.staged if remote else []:  # no folders: each file copied in
            replace(self.folder / relative, self.root / relative, "clean")
        for number, gone in enumerate(self.removed):
            if gone.exists():
                self.folder.mkdir(parents=True, exist_ok=True)
                replace(gone, self.folder / f"removed-{number}-{gone.name}", "clean-remove")
        if remove_others:  # e.g. a year that no longer holds any order
            keep = {Path(r).parts[0] for r in self.staged}
            for gone in sorted(self.root.glob("period=*")):
                if gone.name not in keep:
                    self.folder.mkdir(parents=True, exist_ok=True)
                    replace(gone, self.folder / f"removed-{gone.name}", "clean-remove")

    def discard(self) -> None:
        storage.remove(self.folder)


def _empty_folders(root: Path) -> list[Path]:
    """Empty folders under root, deepest first (removing one may empty its parent)."""
    found = []
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(folder.iterdir()):
            found.append(folder)
            folder.rmdir()
    return found


def sweep_leftovers(paths: Paths) -> list[str]:
    """Remove what interrupted runs left: temporary files and landing folders, staging
    folders, a half-copied publish, stray links, empty partition folders. Call only while
    holding the build lock (another run's temporary files are alive while it runs).
    Returns the removed paths, relative to the data folder (or `layers_url`), and logs
    them."""
    found: list[Path] = []
    for layer in (paths.landing, paths.clean, paths.quarantine, paths.audit, paths.reports):
        if layer.exists():
            found += layer.rglob(".*.tmp")  # temporary files and `.load_id=…tmp` folders
    if not storage.is_local(paths.landing) and paths.landing.exists():
        # an object store's load is written in place, its manifest last: one without a
        # manifest is a load whose landing was cut short (never read: not landed)
        loads = paths.landing.glob("*/*/period=*/load_id=*")
        found += [load for load in loads if not (load / "_manifest.json").exists()]
    if paths.reports.exists():
        found += paths.reports.rglob(".index.*.html")  # the reports' temporary pages
    if paths.clean.exists():
        found += paths.clean.glob(".*-staging-*")
    warehouse = paths.warehouse
    if warehouse.exists():
        found += warehouse.glob(".marts.*")  # a half-copied marts file, a link never swapped
        found += warehouse.glob(f".{paths.work_db.stem}.fingerprint.*")
        link = paths.marts_parquet
        served = link.resolve() if link.is_symlink() else None
        since = served.stat().st_mtime if served is not None and served.exists() else None
        for folder in warehouse.glob(f"{link.name}-*"):
            # newer than the served folder: a publish that never swapped (older ones are
            # kept for readers and removed by the next publish)
            if folder.resolve() != served and (since is None or folder.stat().st_mtime > since):
                found.append(folder)
    removed = []
    for path in sorted(set(found), key=str):
        if path.exists() or (storage.is_local(path) and path.is_symlink()):
            storage.remove(path)
            removed.append(path)
    for layer in (paths.landing, paths.clean, paths.quarantine):
        if storage.is_local(layer) and layer.exists():  # an object store has no folders
            removed += _empty_folders(layer)
    names = [paths.relative(p) for p in removed]
    for name in names:
        log.warning("removed %s, left by an interrupted run", name)
    return names
