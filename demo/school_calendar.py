"""The Swedish school calendar of the fictional municipality.

One school year Y/Y+1 (rules typical for Swedish municipalities, simplified):

- autumn term HT{Y}: Wednesday of ISO week 34 to the last Friday on or before 22 December;
- spring term VT{Y+1}: first weekday on or after 8 January to the Friday of ISO week 24;
- breaks: höstlov (ISO week 44), jullov (between the terms), sportlov (ISO week 8) and
  påsklov (Monday to Friday after Easter Sunday);
- public holidays that fall on a weekday are days off (see `_holidays`).

Precedence when rules overlap: weekend, then holiday, then break, then school day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from dateutil.easter import easter

SCHOOL_DAY = "school_day"
WEEKEND = "weekend"
BREAK = "break"
HOLIDAY = "holiday"


@dataclass(frozen=True)
class CalendarDay:
    date: date
    school_year: str  # "2025/26"
    term: str  # "HT2025", "VT2026", or "" for the jul break between the terms
    day_type: str  # school_day | weekend | break | holiday
    note: str  # name of the break or holiday, "" otherwise

    @property
    def is_school_day(self) -> bool:
        return self.day_type == SCHOOL_DAY


def school_year_label(start_year: int) -> str:
    return f"{start_year}/{(start_year + 1) % 100:02d}"


def term_dates(start_year: int) -> tuple[date, date, date, date]:
    """(HT start, HT end, VT start, VT end) of school year start_year/start_year+1."""
    ht_start = date.fromisocalendar(start_year, 34, 1) + timedelta(days=2)
    ht_end = date(start_year, 12, 22)
    while ht_end.weekday() != 4:  # back to a Friday
        ht_end -= timedelta(days=1)
    vt_start = date(start_year + 1, 1, 8)
    while vt_start.weekday() >= 5:
        vt_start += timedelta(days=1)
    vt_end = date.fromisocalendar(start_year + 1, 24, 5)
    return ht_start, ht_end, vt_start, vt_end


def _holidays(start_year: int) -> dict[date, str]:
    spring = start_year + 1
    easter_sunday = easter(spring)
    return {
        date(start_year, 12, 25): "Juldagen",
        date(start_year, 12, 26): "Annandag jul",
        date(spring, 1, 1): "Nyårsdagen",
        date(spring, 1, 6): "Trettondedag jul",
        easter_sunday - timedelta(days=2): "Långfredag",
        easter_sunday + timedelta(days=1): "Annandag påsk",
        date(spring, 5, 1): "Första maj",
        easter_sunday + timedelta(days=39): "Kristi himmelsfärdsdag",
        date(spring, 6, 6): "Nationaldagen",
    }


def _breaks(start_year: int) -> dict[date, str]:
    spring = start_year + 1
    easter_sunday = easter(spring)
    breaks: dict[date, str] = {}
    for weekday in range(1, 6):
        breaks[date.fromisocalendar(start_year, 44, weekday)] = "höstlov"
        breaks[date.fromisocalendar(spring, 8, weekday)] = "sportlov"
        breaks[easter_sunday + timedelta(days=weekday)] = "påsklov"
    return breaks


def school_year_calendar(start_year: int) -> list[CalendarDay]:
    """Every calendar date from the first day of HT to the last day of VT."""
    ht_start, ht_end, vt_start, vt_end = term_dates(start_year)
    holidays = _holidays(start_year)
    breaks = _breaks(start_year)
    label = school_year_label(start_year)
    days = []
    day = ht_start
    while day <= vt_end:
        if day <= ht_end:
            term = f"HT{start_year}"
        elif day >= vt_start:
            term = f"VT{start_year + 1}"
        else:
            term = ""
        if day.weekday() >= 5:
            day_type, note = WEEKEND, ""
        elif day in holidays:
            day_type, note = HOLIDAY, holidays[day]
        elif not term:
            day_type, note = BREAK, "jullov"
        elif day in breaks:
            day_type, note = BREAK, breaks[day]
        else:
            day_type, note = SCHOOL_DAY, ""
        days.append(CalendarDay(day, label, term, day_type, note))
        day += timedelta(days=1)
    return days
