"""Reading exports from a drop folder, shared by every file-based source.

Each source declares its export layouts as data (a `layouts.yml`); this module does the part
they have in common: hashing files, reading CSV (encoding, separator, UTF-8 BOM) and XLSX
sheets with every value as text, and checking a header against the layout's columns. Error
messages never quote file content: an export may hold personal data.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import yaml
from pydantic import BaseModel, ValidationError

_BOM = b"\xef\xbb\xbf"
EXCEL_MAX_ROWS = 1_048_576  # a sheet's last row: an export that reaches it was cut off


class LayoutError(ValueError):
    """A layout file, or an export that does not match its layout."""


def read_layouts(path: Path, model: type[BaseModel], kind: str) -> dict:
    """The layouts of a layouts YAML file (name → `model`), each checked; `kind` names the
    source in the error ('attendance', 'housing')."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise LayoutError(f"{kind} layout file {path} does not exist") from exc
    except yaml.YAMLError as exc:  # its own text names "<unicode string>", not the file
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "unreadable"
        raise LayoutError(
            f"{kind} layout file {path} is not valid YAML{where}: {problem}; check the "
            "indentation and quoting there"
        ) from exc
    layouts = {}
    for name, spec in raw.items():
        try:
            layouts[name] = model(name=name, **spec)
        except (ValidationError, TypeError) as exc:
            raise LayoutError(f"{kind} layout '{name}' in {path} is invalid: {exc}") from exc
    return layouts


@dataclass(frozen=True)
class Landed:
    """What landing already holds of a source: the content hashes, and each landed file's
    name, size and modification time. A drop-folder file whose name, size and time all match
    was landed before and is not hashed again (rsync's quick check): the drop folder keeps
    years of exports, gigabytes to read every night otherwise."""

    sha256: frozenset[str] = frozenset()
    files: frozenset[tuple[str, int, int]] = frozenset()  # (name in the drop folder, size, mtime)

    @classmethod
    def of(cls, manifests: Iterable) -> Landed:
        manifests = list(manifests)
        return cls(
            frozenset(m.sha256 for m in manifests),
            frozenset((m.file, m.size, m.mtime_ns) for m in manifests if m.size is not None),
        )


def file_stat(path: Path) -> tuple[int, int]:
    """(size in bytes, modification time in ns): what the quick check compares."""
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def new_files(
    drop_dir: Path, pattern: str, landed: Landed
) -> Iterator[tuple[Path, str, tuple[int, int]]]:
    """(path, sha256, (size, mtime)) of the files matching `pattern` whose content is not
    landed yet, in name order. The stat is taken before hashing, so a file changed meanwhile
    fails the next night's quick check and is hashed again."""
    for path in sorted(drop_dir.glob(pattern)):
        if not path.is_file():
            continue
        stat = file_stat(path)
        if (path.relative_to(drop_dir).as_posix(), *stat) in landed.files:
            continue
        digest = sha256_of(path)
        if digest not in landed.sha256:
            yield path, digest, stat


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_csv_text(
    path: Path, *, encoding: str, separator: str, layout_name: str, system: str
) -> pl.DataFrame:
    """All cells as text ('' for empty); a UTF-8 BOM wins over the declared encoding."""
    with path.open("rb") as handle:
        has_bom = handle.read(3) == _BOM
    encoding = "utf8" if has_bom or encoding == "utf-8" else encoding
    try:
        frame = pl.read_csv(path, separator=separator, encoding=encoding, infer_schema=False)
    except (pl.exceptions.ComputeError, UnicodeDecodeError) as exc:
        raise LayoutError(
            f"{path.name}: cannot be read as csv ({encoding}, separator "
            f"'{separator}') for layout '{layout_name}' ({type(exc).__name__}; the "
            "parser's own message is left out because it quotes file content, i.e. personal "
            f"data). Check the export settings of the {system} or the layout's "
            "encoding/separator."
        ) from None  # the cause's message would quote the file
    return frame.with_columns(pl.all().fill_null(""))


def read_xlsx_text(path: Path, *, sheet: str | None, layout_name: str) -> pl.DataFrame:
    """All cells as text ('' for empty); date cells arrive as 'YYYY-MM-DD HH:MM:SS'."""
    try:
        frame = pl.read_excel(path, sheet_name=sheet, infer_schema_length=0)
    except Exception as exc:  # fastexcel raises its own error types
        raise LayoutError(
            f"{path.name}: cannot read sheet '{sheet}' for layout "
            f"'{layout_name}' ({type(exc).__name__}; details left out: they may quote "
            "personal data)"
        ) from None  # the cause's message would quote the file
    if frame.height + 1 >= EXCEL_MAX_ROWS:  # + the header row
        raise LayoutError(
            f"{path.name}: sheet '{sheet}' fills all {EXCEL_MAX_ROWS:,} rows of an Excel sheet, "
            "so the export was most likely cut off. Export it in parts (e.g. per school unit "
            "or a few weeks at a time); nothing of this file was loaded."
        )
    return frame.with_columns(pl.all().fill_null(""))


def check_header(
    path: Path,
    columns: Iterable[str],
    *,
    mapped: Iterable[str],
    ignore: Iterable[str],
    layout_name: str,
    guard_personal_ids: bool = False,
) -> None:
    """Every mapped column present and no column unaccounted for, or one clear error.

    With `guard_personal_ids`, a header that holds a 6-digit run is taken for a data row
    (a file exported without its header) and reported without echoing it.
    """
    present, mapped, ignore = list(columns), list(mapped), set(ignore)
    if guard_personal_ids and any(re.search(r"\d{6}", c) for c in present if c not in mapped):
        # Never echo these "column names": they are a data row, with a personnummer in it.
        raise LayoutError(
            f"{path.name}: the first row looks like data (it holds a personal id), not a "
            f"header row as layout '{layout_name}' expects. Export the file with its header."
        )
    missing = [c for c in mapped if c not in present]
    unknown = [c for c in present if c not in mapped and c not in ignore]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing columns {missing}")
        if unknown:
            parts.append(f"unknown columns {unknown}")
        raise LayoutError(
            f"{path.name} does not match layout '{layout_name}': {'; '.join(parts)}. "
            "If the system's export changed, update the layout's `columns`/`ignore` in "
            "layouts.yml; if the file belongs to another system, move it to that folder."
        )
