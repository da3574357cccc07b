"""Work-order exports of Ekdala kommun's two (fictional) housing companies, deterministic.

Companies and their exports (layouts in connectors/housing_export/layouts.yml)
    * **Ekdalahem AB** (the municipal housing company): a FAST2-style CSV (cp1252, `;`) each
      month with every order changed that month in its state at month end; amounts
      *including* 25 % VAT as `1 234,50 kr`; registration dates mostly `2025-03-04`, some
      `20250304`. After each full year it re-exports the whole year (`..._helar.csv`).
    * **Ekbo Fastigheter AB**: an XLSX from another system each quarter, year to date: every
      order reported or changed in the year, in its state at quarter end; amounts *excluding*
      VAT as number cells; dates as Excel date cells, some typed as text `04.03.2025`.

Orders
    Each property (reference/properties.csv: company, property, area, apartments) gets
    vandalism orders at an area-specific rate per apartment and year (`AREA_VANDALISM`), with
    spring (April-May) and autumn (September-October) peaks (`SEASON`), plus New Year fires
    (31 December and 1 January), and orders that are not vandalism (water leaks, blocked
    drains...) at one rate everywhere. An order is registered (cost 0), completed some days
    later with a cost, and for a third of the orders invoiced later with an updated cost;
    3 % are cancelled (cost 0). About 6 % of completed orders get a credit note (a negative
    amount, its own credit-note number) weeks later. Versions and credit notes dated after
    the end of the generated period are not exported. Costs excluding VAT are whole multiples
    of 4 öre, so the amounts including VAT are exact in öre.

Dirty rows (extra rows; the first file of each company has one of each kind, every other
file one more of a kind drawn at random): each is a copy of a valid order row of the file
with a fresh order number and one defect: ``missing_order_id``, ``invalid_date``,
``invalid_amount``, ``unmapped_category``, ``unknown_property``, ``negative_total`` (a
negative cost on an order that is not a credit note), ``implausible_amount`` (12.5 MSEK),
``completed_before_reported``, or ``duplicate`` (an exact copy of a valid row).

Ground truth (with ``truth_dir``): ``housing_orders.parquet``, one row per order as the
exports leave it: company, order_id, reported_date, property_id, area_code, category,
status (canonical), cost_excl_vat_ore (latest version + credit notes); and
``housing_dirty_rows.csv`` (file, 1-based data row number, kind).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import xlsxwriter

EKDALAHEM, EKBO = "ekdalahem", "ekbo"

# company, property id, name, area code, apartments
PROPERTIES = (
    (EKDALAHEM, "Eken 1", "Ekdala centrum", "1299C0010", 240),
    (EKDALAHEM, "Eken 4", "Torget", "1299C0010", 120),
    (EKDALAHEM, "Kajen 2", "Västra hamnen", "1299C0020", 180),
    (EKDALAHEM, "Björken 12", "Björkhagen norra", "1299C0040", 310),
    (EKDALAHEM, "Björken 14", "Björkhagen södra", "1299C0040", 260),
    (EKDALAHEM, "Norrgården 3", "Norrby", "1299C0050", 220),
    (EKDALAHEM, "Åsen 5:1", "Åsen", "1299B0010", 90),
    (EKDALAHEM, "Söder 1:7", "Söderslätt", "1299A0010", 60),
    (EKBO, "EKBO-011", "Ekbacken 1", "1299C0030", 150),
    (EKBO, "EKBO-012", "Ekbacken 2", "1299C0030", 130),
    (EKBO, "EKBO-021", "Björkhagen väst", "1299C0040", 170),
    (EKBO, "EKBO-031", "Norrby torg", "1299C0050", 140),
    (EKBO, "EKBO-041", "Lillö strand", "1299B0020", 70),
)
BUILDINGS = ("01", "02", "03")
ENTRANCES = ("A", "B", "C", "D")

# Vandalism orders per apartment and year, by area: the differences the marts should show.
AREA_VANDALISM = {
    "1299C0040": 0.45,
    "1299C0050": 0.35,
    "1299C0010": 0.25,
    "1299C0030": 0.2,
    "1299C0020": 0.15,
    "1299B0010": 0.12,
    "1299B0020": 0.08,
    "1299A0010": 0.05,
}
NOT_VANDALISM = 0.3  # other fault reports per apartment and year, everywhere
SEASON = np.array([0.8, 0.7, 0.9, 1.3, 1.4, 1.0, 0.7, 0.8, 1.3, 1.4, 1.0, 0.9])
NEW_YEAR_FIRES = 0.006  # fires per apartment on 31 December and on 1 January
VANDALISM_MIX = {
    "graffiti": 0.35,
    "broken_glass": 0.25,
    "doors_and_locks": 0.2,
    "other_vandalism": 0.15,
    "fire": 0.05,
}
MEDIAN_COST_SEK = {  # excluding VAT
    "graffiti": 2500,
    "broken_glass": 4000,
    "doors_and_locks": 3000,
    "other_vandalism": 2000,
    "fire": 25000,
    "not_vandalism": 1800,
}
CANCELLED = 0.03
UPDATED = 0.33  # orders invoiced later with an updated cost
CREDITED = 0.06  # completed orders that get a credit note

# Each company's own labels for the canonical categories and statuses (layouts.yml maps back).
LABELS = {
    EKDALAHEM: {
        "graffiti": ["Klotter", "Klotter/tag"],
        "broken_glass": ["Glaskross"],
        "fire": ["Brand", "Anlagd brand"],
        "doors_and_locks": ["Dörr/lås skadegörelse"],
        "other_vandalism": ["Skadegörelse övrigt"],
        "not_vandalism": ["Vattenläcka", "Stopp i avlopp", "Belysning ur funktion", "Tvättstuga"],
    },
    EKBO: {
        "graffiti": ["KL"],
        "broken_glass": ["GK"],
        "fire": ["BR"],
        "doors_and_locks": ["DL"],
        "other_vandalism": ["SK"],
        "not_vandalism": ["SL", "VS", "UH"],
    },
}
STATUS_LABELS = {
    EKDALAHEM: {
        "registered": "REG",
        "completed": "UTFÖRD",
        "invoiced": "ÖVERF",
        "cancelled": "MAK",
    },
    EKBO: {
        "registered": "Registrerad",
        "completed": "Klar",
        "invoiced": "Fakturerad",
        "cancelled": "Makulerad",
    },
}
EKDALAHEM_HEADER = (
    "Arbetsorder",
    "Typ",
    "Registrerad",
    "Utförd",
    "Ändrad",
    "Fastighet",
    "Byggnad",
    "Uppgång",
    "Status",
    "Fras",
    "Beskrivning",
    "Anmälare",
    "Kreditnota",
    "Kostnad inkl moms",
)
EKBO_HEADER = (
    "Ordernr",
    "Anmäld",
    "Klar",
    "Objekt",
    "Hus",
    "Orsak",
    "Status",
    "Kreditfaktura",
    "Belopp exkl moms",
    "Kommentar",
)
DIRTY_KINDS = (
    "missing_order_id",
    "invalid_date",
    "invalid_amount",
    "unmapped_category",
    "unknown_property",
    "negative_total",
    "implausible_amount",
    "completed_before_reported",
    "duplicate",
)
XLSX_CREATED = datetime(2026, 1, 1)
STREAM_ORDERS, STREAM_DIRTY = 101, 102


@dataclass
class Version:
    modified: datetime
    status: str  # canonical
    cost_ore: int  # excl. VAT
    completed: date | None


@dataclass
class Order:
    company: str
    order_id: str
    property_id: str
    area_code: str
    building: str
    entrance: str
    reported: datetime
    category: str
    label: str
    versions: list[Version] = field(default_factory=list)
    credits: list[tuple[str, datetime, int]] = field(default_factory=list)  # id, date, öre

    def state(self, at: datetime) -> Version | None:
        seen = [v for v in self.versions if v.modified <= at]
        return seen[-1] if seen else None


@dataclass
class HousingSummary:
    files: list[Path] = field(default_factory=list)
    orders: int = 0
    dirty_rows: dict[str, int] = field(default_factory=dict)


def period(last_school_year: int, through: date | None) -> tuple[date, date]:
    """January of the year before the last school year's autumn, through its June (or through)."""
    end = through or date(last_school_year + 1, 6, 30)
    return date(last_school_year - 1, 1, 1), end


def generate_housing(
    out_dir: Path,
    *,
    seed: int,
    start: date,
    end: date,
    truth_dir: Path | None = None,
) -> HousingSummary:
    """Write properties.csv, both companies' exports and (optionally) the ground truth."""
    summary = HousingSummary(dirty_rows=dict.fromkeys(DIRTY_KINDS, 0))
    summary.files.append(_write_properties(out_dir / "reference" / "properties.csv"))
    cutoff = datetime.combine(end, datetime.max.time())
    orders = _orders(np.random.default_rng([seed, STREAM_ORDERS]), start, end)
    dirty_log: list[tuple[str, int, str]] = []
    rng = np.random.default_rng([seed, STREAM_DIRTY])
    seen: set[str] = set()
    for path, rows, write in [
        *_ekdalahem_files(orders, start, end),
        *_ekbo_files(orders, start, end),
    ]:
        company = EKDALAHEM if path.suffix == ".csv" else EKBO
        first = company not in seen
        seen.add(company)
        kinds = list(DIRTY_KINDS) if first else [DIRTY_KINDS[rng.integers(len(DIRTY_KINDS))]]
        rows, row_kinds = _add_dirty_rows(rng, rows, kinds, company, len(dirty_log))
        write(out_dir / path, rows)
        summary.files.append(out_dir / path)
        for number, kind in enumerate(row_kinds, start=1):
            if kind:
                dirty_log.append((path.as_posix(), number, kind))
                summary.dirty_rows[kind] += 1
    exported = [o for o in orders if o.state(cutoff) is not None]
    summary.orders = len(exported)
    if truth_dir is not None:
        truth_dir.mkdir(parents=True, exist_ok=True)
        _truth(exported, cutoff).write_parquet(truth_dir / "housing_orders.parquet")
        with (truth_dir / "housing_dirty_rows.csv").open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(("file", "row_number", "kind"))
            writer.writerows(sorted(dirty_log))
        summary.files += [
            truth_dir / "housing_orders.parquet",
            truth_dir / "housing_dirty_rows.csv",
        ]
    return summary


# --- orders ------------------------------------------------------------------------------


def _cost_ore(rng: np.random.Generator, category: str) -> int:
    sek = MEDIAN_COST_SEK[category] * rng.lognormal(0.0, 0.6)
    return max(1, round(sek * 25)) * 4  # öre, a multiple of 4: VAT of 25 % is exact


def _orders(rng: np.random.Generator, start: date, end: date) -> list[Order]:
    orders: list[Order] = []
    categories = list(VANDALISM_MIX)
    weights = np.array(list(VANDALISM_MIX.values()))
    day = start
    while day <= end:
        month_weight = SEASON[day.month - 1] / SEASON.mean()
        for company, property_id, _, area, apartments in PROPERTIES:
            per_day = apartments / 365 * month_weight
            kinds = ["v"] * rng.poisson(per_day * AREA_VANDALISM[area])
            kinds += ["n"] * rng.poisson(apartments / 365 * NOT_VANDALISM)
            if (day.month, day.day) in ((12, 31), (1, 1)):
                kinds += ["f"] * rng.poisson(apartments * NEW_YEAR_FIRES)
            for kind in kinds:
                if kind == "v":
                    category = categories[rng.choice(len(categories), p=weights)]
                else:
                    category = "fire" if kind == "f" else "not_vandalism"
                labels = LABELS[company][category]
                hour = 22 if kind == "f" else int(rng.integers(7, 20))
                orders.append(
                    Order(
                        company=company,
                        order_id="",
                        property_id=property_id,
                        area_code=area,
                        building=BUILDINGS[rng.integers(len(BUILDINGS))],
                        entrance=ENTRANCES[rng.integers(len(ENTRANCES))],
                        reported=datetime.combine(day, datetime.min.time())
                        + timedelta(hours=hour, minutes=int(rng.integers(60))),
                        category=category,
                        label=labels[rng.integers(len(labels))],
                    )
                )
        day += timedelta(days=1)
    orders.sort(key=lambda o: (o.reported, o.company, o.property_id))
    counters = {EKDALAHEM: 0, EKBO: 0}
    credit_counters = {EKDALAHEM: 0, EKBO: 0}
    for order in orders:
        counters[order.company] += 1
        number = counters[order.company]
        order.order_id = (
            str(100000 + number)
            if order.company == EKDALAHEM
            else f"EB-{order.reported:%y}-{number:05d}"
        )
        _lifecycle(rng, order, credit_counters)
    return orders


def _lifecycle(rng: np.random.Generator, order: Order, credit_counters: dict[str, int]) -> None:
    order.versions.append(Version(order.reported, "registered", 0, None))
    if rng.random() < CANCELLED:
        when = order.reported + timedelta(days=int(rng.integers(1, 4)), hours=1)
        order.versions.append(Version(when, "cancelled", 0, None))
        return
    days = int(rng.integers(1, 46 if order.category == "fire" else 22))
    completed = order.reported + timedelta(days=days, hours=int(rng.integers(1, 5)))
    cost = _cost_ore(rng, order.category)
    order.versions.append(Version(completed, "completed", cost, completed.date()))
    if rng.random() < UPDATED:
        when = completed + timedelta(days=int(rng.integers(10, 41)))
        cost = max(4, round(cost * rng.uniform(0.8, 1.4) / 4) * 4)
        order.versions.append(Version(when, "invoiced", cost, completed.date()))
    if rng.random() < CREDITED:
        credit_counters[order.company] += 1
        number = credit_counters[order.company]
        when = completed + timedelta(days=int(rng.integers(20, 61)))
        credit_id = (
            f"KN{when:%y}{number:04d}"
            if order.company == EKDALAHEM
            else f"KF-{when:%Y}-{number:04d}"
        )
        amount = -max(4, round(cost * rng.uniform(0.1, 0.5) / 4) * 4)
        order.credits.append((credit_id, when, amount))


def _truth(orders: list[Order], cutoff: datetime) -> pl.DataFrame:
    rows = []
    for o in orders:
        state = o.state(cutoff)
        credits = sum(amount for _, when, amount in o.credits if when <= cutoff)
        rows.append(
            {
                "company": o.company,
                "order_id": o.order_id,
                "reported_date": o.reported.date(),
                "property_id": o.property_id,
                "area_code": o.area_code,
                "category": o.category,
                "status": state.status,
                "cost_excl_vat_ore": state.cost_ore + credits,
            }
        )
    return pl.DataFrame(rows)


# --- exports -----------------------------------------------------------------------------


def _kr(ore: int) -> str:
    """Öre → '1 234,50 kr' (a space between thousands, decimal comma)."""
    sign = "-" if ore < 0 else ""
    kronor, rest = divmod(abs(ore), 100)
    return f"{sign}{kronor:,}".replace(",", " ") + f",{rest:02d} kr"


def _month_ends(start: date, end: date) -> list[tuple[str, datetime]]:
    ends, year, month = [], start.year, start.month
    while date(year, month, 1) <= end:
        following = date(year + month // 12, month % 12 + 1, 1)
        last = min(following - timedelta(days=1), end)
        ends.append((f"{year}-{month:02d}", datetime.combine(last, datetime.max.time())))
        year, month = following.year, following.month
    return ends


def _ekdalahem_row(order: Order, version: Version, rng_pick: int) -> list[str]:
    reported = f"{order.reported:%Y%m%d}" if rng_pick % 10 == 0 else f"{order.reported:%Y-%m-%d}"
    return [
        order.order_id,
        "F",
        reported,
        f"{version.completed:%Y-%m-%d}" if version.completed else "",
        f"{version.modified:%Y-%m-%d %H:%M}",
        order.property_id,
        order.building,
        order.entrance,
        STATUS_LABELS[EKDALAHEM][version.status],
        order.label,
        "Se bifogad bild",
        "Hyresgäst",
        "",
        _kr(version.cost_ore * 5 // 4),
    ]


def _ekdalahem_credit_row(order: Order, credit: tuple[str, datetime, int]) -> list[str]:
    credit_id, when, amount = credit
    row = _ekdalahem_row(order, order.versions[-1], 1)
    row[4], row[8], row[12], row[13] = (
        f"{when:%Y-%m-%d %H:%M}",
        "ÖVERF",
        credit_id,
        _kr(amount * 5 // 4),
    )
    return row


def _ekdalahem_files(orders: list[Order], start: date, end: date):
    mine = [o for o in orders if o.company == EKDALAHEM]
    previous = datetime.min
    for label, month_end in _month_ends(start, end):
        rows = []
        for o in mine:
            state = o.state(month_end)
            if state is not None and state.modified > previous:
                rows.append(_ekdalahem_row(o, state, int(o.order_id)))
            rows += [_ekdalahem_credit_row(o, c) for c in o.credits if previous < c[1] <= month_end]
        previous = month_end
        yield Path(f"housing/ekdalahem/arbetsorder_{label}.csv"), rows, _write_ekdalahem
        if label.endswith("-12"):  # the whole year again, in its state at year end
            year = label[:4]
            full = []
            for o in mine:
                state = o.state(month_end)
                if state is not None and f"{o.reported:%Y}" == year:
                    full.append(_ekdalahem_row(o, state, int(o.order_id)))
                full += [
                    _ekdalahem_credit_row(o, c)
                    for c in o.credits
                    if f"{c[1]:%Y}" == year and c[1] <= month_end
                ]
            yield Path(f"housing/ekdalahem/arbetsorder_{year}_helar.csv"), full, _write_ekdalahem


def _write_ekdalahem(path: Path, rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.writer(text, delimiter=";", lineterminator="\r\n")
    writer.writerow(EKDALAHEM_HEADER)
    writer.writerows(rows)
    path.write_bytes(text.getvalue().encode("cp1252"))


def _ekbo_row(order: Order, version: Version) -> list:
    typed = int(order.order_id[-5:]) % 10 == 0  # typed by hand: a text date
    reported = f"{order.reported:%d.%m.%Y}" if typed else order.reported.date()
    return [
        order.order_id,
        reported,
        version.completed,
        order.property_id,
        order.building,
        order.label,
        STATUS_LABELS[EKBO][version.status],
        "",
        version.cost_ore / 100,
        "",
    ]


def _ekbo_files(orders: list[Order], start: date, end: date):
    mine = [o for o in orders if o.company == EKBO]
    for year in range(start.year, end.year + 1):
        for quarter in range(1, 5):
            first = date(year, 3 * quarter - 2, 1)
            if first > end:
                break
            last = date(year + (quarter == 4), (3 * quarter) % 12 + 1, 1) - timedelta(days=1)
            at = datetime.combine(min(last, end), datetime.max.time())
            rows = []
            for o in mine:
                state = o.state(at)
                changed = any(v.modified.year == year and v.modified <= at for v in o.versions)
                if state is not None and (o.reported.year == year or changed):
                    rows.append(_ekbo_row(o, state))
                for credit_id, when, amount in o.credits:
                    if when.year == year and when <= at:
                        row = _ekbo_row(o, o.versions[-1])
                        row[6], row[7], row[8] = "Fakturerad", credit_id, amount / 100
                        rows.append(row)
            yield Path(f"housing/ekbo/ekbo_arbetsordrar_{year}_Q{quarter}.xlsx"), rows, _write_ekbo


def _write_ekbo(path: Path, rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook = xlsxwriter.Workbook(str(path))
    workbook.set_properties({"created": XLSX_CREATED})
    date_format = workbook.add_format({"num_format": "yyyy-mm-dd"})
    sheet = workbook.add_worksheet("Arbetsordrar")
    sheet.write_row(0, 0, EKBO_HEADER)
    for number, row in enumerate(rows, start=1):
        for column, value in enumerate(row):
            if value is None or value == "":
                continue
            if isinstance(value, date):
                sheet.write_datetime(
                    number, column, datetime.combine(value, datetime.min.time()), date_format
                )
            elif isinstance(value, float | int):
                sheet.write_number(number, column, value)
            else:
                sheet.write_string(number, column, value)
    workbook.close()


# --- dirty rows --------------------------------------------------------------------------


def _corrupt(row: list, kind: str, company: str, serial: int) -> list:
    row = list(row)
    csv_layout = company == EKDALAHEM
    order, reported, completed, prop, category, cost = (
        (0, 2, 3, 5, 9, 13) if csv_layout else (0, 1, 2, 3, 5, 8)
    )
    if kind != "duplicate":
        row[order] = str(990000 + serial) if csv_layout else f"EB-99-{serial:05d}"
    if kind == "missing_order_id":
        row[order] = ""
    elif kind == "invalid_date":
        row[reported] = "2025-02-30" if csv_layout else "30.02.2025"
    elif kind == "invalid_amount":
        row[cost] = "ca 1 500 kr" if csv_layout else "okänt"
    elif kind == "unmapped_category":
        row[category] = "Skadedjur" if csv_layout else "ZZ"
    elif kind == "unknown_property":
        row[prop] = "Okänd 1:1" if csv_layout else "EKBO-999"
    elif kind == "negative_total":
        row[cost] = "-1 250,00 kr" if csv_layout else -1000.0
    elif kind == "implausible_amount":
        row[cost] = "12 500 000,00 kr" if csv_layout else 12_500_000.0
    elif kind == "completed_before_reported":
        row[reported] = "2024-01-10" if csv_layout else date(2024, 1, 10)
        row[completed] = "2024-01-01" if csv_layout else date(2024, 1, 1)
    return row


def _add_dirty_rows(
    rng: np.random.Generator, rows: list[list], kinds: list[str], company: str, serial: int
) -> tuple[list[list], list[str | None]]:
    """Insert one corrupted copy of a random valid order row per kind, at a random place."""
    credit = 12 if company == EKDALAHEM else 7
    candidates = [r for r in rows if not r[credit]]
    out: list[list] = list(rows)
    marks: list[str | None] = [None] * len(rows)
    for number, kind in enumerate(kinds, start=serial + 1):
        source = candidates[rng.integers(len(candidates))]
        position = int(rng.integers(len(out) + 1))
        out.insert(position, _corrupt(source, kind, company, number))
        marks.insert(position, kind)
    return out, marks


def _write_properties(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("company", "property_id", "property_name", "area_code", "apartments"))
        writer.writerows(PROPERTIES)
    return path
