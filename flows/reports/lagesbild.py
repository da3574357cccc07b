"""The lägesbild report: one self-contained HTML file a steering group can decide from.

Written after every successful publish from the served `marts.duckdb`, opened read-only like
any BI reader (and by `lagesbild report`, which can also print it to PDF). At the top: which
sources are behind, then one card per goal (status, trend, latest value, change since the
baseline, target, county / country / similar municipalities, girls / boys), then the detail:
a chart per indicator, the whole municipality, a page per area, sources and freshness.

Charts are inline SVG: no scripts, nothing fetched, so the file can be mailed, printed or
opened offline. Each chart carries its data as text (`<desc>`) and tells its series apart
by markers and dashes as well as colour. Numbers follow Swedish conventions (decimal comma,
space between thousands) and SCB's table symbols: "–" nothing to report, ".." not available
or too uncertain, "×" withheld to protect individuals. The text is Swedish: it is written for
the municipality's steering group and coordinators.
"""

from __future__ import annotations

import math
import os
import textwrap
import uuid
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from lagesbild.settings import Paths

TEMPLATES = Path(__file__).parent / "templates"
CHART_BACKGROUND = "#ffffff"
# Series colours, each at least 3:1 against the chart background (WCAG 1.4.11), and each
# series also has its own marker and dash pattern so colour is never the only difference.
PALETTE = ("#1f5f8b", "#a34e00", "#2e7031", "#8e2a5e", "#4d4d4d")
MARKERS = ("circle", "square", "triangle", "diamond", "circle")
DASHES = ("", "7 4", "2 3", "10 3 2 3", "")
TARGET_COLOUR = "#b00020"

# mart_goal_status / mart_goal_progress statuses, as the report says and explains them,
# in the order of the legend (most favourable first).
STATUSES = {
    "target_met": (
        "Målet nått",
        "Ett målvärde finns och senaste hela perioden når det.",
    ),
    "on_track": (
        "På väg mot målet",
        "Bättre än utgångsläget och inte sämre än förra perioden (en pågående period "
        "jämförs med samma del av tidigare perioder).",
    ),
    "baseline": (
        "Utgångsläge",
        "Senaste värdet är utgångsläget självt: inget att bedöma än.",
    ),
    "preliminary": (
        "Preliminärt",
        "Perioden pågår och kan inte jämföras med samma del av utgångsperioden: ingen "
        "bedömning förrän perioden är hel.",
    ),
    "no_baseline": (
        "Utgångsläge saknas",
        "Det finns inget värde för utgångsperioden, så utvecklingen kan inte bedömas.",
    ),
    "off_track": (
        "Inte på väg mot målet",
        "Inte bättre än utgångsläget, eller sämre än förra perioden.",
    ),
    "no_data": (
        "Uppgift saknas",
        "Senaste värdet saknas eller skyddas (för få personer).",
    ),
    "no_indicator": (
        "Ingen indikator än",
        "Ingen ansluten källa mäter målet ännu.",
    ),
}
STATUS_LABELS = {status: label for status, (label, _) in STATUSES.items()}
SYMBOLS = {  # SCB's table symbols, one meaning each
    "–": "inget finns att redovisa (till exempel inget målvärde, eller källan har inga "
    "jämförelser)",
    "..": "uppgift saknas eller är för osäker för att redovisas",
    "×": "uppgiften skyddas: den gäller för få personer (färre än 5, eller färre än 10 i "
    "underlaget) och skulle kunna peka ut enskilda barn",
}
TREND_WORDS = {"better": "bättre", "worse": "sämre", "unchanged": "oförändrat"}
SECTOR_LABELS = {
    "school": "skola",
    "social services": "socialtjänst",
    "leisure": "fritid",
    "housing": "bostadsbolaget",
    "cross-sector": "alla sektorer",
}
SOURCE_LABELS = {
    "attendance": "skolornas närvarosystem",
    "kolada": "Kolada (RKA)",
    "pxweb": "SCB och Folkhälsomyndigheten",
    "survey": "enkätundersökningar bland unga",
    "housing": "bostadsbolagens arbetsordrar för skadegörelse",
}
ATTENDANCE_SOURCES = {
    "ss12000": "Skolplattformen (SS 12000)",
    "skola24_csv": "Närvaroexport från Skola24",
    "ist_xlsx": "Närvaroexport från IST",
}
FRESHNESS_SOURCES = {
    "kolada": "Kolada (RKA)",
    "pxweb": "SCB och Folkhälsomyndigheten (PxWeb)",
    "survey": "Enkätresultat",
}
LAG_UNITS = {"school_days": "skoldagar", "days": "dagar", "years": "år"}
MONTHS = [
    "januari",
    "februari",
    "mars",
    "april",
    "maj",
    "juni",
    "juli",
    "augusti",
    "september",
    "oktober",
    "november",
    "december",
]
NBSP = "\u00a0"


# -- Swedish number and date formats ------------------------------------------------------


def sv_number(value, decimals: int = 1) -> str:
    """`3966966.96` → `3 966 967`, `71.04` → `71,0`: decimal comma, space for thousands."""
    text = f"{float(value):,.{decimals}f}".replace(",", NBSP).replace(".", ",")
    return text.replace("-", "−") if text.startswith("-") else text


def sv_signed(value, decimals: int = 1) -> str:
    text = sv_number(abs(float(value)), decimals)
    return ("+" if float(value) > 0 else "−" if float(value) < 0 else "±") + text


def sv_date(day: date | None) -> str:
    return "–" if day is None else f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def cell(value, status: str | None = None, decimals: int = 1, suppressed: bool = False) -> str:
    """A table cell with SCB's symbols: × withheld, .. missing."""
    if value is not None:
        return sv_number(value, decimals)
    if status == "withheld" or (status is None and suppressed):
        return "×"
    return ".."


def row_cell(row: dict, column: str, decimals: int = 1) -> str:
    """A mart cell; `<column>_status` (ok | withheld | missing) decides the symbol when the
    mart has it, else the row's is_suppressed."""
    return cell(
        row.get(column),
        row.get(f"{column}_status"),
        decimals,
        bool(row.get("is_suppressed")),
    )


@dataclass
class Scale:
    """How an indicator's values are shown: divisor, unit after a value, axis title."""

    divisor: float
    suffix: str
    axis: str
    decimals: int

    def show(self, value, status: str | None = None, suppressed: bool = False) -> str:
        if value is None:
            return cell(None, status, suppressed=suppressed)
        return f"{sv_number(float(value) / self.divisor, self.decimals)}{self.suffix}"


def scale_for(unit: str, values: list[float]) -> Scale:
    if unit == "percent":
        return Scale(1, f"{NBSP}%", "procent (%)", 1)
    if unit == "SEK":
        top = max((abs(v) for v in values), default=0)
        if top >= 1_000_000:
            return Scale(1_000_000, f"{NBSP}mnkr", "miljoner kronor (mnkr)", 2)
        if top >= 10_000:
            return Scale(1_000, f"{NBSP}tkr", "tusen kronor (tkr)", 0)
        return Scale(1, f"{NBSP}kr", "kronor (kr)", 0)
    swedish = {
        "per 100 000 inhabitants": "per 100 000 invånare",
        "per inhabitant 13-16": "per invånare 13–16 år",
    }.get(unit, unit)
    return Scale(1, f"{NBSP}{swedish}", swedish, 1)


# -- charts ------------------------------------------------------------------------------


@dataclass
class Series:
    name: str
    values: list[float | None]  # one per category; None = withheld or no data
    statuses: list[str | None] = field(default_factory=list)  # ok | withheld | missing


def _marker(
    kind: str, cx: float, cy: float, colour: str, tip: str, css: str = "point", hollow=False
) -> str:
    """A data point's marker (`point`) or its copy in the legend (`legend-marker`); hollow
    for a period in progress."""
    title = f"<title>{_escape(tip)}</title>"
    paint = (
        f'fill="{CHART_BACKGROUND}" stroke="{colour}" stroke-width="2"'
        if hollow
        else f'fill="{colour}" stroke="{CHART_BACKGROUND}" stroke-width="1"'
    )
    common = f'class="{css}{" partial" if hollow else ""}" {paint}'
    if kind == "square":
        return (
            f'<rect x="{cx - 4:.1f}" y="{cy - 4:.1f}" width="8" height="8" {common}>{title}</rect>'
        )
    if kind == "triangle":
        points = f"{cx:.1f},{cy - 5:.1f} {cx + 5:.1f},{cy + 4:.1f} {cx - 5:.1f},{cy + 4:.1f}"
        return f'<polygon points="{points}" {common}>{title}</polygon>'
    if kind == "diamond":
        points = " ".join(
            f"{px:.1f},{py:.1f}"
            for px, py in ((cx, cy - 5.5), (cx + 5.5, cy), (cx, cy + 5.5), (cx - 5.5, cy))
        )
        return f'<polygon points="{points}" {common}>{title}</polygon>'
    return f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4.5" {common}>{title}</circle>'


def line_chart(
    title: str,
    categories: list[str],
    series: list[Series],
    scale: Scale,
    target: float | None = None,
) -> Markup:
    """An SVG line chart sized for reading on a phone: text 13 units in a 400-unit-wide
    view box (≥ 11 px at 390 px), the y-axis margin as wide as its longest label, the unit
    in the axis title, gaps where a value is missing, a dashed line for a target and the
    data as text in `<desc>`. Categories may have a second line after a newline; one whose
    second line says `t.o.m.` is a period in progress: a hollow marker, not joined to the
    whole periods by a line (the eye would compare a part year with whole ones)."""
    title_lines = textwrap.wrap(title, 44)  # 14-unit bold text: ~8.5 units a character
    width, right, top = 400, 12, 30 + 16 * len(title_lines)
    known = [v / scale.divisor for s in series for v in s.values if v is not None]
    if target is not None:
        known.append(target / scale.divisor)
    low = min(0.0, min(known, default=0.0))
    high = max(known, default=1.0)
    step = _nice_step((high - low) / 4 or 1.0)
    bottom_value = step * math.floor(low / step) if low < 0 else 0.0
    lines = max(1, math.ceil((high - bottom_value) / step - 1e-9))  # 4 steps, 5 at most
    top_value = bottom_value + lines * step
    step_decimals = 0 if step == int(step) else 1 if step * 10 == int(step * 10) else 2
    ticks = [bottom_value + step * line for line in range(lines + 1)]
    tick_labels = [sv_number(t, step_decimals) for t in ticks]
    left = 14 + 7.6 * max(len(t) for t in tick_labels)  # 13-unit text: ~7.6 units a digit
    two_line = any("\n" in c for c in categories)
    legend_rows = math.ceil(len(series) / 2) if len(series) > 1 else 0
    plot_h = 150
    height = top + plot_h + (40 if two_line else 26) + 20 * legend_rows + 6
    plot_w = width - left - right

    def x(i: int) -> float:
        return left + (plot_w * (i + 0.5) / max(len(categories), 1))

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - bottom_value) / (top_value - bottom_value))

    ident = f"c{uuid.uuid4().hex[:10]}"
    description = _chart_description(categories, series, scale, target)
    parts = [
        f'<svg class="chart" role="img" aria-labelledby="{ident}-t {ident}-d" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{ident}-t">{_escape(title)}</title>',
        f'<desc id="{ident}-d">{_escape(description)}</desc>',
        f'<rect width="{width}" height="{height}" fill="{CHART_BACKGROUND}"/>',
    ]
    for n, title_line in enumerate(title_lines):
        parts.append(
            f'<text x="8" y="{16 + 16 * n}" class="chart-title">{_escape(title_line)}</text>'
        )
    parts.append(f'<text x="8" y="{top - 8}" class="axis-title">{_escape(scale.axis)}</text>')
    for value, label in zip(ticks, tick_labels, strict=True):  # gridlines and y labels
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            'class="grid"/>'
            f'<text x="{left - 6:.1f}" y="{y(value) + 4.5:.1f}" class="tick" text-anchor="end">'
            f"{label}</text>"
        )
    every = max(1, math.ceil(len(categories) * 44 / plot_w))  # a year label is ~40 units
    for i, category in enumerate(categories):
        if (len(categories) - 1 - i) % every:
            continue  # thin out from the latest period backwards
        first, _, second = category.partition("\n")
        parts.append(
            f'<text x="{x(i):.1f}" y="{top + plot_h + 18}" class="tick" text-anchor="middle">'
            f"{_escape(first)}</text>"
        )
        if second:
            parts.append(
                f'<text x="{x(i):.1f}" y="{top + plot_h + 33}" class="tick" '
                f'text-anchor="middle">{_escape(second)}</text>'
            )
    if target is not None:
        ty = y(target / scale.divisor)
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{ty:.1f}" y2="{ty:.1f}" '
            f'class="target" stroke="{TARGET_COLOUR}"/><text x="{width - right}" '
            f'y="{ty - 5:.1f}" class="tick target-label" text-anchor="end">mål '
            f"{_escape(scale.show(target))}</text>"
        )
    if not known or all(v is None for s in series for v in s.values):
        parts.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" class="empty" '
            'text-anchor="middle">Inga värden att visa (..)</text>'
        )
    for n, s in enumerate(series):
        colour, kind, dash = PALETTE[n % 5], MARKERS[n % 5], DASHES[n % 5]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        segment: list[str] = []
        segments = [segment]
        markers = []
        for i, v in enumerate(s.values):
            partial = "\nt.o.m." in categories[i]
            if v is None or partial:
                segment = []
                segments.append(segment)
            if v is None:
                continue
            point = (x(i), y(v / scale.divisor))
            if not partial:
                segment.append(f"{point[0]:.1f},{point[1]:.1f}")
            label = categories[i].replace("\n", " ")
            markers.append(
                _marker(kind, *point, colour, f"{s.name} {label}: {scale.show(v)}", hollow=partial)
            )
        for points in segments:
            if len(points) > 1:
                parts.append(
                    f'<polyline class="series" points="{" ".join(points)}" fill="none" '
                    f'stroke="{colour}" stroke-width="2.5"{dash_attr}/>'
                )
        parts.extend(markers)
        if len(series) > 1:  # a legend with the series' line and marker
            lx = 8 + (n % 2) * 196
            ly = height - 6 - 20 * (legend_rows - 1 - n // 2) - 4
            parts.append(
                f'<line x1="{lx}" x2="{lx + 26}" y1="{ly - 4}" y2="{ly - 4}" stroke="{colour}" '
                f'stroke-width="2.5"{dash_attr}/>'
                + _marker(kind, lx + 13, ly - 4, colour, s.name, "legend-marker")
                + f'<text x="{lx + 32}" y="{ly}" class="tick legend">{_escape(s.name)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def _chart_description(
    categories: list[str], series: list[Series], scale: Scale, target: float | None
) -> str:
    lines = []
    for s in series:
        statuses = s.statuses or [None] * len(s.values)
        values = "; ".join(
            f"{c.replace(chr(10), ' ')}: {scale.show(v, status)}"
            for c, v, status in zip(categories, s.values, statuses, strict=True)
        )
        lines.append(f"{s.name}: {values}.")
    if target is not None:
        lines.append(f"Mål: {scale.show(target)}.")
    return " ".join(lines)


def _nice_step(raw: float) -> float:
    """The smallest 1, 2, 2.5 or 5 × 10^n at or above `raw`: round gridline values."""
    if raw <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


def _escape(text: str) -> str:
    return str(Markup.escape(text))


def _rows(con: duckdb.DuckDBPyConnection, query: str) -> list[dict]:
    cursor = con.execute(query)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _float(value) -> float | None:
    return None if value is None else float(value)


# -- the report --------------------------------------------------------------------------


def build(paths: Paths, municipality_name: str, run_date: date) -> Path:
    """Write `reports/lagesbild/index.html` from the served marts; return its path."""
    page = render(paths, municipality_name, run_date)
    target = paths.reports / "lagesbild" / "index.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".index.{uuid.uuid4().hex}.html")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, target)  # a reader never sees half a report
    return target


def render(paths: Paths, municipality_name: str, run_date: date) -> str:
    con = duckdb.connect(str(paths.marts_db), read_only=True)
    try:
        attendance = _rows(
            con,
            "select * from mart_attendance_area_term order by area_code, school_year, term",
        )
        problematic = _rows(
            con,
            "select * from mart_problematic_absence_area_term order by scope, area_code, term",
        )
        freshness = _rows(con, "select * from mart_source_freshness order by source_type, source")
        goal_status = _rows(
            con,
            "select * from mart_goal_status order by display_order, area_level, area_code",
        )
        goal_progress = _rows(
            con,
            "select * from mart_goal_progress where area_level = 'municipality' "
            "order by goal_id, indicator_id, period_start",
        )
        profile = _rows(con, "select * from mart_area_profile order by area_code, year")
        vandalism = _rows(
            con, "select * from mart_vandalism_area_year order by scope, area_code, year"
        )
    finally:
        con.close()

    years = sorted({r["year"] for r in vandalism})
    year_labels = [_year_label(y, vandalism) for y in years]

    def vandalism_series(name: str, scope: str, code: str | None, column: str) -> Series:
        found = {
            r["year"]: r
            for r in vandalism
            if r["scope"] == scope and (code is None or r["area_code"] == code)
        }
        return Series(
            name,
            [_float(found.get(y, {}).get(column)) for y in years],
            [_status(found.get(y), column) for y in years],
        )

    terms = sorted({(r["school_year"], r["term"]) for r in attendance})
    term_labels = [t for _, t in terms]
    thresholds = sorted({float(r["threshold_pct"]) for r in problematic})
    areas = sorted({(r["area_code"], r["area_name"]) for r in attendance}, key=lambda a: a[1])
    percent = scale_for("percent", [])

    def share(name: str, scope: str, area: str | None, threshold: float) -> Series:
        found = {
            r["term"]: r
            for r in problematic
            if r["scope"] == scope
            and (area is None or r["area_code"] == area)
            and float(r["threshold_pct"]) == threshold
        }
        return Series(
            name,
            [_float(found.get(t, {}).get("share_at_or_above_pct")) for t in term_labels],
            [_status(found.get(t), "share_at_or_above_pct") for t in term_labels],
        )

    main_threshold = thresholds[1] if len(thresholds) > 1 else thresholds[0] if thresholds else 15
    latest_term = term_labels[-1] if term_labels else None
    previous_term = term_labels[-2] if len(term_labels) > 1 else None
    overview, pages = [], []
    per_apartment = Scale(1, f"{NBSP}kr", "kronor per lägenhet", 0)
    for code, name in areas:
        by_term = {r["term"]: r for r in attendance if r["area_code"] == code}
        latest = by_term.get(latest_term, {})
        previous = by_term.get(previous_term, {})
        problem = share("", "area", code, main_threshold)
        change = (
            sv_signed(float(latest["total_absence_pct"]) - float(previous["total_absence_pct"]))
            if latest.get("total_absence_pct") is not None
            and previous.get("total_absence_pct") is not None
            else ".."
        )
        overview.append(
            {
                "code": code,
                "name": name,
                "pupils": row_cell(latest, "pupils", 0) if latest else "..",
                "absence": row_cell(latest, "total_absence_pct") if latest else "..",
                "change": change,
                "problematic": cell(problem.values[-1], problem.statuses[-1])
                if problem.values
                else "..",
            }
        )
        absence_series = [
            Series(
                label,
                [_float(by_term.get(t, {}).get(column)) for t in term_labels],
                [_status(by_term.get(t), column) for t in term_labels],
            )
            for label, column in (
                ("total frånvaro", "total_absence_pct"),
                ("giltig", "valid_absence_pct"),
                ("ogiltig", "invalid_absence_pct"),
            )
        ]
        pages.append(
            {
                "code": code,
                "name": name,
                "charts": [
                    line_chart(
                        f"Frånvaro, andel av undervisningstiden — {name}",
                        term_labels,
                        absence_series,
                        percent,
                    ),
                    line_chart(
                        f"Elever med problematisk frånvaro — {name}",
                        term_labels,
                        [share(f"minst {sv_number(t, 0)} %", "area", code, t) for t in thresholds],
                        percent,
                    ),
                    line_chart(
                        f"Skadegörelse hos bostadsbolagen per lägenhet — {name}",
                        year_labels,
                        [
                            vandalism_series(
                                "kr per lägenhet", "area", code, "cost_per_apartment_sek"
                            )
                        ],
                        per_apartment,
                    ),
                ],
                "profile": [_profile_row(r) for r in profile if r["area_code"] == code],
                "profile_note": _profile_note([r for r in profile if r["area_code"] == code]),
                "rows": [
                    {
                        "term": t,
                        "pupils": row_cell(by_term[t], "pupils", 0) if t in by_term else "..",
                        "absence": row_cell(by_term[t], "total_absence_pct")
                        if t in by_term
                        else "..",
                        "through": sv_date(by_term.get(t, {}).get("data_through")),
                    }
                    for t in term_labels
                ],
            }
        )
    municipality_costs = [
        float(r["vandalism_cost_sek"])
        for r in vandalism
        if r["scope"] == "municipality" and r["vandalism_cost_sek"] is not None
    ]
    municipality_charts = [
        line_chart(
            f"Elever med problematisk frånvaro — {municipality_name}",
            term_labels,
            [share(f"minst {sv_number(t, 0)} %", "municipality", None, t) for t in thresholds],
            percent,
        ),
        line_chart(
            f"Skadegörelse hos bostadsbolagen, kostnad exkl. moms — {municipality_name}",
            year_labels,
            [vandalism_series("kostnad", "municipality", None, "vandalism_cost_sek")],
            scale_for("SEK", municipality_costs),
        ),
    ]
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"])
    )
    # the labels and symbols are the same in every report: template globals
    environment.globals.update(
        statuses=STATUSES, status_labels=STATUS_LABELS, symbols=SYMBOLS, sector_labels=SECTOR_LABELS
    )
    goals = _goal_sections(goal_status, goal_progress)
    return environment.get_template("lagesbild.html.j2").render(
        municipality=municipality_name,
        run_date=run_date,
        run_date_text=sv_date(run_date),
        latest_term=latest_term,
        previous_term=previous_term,
        overview=overview,
        pages=pages,
        municipality_charts=municipality_charts,
        alerts=_freshness_alerts(freshness),
        freshness=[_freshness_row(r) for r in freshness],
        thresholds=[sv_number(t, 0) for t in thresholds],
        main_threshold=sv_number(main_threshold, 0),
        goals=goals,
        goal_counts=_count_statuses(goals),
        area_goals={
            code: [g for g in goal_status if g["area_level"] == "area" and g["area_code"] == code]
            for code, _ in areas
        },
    )


def _status(row: dict | None, column: str) -> str | None:
    if row is None:
        return "missing"
    if row.get(f"{column}_status"):
        return row[f"{column}_status"]
    if row.get(column) is not None:
        return "ok"
    return "withheld" if row.get("is_suppressed") else "missing"


def _year_label(year: int, vandalism: list[dict]) -> str:
    """A year still in progress says how far its figures go (`2026` / `t.o.m. 30 juni`)."""
    through = max((r["data_through"] for r in vandalism if r["year"] == year), default=None)
    if through is None or (through.month, through.day) == (12, 31):
        return str(year)
    return f"{year}\nt.o.m. {through.day} {MONTHS[through.month - 1]}"


def _period_label(row: dict) -> str:
    through = row["data_through"]
    if row["is_partial_period"] and through is not None:
        return f"{row['period']}\nt.o.m. {through.day} {MONTHS[through.month - 1]}"
    return str(row["period"])


def _profile_note(rows: list[dict]) -> str:
    """A year in progress in the profile: its vandalism covers only part of the year."""
    for row in rows:
        through = row.get("vandalism_data_through")
        if through is not None and (through.month, through.day) != (12, 31):
            return f"Skadegörelse {row['year']} till och med {sv_date(through)}."
    return ""


def _profile_row(row: dict) -> dict:
    return {
        "year": row["year"],
        "inhabitants": row_cell(row, "inhabitants", 0),
        "school_year": row["school_year"] or "–",
        "absence": row_cell(row, "school_absence_pct"),
        "problematic": row_cell(row, "problematic_absence_15_pct"),
        "per_apartment": row_cell(row, "cost_per_apartment_sek", 0),
        "per_1000": row_cell(row, "cost_per_1000_inhabitants_sek", 0),
        "safe": row_cell(row, "feel_safe_outdoors_evening"),
        "leisure": row_cell(row, "meaningful_leisure"),
    }


def _freshness_row(row: dict) -> dict:
    if row["source_type"] == "attendance":
        name = ATTENDANCE_SOURCES.get(row["source"], f"Närvaroexport ({row['source']})")
    elif row["source_type"] == "housing":
        name = f"Bostadsbolaget {row['source'].capitalize()}: arbetsordrar"
    else:
        name = FRESHNESS_SOURCES.get(row["source"], row["source"])
    unit = LAG_UNITS.get(row["lag_unit"], row["lag_unit"])
    latest = row["latest_period"] if row["latest_period"] else sv_date(row["latest_day"])
    if row["freshness_status"] == "current":
        verdict = "aktuell"
    elif row["freshness_status"] == "calendar_outdated":
        verdict = f"kan inte bedömas: skolkalendern slutar {sv_date(row['calendar_through'])}"
    else:
        verdict = f"släpar efter: {row['lag']} {unit} (högst {row['max_lag']})"
    return {
        "name": name,
        "latest": latest,
        # school days after the calendar's end are unknown: not "0"
        "lag": ".." if row["freshness_status"] == "calendar_outdated" else f"{row['lag']} {unit}",
        "rule": f"högst {row['max_lag']} {unit}",
        "status": row["freshness_status"],
        "verdict": verdict,
    }


def _freshness_alerts(freshness: list[dict]) -> list[str]:
    """What the reader must know before trusting the figures: one line per problem."""
    alerts = []
    outdated = [r for r in freshness if r["freshness_status"] == "calendar_outdated"]
    if outdated:
        latest = max(r["latest_day"] for r in outdated)
        alerts.append(
            f"Skolkalendern slutar {sv_date(outdated[0]['calendar_through'])}: det går inte "
            "att bedöma om närvarodata är aktuella. Senaste dag med närvarodata är "
            f"{sv_date(latest)}; skolans siffror gäller fram till dess. Lägg in det nya "
            "läsåret i skolkalendern."
        )
    for row in freshness:
        if row["freshness_status"] != "behind":
            continue
        shown = _freshness_row(row)
        alerts.append(
            f"{shown['name']}: senaste uppgift {shown['latest']}, {shown['lag']} sedan "
            f"(får vara {shown['rule']}). Siffrorna efter det datumet saknas."
        )
    return alerts


def _goal_sections(status: list[dict], progress: list[dict]) -> list[dict]:
    """One card per goal (municipality): each indicator's latest value and how it is judged,
    and the detail charts."""
    sections = []
    for goal in (g for g in status if g["area_level"] == "municipality"):
        indicators = []
        ids = dict.fromkeys(p["indicator_id"] for p in progress if p["goal_id"] == goal["goal_id"])
        for indicator in ids:
            rows = [
                p
                for p in progress
                if p["goal_id"] == goal["goal_id"] and p["indicator_id"] == indicator
            ]
            indicators.append(_indicator_summary(rows))
        sections.append({**goal, "indicators": indicators})
    return sections


def _indicator_summary(rows: list[dict]) -> dict:
    latest = rows[-1]
    scale = scale_for(latest["unit"], [float(r["value"]) for r in rows if r["value"] is not None])
    baseline_label = latest["baseline_period"]
    same = latest["comparison_basis"] == "same_period"
    if same and latest["previous_through"] is not None:
        through = latest["previous_through"]
        baseline_label += f" (samma period, t.o.m. {through.day} {MONTHS[through.month - 1]})"
    trend = latest["trend"]
    if trend is None:
        trend_text, arrow = "..", ""
    else:
        previous_value = float(latest["previous_value"])
        arrow = (
            "→" if trend == "unchanged" else "↑" if float(latest["value"]) > previous_value else "↓"
        )
        versus = f"samma period {latest['previous_period']}" if same else latest["previous_period"]
        change = (
            f"{sv_signed(float(latest['value']) - previous_value)}{NBSP}procentenheter"
            if latest["unit"] == "percent"
            else f"{sv_signed(latest['change_since_previous_pct'])}{NBSP}%"
            if latest["change_since_previous_pct"] is not None
            else ""
        )
        trend_text = f"{TREND_WORDS[trend]} än {versus}" + (f" ({change})" if change else "")
    if latest["change_since_baseline"] is None or latest["status"] == "baseline":
        since = "–" if latest["status"] == "baseline" else ".."
    elif latest["unit"] == "percent":
        since = f"{sv_signed(latest['change_since_baseline'])}{NBSP}procentenheter"
    elif latest["unit"] == "SEK" and latest["change_since_baseline_pct"] is not None:
        since = f"{sv_signed(latest['change_since_baseline_pct'])}{NBSP}%"
    else:
        since = sv_signed(latest["change_since_baseline"] / scale.divisor, scale.decimals)
        since += scale.suffix

    def compared(column: str) -> str:
        if latest["source"] in ("attendance", "housing"):
            return "–"  # the municipality's own data: no county or national figure exists
        return scale.show(latest[column]) if latest[column] is not None else ".."

    def by_sex(column: str) -> str:
        status = latest[f"{column}_status"]
        if latest["source"] in ("attendance", "housing"):
            return "–"
        return scale.show(latest[column], status)

    target = (
        f"{scale.show(latest['target_value'])} ({latest['target_period']})"
        if latest["target_value"] is not None
        else f"– (riktning: {'högre' if latest['higher_is_better'] else 'lägre'})"
    )
    return {
        "title": latest["indicator_title"],
        "status": latest["status"],
        "period": _period_label(latest).replace("\n", " "),
        "value": scale.show(latest["value"], latest["value_status"]),
        "arrow": arrow,
        "trend": trend,
        "trend_text": trend_text,
        "since": since,
        "baseline": scale.show(latest["baseline_value"])
        if latest["baseline_value"] is not None
        else "..",
        "baseline_label": baseline_label,
        "target": target,
        "county": compared("county_value"),
        "country": compared("national_value"),
        "similar": compared("comparison_group_value"),
        "girls": by_sex("value_girls"),
        "boys": by_sex("value_boys"),
        "source": SOURCE_LABELS.get(latest["source"], latest["source"]),
        "data_through": sv_date(latest["data_through"]),
        "preliminary": latest["is_preliminary"],
        "partial": latest["is_partial_period"],
        "chart": line_chart(
            latest["indicator_title"],
            [_period_label(r) for r in rows],
            [
                Series(
                    "kommunen",
                    [_float(r["value"]) for r in rows],
                    [r["value_status"] for r in rows],
                )
            ],
            scale,
            target=_float(latest["target_value"]),
        ),
    }


def _count_statuses(goals: list[dict]) -> list[tuple[str, int]]:
    counts = {s: sum(1 for g in goals if g["status"] == s) for s in STATUSES}
    return [(s, n) for s, n in counts.items() if n]


# -- PDF ---------------------------------------------------------------------------------


class ChromiumMissing(RuntimeError):
    """No Chromium to print the PDF with."""


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    import shutil

    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def print_pdf(html: Path, pdf: Path, timeout: float = 180) -> Path:
    """Print the report to an A4 PDF with headless Chromium (the page's print stylesheet
    decides the layout). Raises ChromiumMissing when no Chromium is installed."""
    import subprocess
    import tempfile

    chromium = find_chromium()
    if chromium is None:
        raise ChromiumMissing(
            "Chromium is not installed, so no PDF can be printed. Install it (Debian/Ubuntu: "
            "`apt-get install chromium`), or open the HTML report in a browser and print it "
            "to PDF (A4)."
        )
    pdf.parent.mkdir(parents=True, exist_ok=True)
    tmp = pdf.with_name(f".{pdf.stem}.{uuid.uuid4().hex}.pdf")
    with tempfile.TemporaryDirectory(prefix="lagesbild-chromium-") as profile:
        command = [
            chromium,
            "--headless",
            "--no-sandbox",  # runs as root in containers and CI
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={tmp}",
            html.resolve().as_uri(),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0 or not tmp.exists() or tmp.stat().st_size == 0:
        tmp.unlink(missing_ok=True)
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"Chromium could not print {html} to PDF: {last}")
    os.replace(tmp, pdf)
    return pdf
