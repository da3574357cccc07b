"""The lägesbild report: one self-contained HTML file a prevention coordinator can read.

Written after every successful publish from the served `marts.duckdb`, opened read-only like
any BI reader. An overview of every area, one page per area with its trends, and where each
figure comes from and how fresh it is. Charts are inline SVG: no scripts, nothing fetched, so
the file can be mailed, printed or opened offline. Suppressed cells (too few pupils) show "–".
The text is Swedish: it is written for the municipality's steering group and coordinators.
"""

from __future__ import annotations

import math
import os
import textwrap
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from lagesbild.settings import Paths

TEMPLATES = Path(__file__).parent / "templates"
PALETTE = ("#1f5f8b", "#d9822b", "#5a9e4b", "#a23b72", "#6c6c6c")

# mart_goal_status / mart_goal_progress statuses, as the report says them.
STATUS_LABELS = {
    "target_met": "Målet nått",
    "on_track": "På väg mot målet",
    "baseline": "Utgångsläge",
    "off_track": "Inte på väg mot målet",
    "no_data": "Uppgift saknas",
    "no_indicator": "Ingen indikator än",
}
SECTOR_LABELS = {
    "school": "skola",
    "social services": "socialtjänst",
    "leisure": "fritid",
    "housing": "bostadsbolaget",
    "cross-sector": "alla sektorer",
}
SOURCE_LABELS = {
    "attendance": "närvarosystemen (exporter och SS 12000)",
    "kolada": "Kolada (RKA)",
    "pxweb": "SCB / Folkhälsomyndigheten (PxWeb)",
    "survey": "enkätresultat (inmatade)",
    "housing": "bostadsbolagens arbetsordrar",
}


@dataclass
class Series:
    name: str
    values: list[float | None]  # one per category; None = suppressed or no data


def line_chart(
    title: str,
    categories: list[str],
    series: list[Series],
    unit: str = "%",
    target: float | None = None,
) -> Markup:
    """An SVG line chart; gaps where a value is missing, a dashed line for a target."""
    width, height, left, right, top, bottom = 560, 240, 48, 16, 38, 58
    plot_w, plot_h = width - left - right, height - top - bottom
    known = [v for s in series for v in s.values if v is not None]
    if target is not None:
        known.append(target)
    step = _nice_step(max(known, default=1.0) * 1.1 / 4)
    top_value = 4 * step

    def x(i: int) -> float:
        return left + (plot_w * (i + 0.5) / max(len(categories), 1))

    def y(v: float) -> float:
        return top + plot_h * (1 - v / top_value)

    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{_escape(title)}</title>",
    ]
    for n, title_line in enumerate(textwrap.wrap(title, 78)[:2]):  # long titles on two lines
        parts.append(
            f'<text x="{left}" y="{12 + 13 * n}" class="chart-title">{_escape(title_line)}</text>'
        )
    for line in range(5):  # gridlines and y labels
        value = step * line
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            'class="grid"/>'
            f'<text x="{left - 6}" y="{y(value) + 4:.1f}" class="tick" text-anchor="end">'
            f"{value:.{0 if step == int(step) else 1}f}{_escape(unit)}</text>"
        )
    for i, category in enumerate(categories):
        parts.append(
            f'<text x="{x(i):.1f}" y="{height - bottom + 16}" class="tick" '
            f'text-anchor="middle">{_escape(category)}</text>'
        )
    if target is not None:
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(target):.1f}" y2="{y(target):.1f}" '
            f'class="target"/><text x="{width - right}" y="{y(target) - 4:.1f}" '
            f'class="tick" text-anchor="end">mål {target:g}{_escape(unit)}</text>'
        )
    if not any(v is not None for s in series for v in s.values):
        parts.append(
            f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" class="empty" '
            'text-anchor="middle">Inga uppgifter att visa: för få elever eller ingen data</text>'
        )
    for n, s in enumerate(series):
        colour = PALETTE[n % len(PALETTE)]
        segment: list[str] = []
        segments = [segment]
        for i, v in enumerate(s.values):
            if v is None:
                segment = []
                segments.append(segment)
            else:
                segment.append(f"{x(i):.1f},{y(v):.1f}")
                parts.append(
                    f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3.5" fill="{colour}">'
                    f"<title>{_escape(s.name)} {_escape(categories[i])}: {v:.1f}{unit}</title>"
                    "</circle>"
                )
        for points in segments:
            if len(points) > 1:
                parts.append(
                    f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" '
                    'stroke-width="2.5"/>'
                )
        legend_x = left + n * 180
        parts.append(
            f'<rect x="{legend_x}" y="{height - 22}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{legend_x + 16}" y="{height - 12}" class="tick">{_escape(s.name)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


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


def _number(value, decimals: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}".replace(",", " ")
    return f"{float(value):,.{decimals}f}".replace(",", " ")


def _change(new, old) -> str:
    if new is None or old is None:
        return "–"
    delta = float(new) - float(old)
    return f"{delta:+.1f}"


def build(paths: Paths, municipality_name: str, run_date: date) -> Path:
    """Write `reports/lagesbild/index.html` from the served marts; return its path."""
    con = duckdb.connect(str(paths.marts_db), read_only=True)
    try:
        attendance = _rows(
            con,
            "select area_code, area_name, school_year, term, data_through, pupils, "
            "total_absence_pct, valid_absence_pct, invalid_absence_pct, is_suppressed "
            "from mart_attendance_area_term order by area_code, school_year, term",
        )
        problematic = _rows(
            con,
            "select scope, area_code, area_name, school_year, term, threshold_pct, pupils, "
            "pupils_at_or_above, share_at_or_above_pct "
            "from mart_problematic_absence_area_term order by scope, area_code, term",
        )
        freshness = _rows(con, "select * from mart_source_freshness order by source_layout")
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
            con,
            "select scope, area_code, year, data_through, vandalism_cost_sek, "
            "cost_per_apartment_sek from mart_vandalism_area_year order by area_code, year",
        )
    finally:
        con.close()
    goals = _goal_sections(goal_status, goal_progress)
    years = sorted({r["year"] for r in vandalism})
    year_labels = [_year_label(y, vandalism) for y in years]

    def vandalism_series(scope: str, code: str | None, column: str) -> list[float | None]:
        found = {
            r["year"]: r[column]
            for r in vandalism
            if r["scope"] == scope and (code is None or r["area_code"] == code)
        }
        return [_float(found.get(y)) for y in years]

    terms = sorted({(r["school_year"], r["term"]) for r in attendance})
    term_labels = [t for _, t in terms]
    thresholds = sorted({float(r["threshold_pct"]) for r in problematic})
    areas = sorted({(r["area_code"], r["area_name"]) for r in attendance}, key=lambda a: a[1])

    def share(scope: str, area: str | None, threshold: float) -> list[float | None]:
        found = {
            r["term"]: r["share_at_or_above_pct"]
            for r in problematic
            if r["scope"] == scope
            and (area is None or r["area_code"] == area)
            and float(r["threshold_pct"]) == threshold
        }
        return [None if found.get(t) is None else float(found[t]) for t in term_labels]

    latest_term = term_labels[-1] if term_labels else None
    previous_term = term_labels[-2] if len(term_labels) > 1 else None
    overview, pages = [], []
    for code, name in areas:
        by_term = {r["term"]: r for r in attendance if r["area_code"] == code}
        latest = by_term.get(latest_term, {})
        previous = by_term.get(previous_term, {})
        problem = share("area", code, thresholds[1] if len(thresholds) > 1 else thresholds[0])
        overview.append(
            {
                "code": code,
                "name": name,
                "pupils": _number(latest.get("pupils")),
                "absence": _number(latest.get("total_absence_pct")),
                "change": _change(
                    latest.get("total_absence_pct"), previous.get("total_absence_pct")
                ),
                "problematic": _number(problem[-1] if problem else None),
            }
        )
        absence_series = [
            Series(label, [_float(by_term.get(t, {}).get(column)) for t in term_labels])
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
                "absence_chart": line_chart(
                    f"Frånvaro, % av undervisningstiden — {name}", term_labels, absence_series
                ),
                "problem_chart": line_chart(
                    f"Elever med problematisk frånvaro, % — {name}",
                    term_labels,
                    [Series(f"minst {t:g} %", share("area", code, t)) for t in thresholds],
                ),
                "vandalism_chart": line_chart(
                    f"Skadegörelse hos bostadsbolagen, kr per lägenhet — {name}",
                    year_labels,
                    [
                        Series(
                            "kr per lägenhet",
                            vandalism_series("area", code, "cost_per_apartment_sek"),
                        )
                    ],
                    unit="",
                ),
                "profile": [_profile_row(r) for r in profile if r["area_code"] == code],
                "rows": [
                    {
                        "term": t,
                        "pupils": _number(by_term.get(t, {}).get("pupils")),
                        "absence": _number(by_term.get(t, {}).get("total_absence_pct")),
                        "through": by_term.get(t, {}).get("data_through") or "–",
                    }
                    for t in term_labels
                ],
            }
        )
    municipality_chart = line_chart(
        f"Elever med problematisk frånvaro, % — {municipality_name}",
        term_labels,
        [Series(f"minst {t:g} %", share("municipality", None, t)) for t in thresholds],
    )
    vandalism_chart = line_chart(
        f"Skadegörelse hos bostadsbolagen, kr exkl. moms — {municipality_name}",
        year_labels,
        [Series("kostnad", vandalism_series("municipality", None, "vandalism_cost_sek"))],
        unit="",
    )
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"])
    )
    page = environment.get_template("lagesbild.html.j2").render(
        municipality=municipality_name,
        run_date=run_date,
        latest_term=latest_term,
        previous_term=previous_term,
        overview=overview,
        pages=pages,
        municipality_chart=municipality_chart,
        vandalism_chart=vandalism_chart,
        freshness=freshness,
        thresholds=thresholds,
        goals=goals,
        status_labels=STATUS_LABELS,
        sector_labels=SECTOR_LABELS,
        area_goals={
            code: [g for g in goal_status if g["area_level"] == "area" and g["area_code"] == code]
            for code, _ in areas
        },
    )
    target = paths.reports / "lagesbild" / "index.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".index.{uuid.uuid4().hex}.html")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, target)  # a reader never sees half a report
    return target


def _year_label(year: int, vandalism: list[dict]) -> str:
    """A year still in progress says how far its figures go (e.g. `2026 t.o.m. 10-31`)."""
    through = max((r["data_through"] for r in vandalism if r["year"] == year), default=None)
    if through is None or (through.month, through.day) == (12, 31):
        return str(year)
    return f"{year} t.o.m. {through:%m-%d}"


def _profile_row(row: dict) -> dict:
    return {
        "year": row["year"],
        "inhabitants": _number(row["inhabitants"]),
        "school_year": row["school_year"] or "–",
        "absence": _number(row["school_absence_pct"]),
        "problematic": _number(row["problematic_absence_15_pct"]),
        "per_apartment": _number(row["cost_per_apartment_sek"], 0),
        "per_1000": _number(row["cost_per_1000_inhabitants_sek"], 0),
        "safe": _number(row.get("feel_safe_outdoors_evening")),
        "leisure": _number(row.get("meaningful_leisure")),
    }


def _goal_sections(status: list[dict], progress: list[dict]) -> list[dict]:
    """One section per goal: its municipality status and a chart per indicator."""
    sections = []
    for goal in (g for g in status if g["area_level"] == "municipality"):
        charts = []
        indicator_ids = dict.fromkeys(
            p["indicator_id"] for p in progress if p["goal_id"] == goal["goal_id"]
        )
        for indicator in indicator_ids:
            rows = [
                p
                for p in progress
                if p["goal_id"] == goal["goal_id"] and p["indicator_id"] == indicator
            ]
            latest = rows[-1]
            charts.append(
                {
                    "chart": line_chart(
                        latest["indicator_title"],
                        [r["period"] for r in rows],
                        [Series("kommunen", [_float(r["value"]) for r in rows])],
                        unit="%" if latest["unit"] == "percent" else "",
                        target=_float(latest["target_value"]),
                    ),
                    "status": latest["status"],
                    "baseline": _number(latest["baseline_value"]),
                    "baseline_period": latest["baseline_period"],
                    "target": (
                        f"{_number(latest['target_value'])} ({latest['target_period']})"
                        if latest["target_value"] is not None
                        else f"riktning: {'högre' if latest['higher_is_better'] else 'lägre'}"
                    ),
                    "source": SOURCE_LABELS.get(latest["source"], latest["source"]),
                    "data_through": latest["data_through"] or "–",
                    "preliminary": latest["is_preliminary"],
                }
            )
        sections.append({**goal, "charts": charts})
    return sections


def _float(value) -> float | None:
    return None if value is None else float(value)
