"""The report's Swedish number formats and chart geometry (no browser: tests/flows look)."""

from __future__ import annotations

import re

from flows.reports.lagesbild import Series, line_chart, scale_for, sv_number, sv_signed

NBSP = "\u00a0"


def test_numbers_use_decimal_comma_and_space_for_thousands():
    assert sv_number(3966966.96, 0) == f"3{NBSP}966{NBSP}967"
    assert sv_number(71.0) == "71,0"
    assert sv_number(-1.75, 2) == "−1,75"
    assert sv_signed(13.0) == "+13,0" and sv_signed(-5.4) == "−5,4" and sv_signed(0) == "±0,0"


def test_money_axes_are_scaled_and_carry_their_unit():
    mnkr = scale_for("SEK", [3_966_966.96, 1_903_725.96])
    assert (mnkr.axis, mnkr.show(1_903_725.96)) == ("miljoner kronor (mnkr)", f"1,90{NBSP}mnkr")
    assert scale_for("SEK", [45_000]).show(45_000) == f"45{NBSP}tkr"
    assert scale_for("percent", []).show(None, "withheld") == "×"
    assert scale_for("percent", []).show(None, "missing") == ".."


def test_chart_ticks_fit_their_margin_and_say_the_unit():
    scale = scale_for("SEK", [3_966_966.96])
    chart = str(
        line_chart(
            "Skadegörelse",
            ["2024", "2025", "2026\nt.o.m. 30 juni"],
            [Series("kostnad", [3_966_966.96, 3_751_041.12, 1_903_725.96])],
            scale,
        )
    )
    ticks = re.findall(r'class="tick" text-anchor="end">([^<]*)<', chart)
    assert ticks == ["0", "1", "2", "3", "4"]  # 4,000,000 kr is "4" under the axis title mnkr
    assert "miljoner kronor (mnkr)" in chart and "000000" not in chart
    assert "<desc" in chart and f"2026 t.o.m. 30 juni: 1,90{NBSP}mnkr" in chart
    # the part year is a hollow marker, not joined by a line to the whole years
    assert chart.count('class="point"') == 2 and chart.count('class="point partial"') == 1
    assert chart.count("<polyline") == 1
