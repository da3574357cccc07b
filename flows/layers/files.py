"""Atomic files: every layer but landing is written to a temporary name and renamed into place,
so a crash never leaves half a file behind and a reader sees the old file or the new one.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import polars as pl

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


def write_parquet_atomic(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    frame.write_parquet(tmp, statistics=True)
    os.replace(tmp, path)


def write_text_atomic(text: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class Staging:
    """The files of one dataset's new clean partitions, staged beside the served ones.

    `stage` writes a partition file under a staging folder; `swap` moves each file over the
    served one (one atomic rename per file, so a partition is never missing) and, for a
    dataset rebuilt whole, removes the served partitions the rebuild no longer has. A staging
    folder left by a crashed run is removed when the next one starts.
    """

    def __init__(self, clean_dir: Path, folder: str, name: str, run_id: str):
        self.root = clean_dir / folder
        for leftover in clean_dir.glob(f".{name}-staging-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        self.folder = clean_dir / f".{name}-staging-{run_id}"
        self.staged: list[str] = []  # paths relative to the dataset's clean folder

    def stage(self, relative: str, frame: pl.DataFrame) -> None:
        write_parquet_atomic(frame, self.folder / relative)
        self.staged.append(relative)

    def swap(self, remove_others: bool) -> None:
        for relative in self.staged:
            target = self.root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.folder / relative, target)
        if remove_others:  # e.g. a year that no longer holds any order
            keep = {(self.root / r).parent for r in self.staged}
            for gone in self.root.glob("period=*"):
                if gone not in keep:
                    shutil.rmtree(gone)

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
