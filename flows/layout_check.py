"""`lagesbild check-layout FILE`: a dry run of one export against the configured layouts.

Says which layout reads the file, how each column maps, the first rows as the cleaning rules
parse them (personal ids masked: only their kind is shown), and the quarantine counts per
reason the file would produce; when no layout reads it, the layout change that would. It
reads the file and the reference files and writes nothing: ids are pseudonymised with a
throwaway key held in memory only.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from connectors import drop_files
from connectors.attendance_export import layouts as attendance_layouts
from connectors.attendance_export import resources as attendance
from connectors.drop_files import ROW_NUMBER, LayoutError
from connectors.housing_export import layouts as housing_layouts
from connectors.housing_export import resources as housing
from lagesbild.settings import today

PREVIEW_ROWS = 5
ATTENDANCE_PREVIEW = [
    "pupil_id_kind",
    "school_unit_code",
    "grade",
    "date",
    "lesson_start",
    "offered_minutes",
    "attended_minutes",
    "valid_absence_minutes",
    "invalid_absence_minutes",
    "other_absence_minutes",
    "reason",
]
HOUSING_PREVIEW = [
    "order_id",
    "reported_date",
    "completed_date",
    "property_id",
    "category",
    "status",
    "cost_excl_vat_ore",
    "credit_note_id",
    "reason",
]


SHORT = {  # preview headers that fit a terminal
    "pupil_id_kind": "id (masked)",
    "school_unit_code": "school",
    "lesson_start": "start",
    "offered_minutes": "offered",
    "attended_minutes": "attended",
    "valid_absence_minutes": "valid",
    "invalid_absence_minutes": "invalid",
    "other_absence_minutes": "other",
    "reported_date": "reported",
    "completed_date": "completed",
    "property_id": "property",
    "cost_excl_vat_ore": "öre excl VAT",
    "credit_note_id": "credit note",
}


@dataclass
class Attempt:
    kind: str  # attendance | housing
    layout: str
    pattern_matches: bool  # the file's path matches the layout's `files`
    error: str | None = None
    fixes: list[str] = field(default_factory=list)


@dataclass
class CheckResult:
    path: Path
    kind: str | None = None
    layout: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    header_row: int | None = None
    sheets: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    mapping: list[tuple[str, str]] = field(default_factory=list)  # (source column, target)
    preview: pl.DataFrame | None = None
    received: int = 0
    clean: int = 0
    duplicates: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    empty: str | None = None
    notes: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.layout is not None


def _matches(path: Path, drop_dir: Path | None, pattern: str) -> bool:
    """Whether the nightly run would give `path` to a layout with this `files` pattern; a
    file outside the drop folder is compared by its name only."""
    try:
        relative = path.resolve().relative_to(drop_dir.resolve()) if drop_dir else None
    except ValueError:
        relative = None
    if relative is not None:
        return relative.match(pattern)
    return Path(path.name).match(Path(pattern).name)


def _fixes(path: Path, layout, error: str) -> list[str]:
    """The layout changes that would make `layout` read `path`, from the error and a look at
    the file's top rows."""
    fixes = []
    if "`encoding:" in error or "`separator:" in error or "`sheet" in error:
        fixes.append(error.split(": ", 1)[-1])
    if "missing columns" in error or "no row in the first" in error:
        found = _best_header(path, layout)
        if found:
            row, names = found
            if row > 1 and layout.header_row is None and "no row in the first" in error:
                fixes.append(f"add `header_row: {row}` (the header looks like row {row})")
            mapped = set(layout.columns)
            missing = [c for c in layout.columns if c not in names]
            unknown = [n for n in names if n and n not in mapped and n not in layout.ignore]
            for column in missing:
                target = layout.columns[column]
                fix = f"`columns`: the export has no column '{column}' ({target}): map "
                fix += "the export's own name for it"
                if target in attendance_layouts.FIELDS_SPLIT_MINUTES:
                    fix += (
                        f", or remove it and add `derived: {{{target}: remainder}}` "
                        f"(or `defaults: {{{target}: 0}}`)"
                    )
                elif target not in ("personal_id", "date", "order_id", "reported_date"):
                    fix += f", or remove it and give a value under `defaults: {{{target}: ...}}`"
                fixes.append(fix)
            if unknown:
                fixes.append(
                    f"map or ignore the columns {unknown}: e.g. `ignore: "
                    f"[{', '.join(layout.ignore + unknown)}]`"
                )
    if not fixes:
        fixes.append(error)
    return fixes


def _best_header(path: Path, layout) -> tuple[int, list[str]] | None:
    """(1-based row, names) of the top row that holds most of the layout's column names."""
    try:
        if layout.format == "csv":
            data = path.read_bytes()
            text, _ = drop_files.decode_csv(path, data, layout)
            rows = [r for _, r in drop_files._records(text, layout.separator, 30)]
        else:
            reader, _ = drop_files.open_workbook(path, layout)
            frame = reader.load_sheet(0, header_row=None, dtypes="string").to_polars()
            rows = drop_files._cells(frame.head(30))
    except (LayoutError, OSError):
        return None
    expected = set(layout.columns) | set(layout.ignore)
    scores = [len({c.strip() for c in r} & expected) for r in rows]
    if not scores or max(scores) == 0:
        return None
    index = scores.index(max(scores))
    return index + 1, [c.strip() for c in rows[index]]


def _reference(drop_dir: Path | None, notes: list[str]):
    """(known school codes or None, property register or None) from the drop folder."""
    from flows.layers.reference import REFERENCE_FILES, ReferenceError, _read

    if drop_dir is None:
        notes.append("no drop folder: school codes and properties are not checked")
        return None, None
    schools = properties = None
    try:
        schools = set(
            _read(drop_dir / "reference" / "schools.csv", REFERENCE_FILES["schools"])
            .get_column("school_unit_code")
            .to_list()
        )
    except ReferenceError as exc:
        notes.append(f"school codes are not checked: {exc}")
    try:
        from flows.housing.properties import PROPERTIES_FILE

        path = drop_dir / "reference" / PROPERTIES_FILE
        if path.exists():
            properties = pl.read_csv(path, infer_schema=False).select(
                pl.col("company", "property_id", "area_code").str.strip_chars()
            )
    except (pl.exceptions.PolarsError, OSError):
        notes.append("reference/properties.csv could not be read: properties are not checked")
    return schools, properties


def check_layout(
    path: Path,
    *,
    attendance_layouts_file: Path,
    housing_layouts_file: Path,
    drop_dir: Path | None = None,
    run_date: date | None = None,
) -> CheckResult:
    """Try every configured layout on `path` (those whose `files` pattern matches first)."""
    path = Path(path)
    result = CheckResult(path)
    if not path.is_file():
        raise LayoutError(f"{path} does not exist or is not a file")
    candidates = []
    for kind, loader, layouts_file in (
        ("attendance", attendance_layouts.load_layouts, attendance_layouts_file),
        ("housing", housing_layouts.load_layouts, housing_layouts_file),
    ):
        for layout in loader(layouts_file).values():
            candidates.append((kind, layout, _matches(path, drop_dir, layout.files)))
    candidates.sort(key=lambda c: not c[2])  # the layouts whose pattern matches first
    if not any(matches for _, _, matches in candidates):
        result.notes.append(
            "the file's path matches no layout's `files` pattern: in the drop folder the "
            "nightly run would not pick it up (every layout was tried anyway)"
        )
    key = secrets.token_bytes(32)  # throwaway: pupil keys of a dry run match nothing
    for kind, layout, matches in candidates:
        attempt = Attempt(kind, layout.name, matches)
        result.attempts.append(attempt)
        try:
            if kind == "attendance":
                file = attendance.ExportFile(layout, path, "")
                batch = attendance.read_export(file, key)
            else:
                batch = housing.read_export(housing.ExportFile(layout, path, ""))
        except LayoutError as exc:
            attempt.error = str(exc)
            attempt.fixes = _fixes(path, layout, str(exc))
            continue
        _describe(result, kind, layout, batch, drop_dir, run_date or today())
        return result
    best = next((a for a in result.attempts if a.pattern_matches), None) or next(
        iter(result.attempts), None
    )
    if best:
        result.fixes = best.fixes
    return result


def _describe(result: CheckResult, kind: str, layout, batch, drop_dir, run_date: date) -> None:
    from flows.attendance import rules as clean_attendance
    from flows.housing import rules as clean_housing

    result.kind, result.layout = kind, layout.name
    result.header_row, result.skipped, result.empty = batch.header_row, batch.skipped, batch.empty
    if batch.empty is not None and not batch.rows.columns:  # 0 bytes, an empty sheet
        result.header_row = None
        return
    header_row = layout.header_row
    if batch.header_row > 1 and header_row is None:
        result.notes.append(
            f"the header was found on row {batch.header_row}; to pin it add "
            f"`header_row: {batch.header_row}` to layout '{layout.name}'"
        )
    for source, target in layout.columns.items():
        result.mapping.append((source, target))
    for column in batch.dropped_columns:
        result.mapping.append((column, "(ignored: dropped)"))
    for target, value in layout.defaults.items():
        source = "(empty cells)" if target in layout.columns.values() else "(no column)"
        result.mapping.append((source, f"{target} = {value!r} (default)"))
    for target, how in getattr(layout, "derived", {}).items():
        result.mapping.append(("(no column)", f"{target} = {how} of offered minutes (derived)"))
    if batch.empty is not None:
        return
    schools, properties = _reference(drop_dir, result.notes)
    if kind == "attendance":
        if schools is None:  # not checked: every code in the file counts as known
            column = layout.source_column("school_unit_code")
            schools = (
                set(batch.rows.get_column(column).str.strip_chars().to_list())
                if column
                else {layout.defaults.get("school_unit_code", "")}
            )
        split = clean_attendance.split_load(batch.rows, layout, schools, "check", run_date)
        typed = clean_attendance.type_lessons(batch.rows, layout, schools, run_date)
        columns = ATTENDANCE_PREVIEW
        result.clean = split.clean
    else:
        if properties is None:  # not checked: every property in the file counts as known
            result.notes.append("no reference/properties.csv: properties are not checked")
            column = layout.source_column("property_id")
            ids = (
                batch.rows.get_column(column).str.strip_chars().unique().to_list()
                if column
                else [layout.defaults.get("property_id", "")]
            )
            properties = pl.DataFrame(
                {"company": layout.company, "property_id": ids, "area_code": "?"}
            )
        split = clean_housing.split_load(batch.rows, layout, properties, "check", run_date)
        typed = clean_housing.type_rows(batch.rows, layout, properties, run_date)
        columns = HOUSING_PREVIEW
        result.clean = split.clean
    result.received, result.duplicates = split.received, split.duplicates
    result.reasons = dict(
        sorted(split.quarantine.group_by("reason").len().iter_rows(), key=lambda r: (-r[1], r[0]))
    )
    result.fixes = _row_fixes(kind, layout, typed)
    preview = typed.sort(ROW_NUMBER).head(PREVIEW_ROWS)
    result.preview = preview.select(
        pl.col(ROW_NUMBER).alias("row"), *[c for c in columns if c in preview.columns]
    ).rename(lambda c: SHORT.get(c, c))


COMMON_DATE_FORMATS = ["%Y-%m-%d", "%Y%m%d", "%d.%m.%Y", "%d/%m/%Y", "%Y/%m/%d", "%d-%m-%Y",
                       "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "excel"]  # fmt: skip


def _row_fixes(kind: str, layout, typed: pl.DataFrame) -> list[str]:
    """Layout changes that would take rows out of quarantine: a date format that reads the
    dates that failed, the labels missing from `absence_types`/`categories`/`statuses`."""
    from flows.layers.parsing import parse_date

    fixes = []
    date_field = "date" if kind == "attendance" else "reported_date"
    column = layout.source_column(date_field)
    failed = typed.filter(pl.col("reason") == "invalid_date")
    if column and failed.height:
        texts = failed.select(pl.col(column).str.strip_chars().unique()).to_series()
        texts = texts.filter(texts != "")
        for fmt in COMMON_DATE_FORMATS:
            if fmt in layout.date_formats or texts.is_empty():
                continue
            read = texts.to_frame().select(parse_date(pl.col(column), [fmt]).is_not_null().mean())
            if read.item() >= 0.9:
                fixes.append(
                    f"{failed.height:,} rows have dates the layout cannot read; "
                    f'add "{fmt}" to `date_formats`'
                )
                break
    labels = []
    if kind == "attendance" and "_category" in typed.columns:
        unknown = typed.filter(pl.col("_category").is_null()).get_column("_type").unique()
        labels.append(("absence_types", "none, valid, invalid or other", unknown))
    if kind == "housing":
        for text, target, name, allowed in (
            ("_category_text", "category", "categories", "graffiti, broken_glass, fire, ..."),
            ("_status_text", "status", "statuses", "registered, ordered, ..., cancelled"),
        ):
            if target == "status" and layout.source_column("status") is None:
                continue
            unknown = typed.filter(pl.col(target).is_null()).get_column(text).unique()
            labels.append((name, allowed, unknown))
    for setting, allowed, unknown in labels:
        names = sorted(str(v) for v in unknown.drop_nulls().to_list())
        if names:
            shown = ", ".join(f"'{n}'" for n in names[:10]) + (" ..." if len(names) > 10 else "")
            fixes.append(f"add to `{setting}`: {shown} (each mapped to {allowed})")
    return fixes


def report_lines(result: CheckResult) -> list[str]:
    """The dry run as plain lines for the console."""
    lines = [f"File: {result.path}"]
    if not result.ok:
        lines.append("No layout reads this file.")
        for attempt in result.attempts:
            where = "files pattern matches" if attempt.pattern_matches else "pattern differs"
            lines.append(f"  {attempt.kind} layout '{attempt.layout}' ({where}): {attempt.error}")
        if result.fixes:
            lines.append("To fix, change the layout (the first layout whose pattern matches):")
            lines += [f"  - {fix}" for fix in result.fixes]
        lines += [f"Note: {note}" for note in result.notes]
        return lines
    if result.header_row is None:
        lines.append(
            f"Layout: {result.kind} '{result.layout}', but the file {result.empty}: the "
            "nightly run skips it with a warning."
        )
        lines += [f"Note: {note}" for note in result.notes]
        return lines
    lines.append(
        f"Layout: {result.kind} '{result.layout}' reads it (header on row {result.header_row})"
    )
    if result.skipped:
        lines.append(
            "Rows left out: "
            + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in result.skipped.items())
        )
    lines.append("Columns:")
    lines += [f"  {source} → {target}" for source, target in result.mapping]
    if result.empty:
        lines.append(f"The file {result.empty}: the nightly run skips it with a warning.")
    else:
        lines.append(
            f"Rows: {result.received:,} received → {result.clean:,} clean, "
            f"{sum(result.reasons.values()):,} quarantined, {result.duplicates:,} duplicates"
        )
        if result.reasons:
            lines.append("Quarantine by reason:")
            lines += [f"  {reason}: {count:,}" for reason, count in result.reasons.items()]
        if result.preview is not None:
            lines.append(f"First {result.preview.height} rows as parsed (ids masked):")
            with pl.Config(
                tbl_rows=PREVIEW_ROWS,
                tbl_cols=20,
                tbl_width_chars=160,
                tbl_hide_dataframe_shape=True,
                tbl_hide_column_data_types=True,
            ):
                lines += str(result.preview).splitlines()
    if result.fixes:
        lines.append("Layout changes that would take rows out of quarantine:")
        lines += [f"  - {fix}" for fix in result.fixes]
    lines += [f"Note: {note}" for note in result.notes]
    lines.append("Nothing was landed or written.")
    return lines
