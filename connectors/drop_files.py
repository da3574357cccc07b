"""Reading exports from a drop folder, shared by every file-based source.

Each source declares its export layouts as data (a `layouts.yml`); this module does the part
they have in common: finding new files (and leaving half-uploaded ones for the next night),
hashing them, decoding CSV (declared encoding, BOMs, a wrong encoding named), reading XLSX
sheets (by name, index or pattern, several per workbook, both Excel date systems), finding the
header row by its column names (title rows above, blank rows, a totals row or footer below are
skipped), and checking the header against the layout's columns. Every value stays text.

Error messages never quote file content (an export may hold personal data); they name the
file, the layout, the row or column, and the change that fixes it.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import io
import math
import re
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

import polars as pl
import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, field_validator

_BOM_UTF8 = b"\xef\xbb\xbf"
_BOM_UTF16 = (b"\xff\xfe", b"\xfe\xff")
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # encrypted xlsx, or an old .xls
_ENCRYPTED = "EncryptedPackage".encode("utf-16-le")
EXCEL_MAX_ROWS = 1_048_576  # a sheet's last row: an export that reaches it was cut off
HEADER_SCAN_ROWS = 30  # the header row is looked for in this many rows at the top
ROW_NUMBER = "_source_row"  # 1 = the first row below the header
# A trailing row whose first filled cell starts like this is a totals row, not data.
_NON_BLANK = re.compile(r"\S")
TOTALS = re.compile(r"(?i)^(summa|totalt?|sum|antal|s:a)\b")


class LayoutError(ValueError):
    """A layout file, or an export that does not match its layout (a user error)."""


# -- layouts -----------------------------------------------------------------------------------


class FileLayout(BaseModel, extra="forbid"):
    """What every file layout has: where its files are, how to read them, the column map."""

    name: str = ""
    description: str = ""
    files: str
    format: Literal["csv", "xlsx"]
    encoding: Literal["cp1252", "utf-8", "latin-1", "utf-16"] = "utf-8"
    separator: str = Field(";", min_length=1, max_length=1)
    sheet: str | int | list[str | int] | None = Field(
        None, description="name, 0-based index or pattern ('Vecka *'), or a list of them"
    )
    header_row: int | None = Field(
        None, ge=1, description="pin the header row (1 = the file's first row); default: found"
    )
    columns: dict[str, str]
    ignore: list[str] = []
    defaults: dict[str, str | int | float] = Field(
        {}, description="field → value for an empty cell, or for every row if no column maps it"
    )

    _source_file: Path | None = PrivateAttr(None)  # the layouts file it was read from

    @property
    def source_file(self) -> Path | None:
        return self._source_file

    @property
    def reference(self) -> str:
        """How a message names the layout: its name and the layouts file it is in."""
        where = f" in {self._source_file}" if self._source_file else ""
        return f"layout '{self.name}'{where}"

    @field_validator("defaults")
    @classmethod
    def _as_text(cls, value: dict) -> dict:
        return {k: str(v) for k, v in value.items()}

    def source_column(self, field: str) -> str | None:
        return next((src for src, target in self.columns.items() if target == field), None)

    @property
    def sheets(self) -> list[str | int]:
        if self.sheet is None:
            return [0]
        return list(self.sheet) if isinstance(self.sheet, list) else [self.sheet]


def _yaml_error(path: Path, kind: str, exc: yaml.YAMLError) -> LayoutError:
    mark = getattr(exc, "problem_mark", None)
    where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or "syntax error"
    return LayoutError(
        f"{kind} layouts file {path}:{where}: not valid YAML ({problem}). Check the "
        "indentation and quoting there (a value with ':' or '#' needs quotes)."
    )


def describe_validation_error(exc: ValidationError) -> str:
    """pydantic's errors as '`field`: message' parts, without the offending input."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "is not a layout setting (misspelt? see the comments in layouts.yml)"
        elif error["type"] == "missing":
            message = "is required"
        parts.append(f"`{where}` {message}" if where else message)
    return "; ".join(parts)


def read_layouts(path: Path, model: type[BaseModel], kind: str) -> dict:
    """The layouts of a layouts YAML file (name → `model`), each checked; `kind` names the
    source in the error ('attendance', 'housing')."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise LayoutError(
            f"{kind} layouts file {path} does not exist: point `{kind}_layouts` in "
            "lagesbild.toml at your layouts file"
        ) from None
    except UnicodeDecodeError:
        raise LayoutError(f"{kind} layouts file {path} is not UTF-8: save it as UTF-8") from None
    except yaml.YAMLError as exc:
        raise _yaml_error(path, kind, exc) from None
    if not isinstance(raw, dict):
        raise LayoutError(
            f"{kind} layouts file {path}: expected layouts by name (`my_layout:` then its "
            "settings, indented), found a list or a single value"
        )
    layouts = {}
    for name, spec in raw.items():
        if not isinstance(spec, dict):
            raise LayoutError(
                f"{kind} layouts file {path}, layout '{name}': expected its settings "
                "(files, format, columns, ...) indented below the name"
            )
        try:
            layouts[name] = model(name=name, **spec)
            layouts[name]._source_file = path
        except ValidationError as exc:
            raise LayoutError(
                f"{kind} layouts file {path}, layout '{name}': {describe_validation_error(exc)}"
            ) from None  # pydantic's own text quotes the input and is long
    return layouts


# -- finding new files -------------------------------------------------------------------------


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


def check_drop_dir(drop_dir: Path) -> None:
    """One clear line when the drop folder is missing (a wrong setting, an unmounted share)."""
    if not Path(drop_dir).is_dir():
        raise LayoutError(
            f"drop folder {drop_dir} does not exist: set `drop_dir` in lagesbild.toml "
            "(or LAGESBILD_DROP_DIR) to the folder the exports arrive in"
        )


def new_files(
    drop_dir: Path,
    pattern: str,
    landed: Landed,
    *,
    min_age_seconds: float = 0.0,
    on_skip: Callable[[Path, str], None] | None = None,
    now: float | None = None,
) -> Iterator[tuple[Path, str, tuple[int, int]]]:
    """(path, sha256, (size, mtime)) of the files matching `pattern` whose content is not
    landed yet, in name order.

    A file still being uploaded is left for the next night, with `on_skip(path, why)`: one
    modified less than `min_age_seconds` ago, or one whose size or time changed while it was
    hashed (the two looks). The stat is taken before hashing, so a file changed later fails
    the next night's quick check and is hashed again.
    """
    for path in sorted(drop_dir.glob(pattern)):
        if not path.is_file():
            continue
        stat = file_stat(path)
        if (path.relative_to(drop_dir).as_posix(), *stat) in landed.files:
            continue
        age = (time.time() if now is None else now) - stat[1] / 1e9
        if age < min_age_seconds:
            if on_skip:
                on_skip(
                    path,
                    f"modified {max(age, 0):.0f} s ago (less than min_file_age_seconds = "
                    f"{min_age_seconds:g}): maybe still being uploaded; left for the next run",
                )
            continue
        digest = sha256_of(path)
        if file_stat(path) != stat:
            if on_skip:
                on_skip(
                    path, "changed while it was read: still being written; left for the next run"
                )
            continue
        if digest not in landed.sha256:
            yield path, digest, stat


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- reading a file into a table ---------------------------------------------------------------


@dataclass
class Table:
    """A file as read with its layout: the data rows below the header, all values text
    ('' for empty), named by the header, with `_source_row` (1 = the first row below it)."""

    rows: pl.DataFrame
    header_row: int = 1  # 1-based row of the header in the file (first sheet read)
    encoding: str = ""  # what the CSV was decoded as
    sheets: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # title / blank / footer rows
    dropped_empty_columns: int = 0  # columns without a header name and without values
    empty: str | None = None  # why the file holds no rows (0 bytes, header only)


def _letter(index: int) -> str:
    """0 → 'A', 27 → 'AB': how a spreadsheet names a column."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(65 + rest) + name
    return name


def _where(path: Path, layout: FileLayout) -> str:
    return f"{path.name} (layout '{layout.name}')"


def decode_csv(path: Path, data: bytes, layout: FileLayout) -> tuple[str, str]:
    """(text, encoding used). A BOM wins over the declared encoding; a file that is not in
    the declared encoding gives an error that says which one it looks like."""
    if data.startswith(_BOM_UTF8):
        return data[3:].decode("utf-8", errors="replace"), "utf-8 (BOM)"
    if data[:2] in _BOM_UTF16:
        return data.decode("utf-16"), "utf-16 (BOM)"
    if data.startswith(b"PK") or data.startswith(_OLE_MAGIC):
        raise LayoutError(
            f"{_where(path, layout)}: is an Excel workbook, not a CSV file. Export it as CSV, "
            "or describe it with a layout of `format: xlsx`."
        )
    head = data[:4096]
    if head.count(b"\x00") > len(head) // 4:
        raise LayoutError(
            f"{_where(path, layout)}: encoding looks like UTF-16 without a BOM; set "
            f"`encoding: utf-16` in {layout.reference} or export it as UTF-8"
        )
    declared = layout.encoding
    if declared in ("cp1252", "latin-1") and not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            raise LayoutError(
                f"{_where(path, layout)}: declared {declared}, but the encoding looks like "
                f"UTF-8 (its letters such as å, ä, ö would be garbled). Set `encoding: utf-8` "
                f"in {layout.reference}, or export the file as {declared}."
            )
    try:
        return data.decode({"utf-8": "utf-8", "utf-16": "utf-16"}.get(declared, declared)), declared
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        guess = "cp1252 (Windows)" if declared in ("utf-8", "utf-16") else "another encoding"
        fix = "`encoding: cp1252`" if declared in ("utf-8", "utf-16") else "the right `encoding`"
        raise LayoutError(
            f"{_where(path, layout)}: is not {declared} as declared (first bad byte on line "
            f"{line}); the encoding looks like {guess}. Set {fix} in {layout.reference}."
        ) from None


def _records(text: str, separator: str, limit: int) -> list[tuple[int, list[str]]]:
    """The first `limit` CSV records, each with the 0-based physical line it starts on."""
    # Only the top of the file: a StringIO of a whole month's export costs seconds.
    lines = io.StringIO(text[: _line_offset(text, limit * 8)], newline="")
    reader = csv.reader(lines, delimiter=separator)
    records = []
    try:
        while len(records) < limit:
            start = reader.line_num
            records.append((start, next(reader)))
    except StopIteration:
        pass
    except csv.Error:
        pass  # an unclosed quote near the top: the header search sees what was read
    return records


def _line_offset(text: str, line: int) -> int:
    """Character offset where 0-based physical line `line` starts."""
    offset = 0
    for _ in range(line):
        found = text.find("\n", offset)
        if found < 0:
            return len(text)
        offset = found + 1
    return offset


def _header_index(
    rows: list[list[str]], path: Path, layout: FileLayout, *, first_row: int, guard_ids: bool
) -> int:
    """Index (into `rows`) of the header row: pinned by `header_row`, else the first row
    that holds the most of the layout's column names (at least half of the mapped ones)."""
    if layout.header_row is not None:
        index = layout.header_row - first_row
        if not 0 <= index < len(rows):
            raise LayoutError(
                f"{_where(path, layout)}: `header_row: {layout.header_row}` is outside the "
                f"first {len(rows) + first_row - 1} rows of the file; remove it or correct it"
            )
    expected = set(layout.columns) | set(layout.ignore)
    scores = [len({c.strip() for c in row} & expected) for row in rows]
    best = max(scores, default=0)
    if layout.header_row is not None:
        if scores[index] == 0:
            guess = f"; the header looks like row {scores.index(best) + first_row}" if best else ""
            raise LayoutError(
                f"{_where(path, layout)}: row {layout.header_row} (`header_row: "
                f"{layout.header_row}`) holds none of the layout's column names{guess}. "
                "Correct `header_row`, or remove it to have the header found."
            )
        return index
    if best and best >= math.ceil(len(layout.columns) / 2):
        return scores.index(best)
    if guard_ids and rows and any(re.search(r"\d{6}", c) for c in rows[0]):
        # Never echo this row: it is data, with a personnummer in it.
        raise LayoutError(
            f"{_where(path, layout)}: the first row looks like data (it holds a personal "
            "id), not a header row. Export the file with its header row."
        )
    raise LayoutError(
        f"{_where(path, layout)}: no row in the first {len(rows)} rows holds the layout's "
        "column names (e.g. "
        + ", ".join(f"'{c}'" for c in list(layout.columns)[:3])
        + "). "
        + _header_hint(rows, layout)
    )


def _header_hint(rows: list[list[str]], layout: FileLayout) -> str:
    if layout.format == "csv":
        single = [r[0] for r in rows if len(r) == 1 and r[0]]
        for separator, label in ((";", "';'"), (",", "','"), ("\t", "a tab"), ("|", "'|'")):
            if separator != layout.separator and any(
                sum(name in cell.split(separator) for name in layout.columns) >= 2
                for cell in single
            ):
                return f'The separator looks like {label}: set `separator: "{separator}"`.'
    return (
        "If the export's column names changed, update the layout's `columns`; if the file "
        "belongs to another system, move it to that system's folder."
    )


def _cells(frame: pl.DataFrame) -> list[list[str]]:
    return [["" if v is None else str(v) for v in row] for row in frame.iter_rows()]


def read_csv_table(path: Path, layout: FileLayout, *, guard_ids: bool = False) -> Table:
    data = path.read_bytes()
    if not data or data.isspace():
        return Table(pl.DataFrame(), empty="is empty (0 bytes): nothing to load")
    text, encoding = decode_csv(path, data, layout)
    records = _records(text, layout.separator, HEADER_SCAN_ROWS)
    index = _header_index([r for _, r in records], path, layout, first_row=1, guard_ids=guard_ids)
    header_line, header = records[index]
    after = records[index + 1][0] if index + 1 < len(records) else None
    if after is None:  # the header is the last record of the scan: count its lines
        after = header_line + 1 + sum(c.count("\n") for c in header)
    schema = {f"c{i}": pl.String for i in range(len(header))}
    frame = payload = None
    if not _NON_BLANK.search(text, _line_offset(text, after)):  # a header and nothing else
        frame = pl.DataFrame(schema=schema)
    elif encoding.startswith("utf-8"):  # to the parser as it is (checked above)
        payload = data[len(_BOM_UTF8) :] if data.startswith(_BOM_UTF8) else data
    else:
        payload = text.encode("utf-8")
    try:
        if frame is None:
            frame = pl.read_csv(
                payload,
                separator=layout.separator,
                has_header=False,
                skip_lines=after,
                schema=schema,
                raise_if_empty=False,
            )
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        if "utf" in str(exc).lower():  # invalid bytes after a BOM said UTF-8
            raise LayoutError(
                f"{_where(path, layout)}: starts with a UTF-8 BOM but holds bytes that are not "
                "UTF-8 (a file pieced together from two exports?). Export it again."
            ) from None
        raise LayoutError(
            f"{_where(path, layout)}: cannot be read as CSV ({encoding}, separator "
            f"'{layout.separator}'): some row has more fields than the header "
            f"({type(exc).__name__}; the parser's message is left out because it quotes file "
            "content). Check the export settings, the layout's `separator`, or quoting of "
            "values that contain the separator."
        ) from None  # the cause's message would quote the file
    return _finish(
        path,
        layout,
        header,
        frame,
        header_row=index + 1,
        skipped_above=index,
        encoding=encoding,
    )


# -- xlsx --------------------------------------------------------------------------------------


def _workbook_facts(path: Path) -> tuple[bool, dict[str, int]]:
    """(uses the 1904 date system, first used row per sheet name). calamine trims leading
    empty rows, so a pinned `header_row` needs the row the sheet really starts on."""
    with zipfile.ZipFile(path) as book:
        workbook = book.read("xl/workbook.xml").decode("utf-8", errors="replace")
        date1904 = bool(re.search(r"date1904=\"(1|true)\"", workbook))
        rels = book.read("xl/_rels/workbook.xml.rels").decode("utf-8", errors="replace")
        targets = {
            m.group("id"): m.group("target")
            for m in re.finditer(
                r"<Relationship\b(?=[^>]*\bId=\"(?P<id>[^\"]+)\")(?=[^>]*\bTarget=\"(?P<target>[^\"]+)\")",
                rels,
            )
        }
        first_rows = {}
        for match in re.finditer(r"<sheet\b[^>]*>", workbook):
            tag = match.group(0)
            name = re.search(r"\bname=\"([^\"]*)\"", tag)
            rid = re.search(r"\br:id=\"([^\"]*)\"", tag) or re.search(r"\bid=\"([^\"]*)\"", tag)
            if not (name and rid and rid.group(1) in targets):
                continue
            target = targets[rid.group(1)].lstrip("/")
            target = target if target.startswith("xl/") else f"xl/{target}"
            try:
                with book.open(target) as sheet:
                    head = sheet.read(1 << 16).decode("utf-8", errors="replace")
            except KeyError:
                continue
            cell = re.search(r"<c\b[^>]*\br=\"[A-Z]+(\d+)\"", head)
            first_rows[_unescape(name.group(1))] = int(cell.group(1)) if cell else 1
    return date1904, first_rows


def _unescape(text: str) -> str:
    return (
        text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", '"')
        .replace("&apos;", "'")
        .replace("&amp;", "&")
    )


def _select_sheets(names: list[str], wanted: list[str | int], path: Path, layout) -> list[str]:
    chosen: list[str] = []
    for spec in wanted:
        if isinstance(spec, int):
            if not 0 <= spec < len(names):
                raise LayoutError(
                    f"{_where(path, layout)}: has {len(names)} sheet(s); `sheet: {spec}` "
                    "(0 = the first) does not exist. Sheets: " + ", ".join(repr(n) for n in names)
                )
            found = [names[spec]]
        elif any(ch in spec for ch in "*?["):
            found = [n for n in names if fnmatch.fnmatchcase(n, spec)]
        else:
            found = [n for n in names if n == spec] or [
                n for n in names if n.strip().casefold() == spec.strip().casefold()
            ]
        if not found:
            raise LayoutError(
                f"{_where(path, layout)}: no sheet matches `sheet: {spec}`; the workbook has "
                + ", ".join(repr(n) for n in names)
                + ". Set `sheet` to one of them (a name, a 0-based index or a pattern such "
                "as 'Vecka *')."
            )
        chosen += [n for n in found if n not in chosen]
    return chosen


def open_workbook(path: Path, layout: FileLayout):
    """The fastexcel reader of a workbook, or a clear error for a file that is not one."""
    import fastexcel

    with path.open("rb") as handle:
        head = handle.read(8)
    if head.startswith(_OLE_MAGIC):
        if _ENCRYPTED in path.read_bytes():
            raise LayoutError(
                f"{_where(path, layout)}: the workbook is password-protected (encrypted). "
                "Save it without a password (File → Info → Protect Workbook) and drop it again."
            )
        raise LayoutError(
            f"{_where(path, layout)}: is an old Excel 97-2003 (.xls) file; save it as .xlsx"
        )
    if not head.startswith(b"PK"):
        raise LayoutError(
            f"{_where(path, layout)}: is not an xlsx workbook (maybe a CSV with an .xlsx "
            "name); export it as xlsx, or describe it with a layout of `format: csv`."
        )
    try:
        return fastexcel.read_excel(str(path)), _workbook_facts(path)
    except Exception as exc:  # fastexcel and zipfile raise their own error types
        raise LayoutError(
            f"{_where(path, layout)}: the workbook is damaged or cut off "
            f"({type(exc).__name__}); export it again. Nothing of it was loaded."
        ) from None  # the cause's message may quote the file


def read_xlsx_table(path: Path, layout: FileLayout, *, guard_ids: bool = False) -> Table:
    if path.stat().st_size == 0:
        return Table(pl.DataFrame(), empty="is empty (0 bytes): nothing to load")
    reader, (date1904, first_rows) = open_workbook(path, layout)
    names = list(reader.sheet_names)
    sheets = _select_sheets(names, layout.sheets, path, layout)
    tables = []
    for name in sheets:
        try:
            frame = reader.load_sheet(name, header_row=None, dtypes="string").to_polars()
        except Exception as exc:
            raise LayoutError(
                f"{_where(path, layout)}: cannot read sheet '{name}' ({type(exc).__name__}; "
                "details left out: they may quote personal data). Export the workbook again."
            ) from None
        first_row = first_rows.get(name, 1)
        if frame.height + first_row - 1 >= EXCEL_MAX_ROWS:
            raise LayoutError(
                f"{path.name}: sheet '{name}' fills all {EXCEL_MAX_ROWS:,} rows of an Excel "
                "sheet, so the export was most likely cut off. Export it in parts (e.g. per "
                "school unit or a few weeks at a time); nothing of this file was loaded."
            )
        if frame.height == 0:
            tables.append(Table(pl.DataFrame(), sheets=[name], empty=f"sheet '{name}' is empty"))
            continue
        top = _cells(frame.head(HEADER_SCAN_ROWS))
        try:
            index = _header_index(top, path, layout, first_row=first_row, guard_ids=guard_ids)
        except LayoutError as exc:
            raise LayoutError(
                str(exc).replace(f"{path.name} ", f"{path.name} sheet '{name}' ", 1)
            ) from None
        header = top[index]
        body = frame.slice(index + 1).rename({c: f"c{i}" for i, c in enumerate(frame.columns)})
        table = _finish(
            path,
            layout,
            header,
            body,
            header_row=index + first_row,
            skipped_above=index + first_row - 1,
            sheet=name,
        )
        table.rows = _excel_serial_dates(table.rows, layout, date1904)
        tables.append(table)
    return _combine(tables, sheets, path, layout)


def _combine(tables: list[Table], sheets: list[str], path: Path, layout: FileLayout) -> Table:
    full = [t for t in tables if t.empty is None]
    if not full:
        return Table(pl.DataFrame(), sheets=sheets, empty=tables[0].empty if tables else "no sheet")
    frames, offset = [], 0
    for table in full:  # row numbers run on across sheets: one load, unique rows
        frames.append(table.rows.with_columns(pl.col(ROW_NUMBER) + offset))
        offset += table.rows.height and table.rows[ROW_NUMBER].max()
    first = full[0]
    columns = first.rows.columns
    for table in full[1:]:
        if table.rows.columns != columns:
            raise LayoutError(
                f"{_where(path, layout)}: sheet '{table.sheets[0]}' has other columns than "
                f"sheet '{first.sheets[0]}': every sheet a layout reads must have the same "
                "header. Narrow `sheet` to the sheets that hold the export."
            )
    skipped: dict[str, int] = {}
    for table in full:
        for kind, count in table.skipped.items():
            skipped[kind] = skipped.get(kind, 0) + count
    return Table(
        pl.concat(frames, how="vertical"),
        header_row=first.header_row,
        sheets=sheets,
        skipped=skipped,
        dropped_empty_columns=sum(t.dropped_empty_columns for t in full),
    )


_SERIAL = r"^\d{1,6}(\.\d+)?$"


def _excel_serial_dates(frame: pl.DataFrame, layout: FileLayout, date1904: bool) -> pl.DataFrame:
    """Number cells in a date column (formatted as a number, not a date) are Excel day
    numbers: read them as dates with the workbook's own date system; in a time column
    (lesson_start) a day fraction is a time of day. Date-formatted cells arrive as text dates
    already; calamine applies the date system to those itself."""
    epoch = datetime(1904, 1, 1) if date1904 else datetime(1899, 12, 30)
    for fields, convert in (
        (getattr(layout, "DATE_FIELDS", ()), lambda text: _serial_date(text, epoch, date1904)),
        (getattr(layout, "TIME_FIELDS", ()), _day_fraction_time),
    ):
        for column in [c for c, f in layout.columns.items() if f in fields and c in frame.columns]:
            # per distinct value: a month's export repeats a few dozen dates a million times
            distinct = frame.select(pl.col(column).unique())
            mapped = distinct.with_columns(_new=convert(pl.col(column).str.strip_chars()))
            mapped = mapped.filter(pl.col("_new").is_not_null())
            if mapped.height:
                frame = frame.with_columns(
                    pl.col(column).replace(mapped.get_column(column), mapped.get_column("_new"))
                )
    return frame


def _serial_date(text: pl.Expr, epoch: datetime, date1904: bool) -> pl.Expr:
    days = text.cast(pl.Float64, strict=False)
    # 1900 system: days 1-60 are before Lotus' phantom 1900-02-29; exports never go there
    valid = text.str.contains(_SERIAL) & (days >= (0 if date1904 else 61)) & (days < 2_958_466)
    moment = pl.lit(epoch) + pl.duration(milliseconds=(days * 86_400_000).round(0))
    as_text = (
        pl.when(days == days.floor())
        .then(moment.dt.strftime("%Y-%m-%d"))
        .otherwise(moment.dt.strftime("%Y-%m-%d %H:%M:%S"))
    )
    return pl.when(valid).then(as_text)


def _day_fraction_time(text: pl.Expr) -> pl.Expr:
    """'0.3402777777' (08:10 as a fraction of a day) → '08:10'."""
    fraction = text.cast(pl.Float64, strict=False)
    minutes = (fraction * 1440).round(0).cast(pl.Int64, strict=False)
    valid = text.str.contains(r"^0?\.\d+$") & (minutes < 1440)
    return pl.when(valid).then(
        pl.format(
            "{}:{}",
            (minutes // 60).cast(pl.String).str.zfill(2),
            (minutes % 60).cast(pl.String).str.zfill(2),
        )
    )


# -- header, blank rows, footer ----------------------------------------------------------------


def _finish(
    path: Path,
    layout: FileLayout,
    header: list[str],
    frame: pl.DataFrame,
    *,
    header_row: int,
    skipped_above: int,
    encoding: str = "",
    sheet: str | None = None,
) -> Table:
    """Name the positional columns by the header, drop empty columns, blank rows and a
    footer, number the rows."""
    where = f"{path.name}" + (f" sheet '{sheet}'" if sheet else "")
    names = [str(h).strip() for h in header]
    frame = frame.select(frame.columns[: len(names)])
    names = names[: frame.width] + [""] * (len(names) - frame.width)
    # Values stay as written (no strip: landing keeps the source's text, and stripping every
    # cell of a month's export costs seconds); cleaning trims what it reads.
    frame = frame.with_columns(pl.all().cast(pl.String).fill_null(""))
    keep, dropped_empty = [], 0
    for i, name in enumerate(names):
        if name:
            keep.append(i)
            continue
        if frame.height and (frame.get_column(frame.columns[i]) != "").any():
            raise LayoutError(
                f"{where} (layout '{layout.name}'): column {_letter(i)} holds values but its "
                f"header cell on row {header_row} is empty (a merged header cell?). Give the "
                "column a name in the export and map or ignore it in the layout."
            )
        dropped_empty += 1  # a trailing separator or an empty column: nothing to read
    seen: dict[str, list[int]] = {}
    for i in keep:
        seen.setdefault(names[i], []).append(i)
    for name, positions in seen.items():
        if len(positions) > 1 and name not in layout.ignore:
            raise LayoutError(
                f"{where} (layout '{layout.name}'): column name '{name}' appears "
                f"{len(positions)} times on header row {header_row} (columns "
                + ", ".join(_letter(i) for i in positions)
                + "). Rename the duplicates in the export, or list the name under `ignore` "
                "if none of them is needed."
            )
    keep = [i for i in keep if not (len(seen[names[i]]) > 1)]  # duplicates of ignored names
    frame = frame.select([pl.col(frame.columns[i]).alias(names[i]) for i in keep])
    frame = frame.with_row_index(ROW_NUMBER, offset=1).with_columns(
        pl.col(ROW_NUMBER).cast(pl.Int64)
    )
    data = [c for c in frame.columns if c != ROW_NUMBER]
    # A blank row has an empty first column; checking that one column first keeps a month's
    # export from a comparison of every cell.
    first = pl.col(data[0]) == "" if data else pl.lit(True)
    candidates = frame.filter(first)
    blank_rows = candidates.filter(pl.all_horizontal([pl.col(c) == "" for c in data]))
    blank = blank_rows.height
    if blank:
        frame = frame.filter(~pl.col(ROW_NUMBER).is_in(blank_rows[ROW_NUMBER].implode()))
    footer = _footer_rows(frame, layout)
    if footer:
        frame = frame.head(frame.height - footer)
    skipped = {
        kind: count
        for kind, count in (("above_header", skipped_above), ("blank", blank), ("footer", footer))
        if count
    }
    rows = frame
    empty = None if rows.height else "has a header row but no data rows: nothing to load"
    return Table(
        rows,
        header_row=header_row,
        encoding=encoding,
        sheets=[sheet] if sheet else [],
        skipped=skipped,
        dropped_empty_columns=dropped_empty,
        empty=empty,
    )


def _footer_rows(frame: pl.DataFrame, layout: FileLayout) -> int:
    """Trailing rows that are a note (one filled cell) or a totals row: their key column
    (personal id, order number) is empty or says 'Summa'/'Totalt'/..., and they start with
    such a word or fill fewer than half of the mapped columns. Only at the end: a bad row
    among the data is quarantined."""
    keys = [c for c, f in layout.columns.items() if f in getattr(layout, "KEY_FIELDS", ())]
    mapped = [c for c in layout.columns if c in frame.columns]
    if not keys or not mapped or frame.is_empty():
        return 0
    tail = frame.tail(5)
    data = [c for c in frame.columns if c != ROW_NUMBER]
    count = 0
    for raw in reversed(list(tail.iter_rows(named=True))):
        row = {c: str(v).strip() for c, v in raw.items() if c in data}
        filled = sum(bool(row[c]) for c in data)
        if filled > 1 and any(row.get(k, "") and not TOTALS.match(row[k]) for k in keys):
            break
        first = next((row[c] for c in data if row[c]), "")
        few = sum(bool(row[c]) for c in mapped) < len(mapped) / 2
        note = filled == 1  # a note line: 'Exporterad 2025-10-01 av ...'
        if not (note or (TOTALS.match(first) or few)):
            break
        count += 1
    return count


def read_table(path: Path, layout: FileLayout, *, guard_ids: bool = False) -> Table:
    """The file read with its layout (CSV or XLSX), or a LayoutError that says what to fix."""
    if layout.format == "csv":
        return read_csv_table(path, layout, guard_ids=guard_ids)
    return read_xlsx_table(path, layout, guard_ids=guard_ids)


_LOOKS_LIKE_DATA = re.compile(r"\d{3}|@")


def check_header(
    path: Path,
    columns: Iterable[str],
    *,
    mapped: Iterable[str],
    ignore: Iterable[str],
    layout_name: str,
    guard_personal_ids: bool = False,
    header_row: int | None = None,
    layouts_file: Path | None = None,
) -> None:
    """Every mapped column present and no column unaccounted for, or one clear error.

    With `guard_personal_ids`, a header that holds a 6-digit run is taken for a data row
    (a file exported without its header) and reported without echoing it.
    """
    present = [c for c in columns if c != ROW_NUMBER]
    mapped, ignore = list(mapped), set(ignore)
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
            # A name with a run of digits or an @ is a cell of a data row (a phone number,
            # an e-mail address, a personnummer): counted, never echoed.
            shown = [c for c in unknown if not _LOOKS_LIKE_DATA.search(c)]
            hidden = len(unknown) - len(shown)
            if not set(mapped) & set(present):
                shown, hidden = [], len(unknown)  # no known column: the row may be data
            parts.append(
                f"unknown columns {shown}"
                + (f" and {hidden} more that look like data (not shown)" if hidden else "")
                if shown
                else f"{hidden} unknown columns (not shown: the row may be data)"
            )
        row = f" (header on row {header_row})" if header_row else ""
        fixes = []
        if unknown:
            fixes.append("map each unknown column under `columns` or list it under `ignore`")
        if missing:
            fixes.append(
                "map a missing field to the export's own column name, or remove it from "
                "`columns` and give it a value under `defaults`"
            )
        raise LayoutError(
            f"{path.name} does not match layout '{layout_name}'{row}: {'; '.join(parts)}. "
            f"Fix: {'; '.join(fixes)} (in {layouts_file or 'the layouts file'}); if the file "
            "belongs to another system, move it to that system's folder."
        )
