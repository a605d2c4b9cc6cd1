"""Server-side SVG charts: geometry, gaps, escaping, accessibility, empty data and the formatters.

Every chart is parsed as XML in the SVG namespace; expected coordinates are computed from the
documented layout (label columns 6.5 units a character, two-decimal coordinates).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from flowsight.dashboards.charts import (
    NO_VALUE,
    SVG_NS,
    Bar,
    Series,
    WaterfallRow,
    bar_chart,
    budget_bar,
    fmt_duration,
    fmt_number,
    fmt_percent,
    funnel_chart,
    line_chart,
    sparkline,
    waterfall,
)

NS = {"svg": SVG_NS}
T0 = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
CSS = Path(__file__).resolve().parent.parent / "dashboards" / "static" / "charts.css"
TRICKY = 'a<b & "c"'


def parse(markup: str) -> ET.Element:
    root = ET.fromstring(markup)
    assert root.tag == f"{{{SVG_NS}}}svg"
    return root


def elements(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    """Elements named ``tag`` whose class list holds ``cls``, in document order."""
    return [e for e in root.iter(f"{{{SVG_NS}}}{tag}") if cls in e.get("class", "").split()]


def number(element: ET.Element, name: str) -> float:
    return float(element.attrib[name])


def texts(root: ET.Element, cls: str) -> list[str]:
    return [e.text or "" for e in elements(root, "text", cls)]


def axis_labels(root: ET.Element, axis: str) -> list[str]:
    """Tick labels of the ``x`` or ``y`` axis, the time-zone caption included."""
    group = root.find(f"svg:g[@class='fs-axis fs-axis-{axis}']", NS)
    assert group is not None
    return texts(group, "fs-tick")


def subpaths(d: str) -> list[list[tuple[float, float]]]:
    """The points of each ``M``-started subpath of a path made of M and L commands."""
    result: list[list[tuple[float, float]]] = []
    for command, x, y in re.findall(r"([ML])(-?[\d.]+) (-?[\d.]+)", d):
        if command == "M":
            result.append([])
        result[-1].append((float(x), float(y)))
    return result


# --- formatters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(0, "0", id="zero is 0"),
        pytest.param(999, "999", id="999 stays whole"),
        pytest.param(1000, "1k", id="a thousand is 1k without a decimal"),
        pytest.param(1234, "1.2k", id="1234 is 1.2k"),
        pytest.param(12345, "12.3k", id="tens of thousands keep one decimal"),
        pytest.param(123456, "123k", id="hundreds of thousands drop the decimal"),
        pytest.param(999.7, "1k", id="rounding up to a thousand moves to k"),
        pytest.param(999_950, "1M", id="rounding up to a thousand k moves to M"),
        pytest.param(1.5e6, "1.5M", id="one and a half million is 1.5M"),
        pytest.param(3.4e9, "3.4B", id="billions are B"),
        pytest.param(-1234, "-1.2k", id="a negative number keeps its sign"),
        pytest.param(0.5, "0.5", id="a fraction keeps its decimals"),
        pytest.param(12.34, "12.3", id="tens keep one decimal"),
        pytest.param(0.001234, "0.0012", id="a tiny value keeps two significant digits"),
        pytest.param(-0.0, "0", id="negative zero is 0"),
        pytest.param(math.inf, "\u221e", id="infinity is the infinity sign"),
        pytest.param(math.nan, NO_VALUE, id="NaN is a dash"),
        pytest.param(None, NO_VALUE, id="None is a dash"),
    ],
)
def test_fmt_number(value: float | None, expected: str) -> None:
    assert fmt_number(value) == expected


@pytest.mark.parametrize(
    ("value", "digits", "expected"),
    [
        pytest.param(0.995, 1, "99.5%", id="a ratio prints as a percentage"),
        pytest.param(1.0, 1, "100%", id="one is 100% without a decimal"),
        pytest.param(0.85, 1, "85%", id="trailing zeros are dropped"),
        pytest.param(0.1234, 2, "12.34%", id="digits sets the decimals"),
        pytest.param(0.99999, 1, "99.9%", id="almost met never prints as 100%"),
        pytest.param(0.996, 0, "99%", id="almost met with no decimals is 99%"),
        pytest.param(0, 1, "0%", id="zero is 0%"),
        pytest.param(-0.125, 1, "-12.5%", id="an overspent budget is negative"),
        pytest.param(math.nan, 1, NO_VALUE, id="NaN is a dash"),
        pytest.param(None, 1, NO_VALUE, id="None is a dash"),
    ],
)
def test_fmt_percent(value: float | None, digits: int, expected: str) -> None:
    assert fmt_percent(value, digits=digits) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(0, "0s", id="zero is 0s"),
        pytest.param(0.25, "250ms", id="under a second in milliseconds"),
        pytest.param(0.0004, "<1ms", id="under a millisecond"),
        pytest.param(0.9996, "1s", id="milliseconds rounding to a second"),
        pytest.param(45, "45s", id="seconds"),
        pytest.param(59.6, "1m", id="rounding carries into minutes"),
        pytest.param(90, "1m30s", id="minutes and seconds"),
        pytest.param(240, "4m", id="whole minutes"),
        pytest.param(9000, "2h30m", id="hours and minutes"),
        pytest.param(9059, "2h31m", id="hours round to the minute"),
        pytest.param(3 * 86400, "3d", id="whole days"),
        pytest.param(3 * 86400 + 4 * 3600 + 300, "3d4h", id="days and hours, minutes dropped"),
        pytest.param(3 * 86400 + 300, "3d", id="a zero second unit is left out"),
        pytest.param(timedelta(hours=2), "2h", id="a timedelta"),
        pytest.param(-90, "-1m30s", id="a negative duration keeps its sign"),
        pytest.param(math.nan, NO_VALUE, id="NaN is a dash"),
        pytest.param(None, NO_VALUE, id="None is a dash"),
    ],
)
def test_fmt_duration(value: float | timedelta | None, expected: str) -> None:
    assert fmt_duration(value) == expected


# --- every chart ------------------------------------------------------------------------------------

WATERFALL_ROWS = [
    WaterfallRow("order_created", T0 + timedelta(hours=10), kind="stage"),
    WaterfallRow("oms POST /orders", T0 + timedelta(hours=10), T0 + timedelta(hours=10, seconds=1), depth=1),
    WaterfallRow(
        "erp create order",
        T0 + timedelta(hours=10, minutes=30),
        T0 + timedelta(hours=11),
        depth=1,
        status="error",
        detail="HTTP 503 <upstream timeout>",
    ),
    WaterfallRow("exception at erp_order_created", T0 + timedelta(hours=11), None, kind="exception"),
    WaterfallRow("erp_order_created", T0 + timedelta(hours=11, minutes=30), kind="stage", status="breach"),
]

BUILDERS: dict[str, Callable[..., str]] = {
    "line chart": lambda **kw: line_chart(
        [Series("web", [(T0, 1.0), (T0 + timedelta(hours=1), 2.0)])],
        start=T0,
        end=T0 + timedelta(hours=2),
        **kw,
    ),
    "bar chart": lambda **kw: bar_chart([Bar("erp", 3)], **kw),
    "vertical bar chart": lambda **kw: bar_chart([Bar("erp", 3)], horizontal=False, **kw),
    "funnel": lambda **kw: funnel_chart([("order_created", 10), ("invoiced", 5)], **kw),
    "budget bar": lambda **kw: budget_bar(0.5, **kw),
    "sparkline": lambda **kw: sparkline([1.0, 2.0], **kw),
    "waterfall": lambda **kw: waterfall(
        WATERFALL_ROWS, start=T0 + timedelta(hours=10), end=T0 + timedelta(hours=12), **kw
    ),
}

EMPTY: dict[str, Callable[[], str]] = {
    "a line chart without series": lambda: line_chart([], start=T0, end=T0 + timedelta(hours=1)),
    "a line chart whose series has no points": lambda: line_chart(
        [Series("web", [])], start=T0, end=T0 + timedelta(hours=1)
    ),
    "a line chart whose values are all gaps": lambda: line_chart(
        [Series("web", [(T0, None), (T0 + timedelta(minutes=5), math.nan)])],
        start=T0,
        end=T0 + timedelta(hours=1),
    ),
    "a line chart whose points are all outside the range": lambda: line_chart(
        [Series("web", [(T0 - timedelta(days=1), 1.0)])], start=T0, end=T0 + timedelta(hours=1)
    ),
    "a line chart whose end is not after its start": lambda: line_chart(
        [Series("web", [(T0, 1.0)])], start=T0, end=T0
    ),
    "a bar chart without bars": lambda: bar_chart([]),
    "a funnel without stages": lambda: funnel_chart([]),
    "a budget bar without a figure": lambda: budget_bar(None),
    "a budget bar whose figure is NaN": lambda: budget_bar(math.nan),
    "a sparkline without values": lambda: sparkline([]),
    "a sparkline of gaps": lambda: sparkline([None, None]),
    "a waterfall without rows": lambda: waterfall([], start=T0, end=T0 + timedelta(hours=1)),
}


@pytest.mark.parametrize("build", [pytest.param(b, id=k) for k, b in {**BUILDERS, **EMPTY}.items()])
def test_every_chart_is_a_responsive_accessible_svg(build: Callable[[], str]) -> None:
    root = parse(build())
    assert re.fullmatch(r"0 0 \d+(\.\d+)? \d+(\.\d+)?", root.get("viewBox", ""))
    assert root.get("width") == "100%"
    assert root.get("role") == "img"
    assert "fs-chart" in root.get("class", "").split()
    title, desc = root.find("svg:title", NS), root.find("svg:desc", NS)
    assert title is not None and title.text
    assert desc is not None and desc.text
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    assert root.find("svg:style", NS) is None


@pytest.mark.parametrize("build", [pytest.param(b, id=k) for k, b in EMPTY.items()])
def test_empty_input_renders_no_data(build: Callable[[], str]) -> None:
    root = parse(build())
    assert texts(root, "fs-nodata") == ["no data"]
    assert root.find("svg:desc", NS) is not None
    assert root.find("svg:desc", NS).text == "No data."  # type: ignore[union-attr]
    assert elements(root, "path", "fs-line") == []
    assert elements(root, "rect", "fs-bar") == []


@pytest.mark.parametrize("build", [pytest.param(b, id=k) for k, b in BUILDERS.items()])
def test_standalone_embeds_a_default_style(build: Callable[..., str]) -> None:
    style = parse(build(standalone=True)).find("svg:style", NS)
    assert style is not None and style.text
    assert style.text.startswith(".fs-chart{")  # scoped to the chart, so it cannot restyle a page
    assert ".fs-series-7{" in style.text
    assert "@media (prefers-color-scheme:dark)" in style.text


# --- line chart -------------------------------------------------------------------------------------

ORDERS = Series("orders", [(T0, 0.0), (T0 + timedelta(hours=6), 50.0), (T0 + timedelta(hours=12), 100.0)])


def test_line_chart_maps_times_and_values_to_the_plot_area() -> None:
    # y ticks 0..100 by 20: the widest label "100" is 3 characters -> left margin ceil(19.5) + 14 = 34;
    # right margin 24 -> plot width 640 - 34 - 24 = 582; top 10, bottom 22 -> plot height 168.
    root = parse(line_chart([ORDERS], start=T0, end=T0 + timedelta(days=1)))
    (area,) = elements(root, "rect", "fs-plot-area")
    assert [number(area, k) for k in ("x", "y", "width", "height")] == [34, 10, 582, 168]
    (path,) = elements(root, "path", "fs-series-0")
    assert subpaths(path.attrib["d"]) == [[(34.0, 178.0), (179.5, 94.0), (325.0, 10.0)]]
    assert axis_labels(root, "y") == ["0", "20", "40", "60", "80", "100"]


def test_line_chart_draws_one_path_and_one_last_point_per_series() -> None:
    other = Series("returns", [(T0, 10.0), (T0 + timedelta(hours=3), 20.0)])
    root = parse(line_chart([ORDERS, other], start=T0, end=T0 + timedelta(days=1)))
    assert len(elements(root, "path", "fs-line")) == 2
    assert [e.get("class") for e in elements(root, "path", "fs-line")] == [
        "fs-line fs-series-0",
        "fs-line fs-series-1",
    ]
    last = elements(root, "circle", "fs-last")
    assert [e.get("class") for e in last] == ["fs-last fs-series-0", "fs-last fs-series-1"]
    (area,) = elements(root, "rect", "fs-plot-area")
    # the last point of "orders" is 100 at 12:00: half way across, at the top of the plot
    assert number(last[0], "cx") == number(area, "x") + number(area, "width") / 2
    assert number(last[0], "cy") == number(area, "y")


def test_a_gap_breaks_the_line_into_two_subpaths() -> None:
    points = [
        (T0, 1.0),
        (T0 + timedelta(hours=1), None),
        (T0 + timedelta(hours=2), 2.0),
        (T0 + timedelta(hours=3), 3.0),
    ]
    root = parse(line_chart([Series("web", points)], start=T0, end=T0 + timedelta(hours=4)))
    (path,) = elements(root, "path", "fs-line")
    d = path.attrib["d"]
    assert d.count("M") == 2
    assert [len(sub) for sub in subpaths(d)] == [1, 2]
    (area,) = elements(root, "rect", "fs-plot-area")
    assert subpaths(d)[1][0][0] == number(area, "x") + number(area, "width") / 2


def test_the_threshold_is_a_dashed_line_at_its_value() -> None:
    root = parse(
        line_chart([ORDERS], start=T0, end=T0 + timedelta(days=1), threshold=80, threshold_label="objective")
    )
    (line,) = elements(root, "line", "fs-threshold")
    # y = top + height * (100 - 80) / 100 = 10 + 168 * 0.2
    assert number(line, "y1") == number(line, "y2") == 43.6
    assert (number(line, "x1"), number(line, "x2")) == (34, 616)
    assert line.get("stroke-dasharray") == "6 4"
    assert texts(root, "fs-threshold") == ["objective"]


def test_the_threshold_widens_a_free_y_range() -> None:
    root = parse(line_chart([ORDERS], start=T0, end=T0 + timedelta(days=1), threshold=150))
    (line,) = elements(root, "line", "fs-threshold")
    (area,) = elements(root, "rect", "fs-plot-area")
    assert axis_labels(root, "y") == ["0", "50", "100", "150"]
    assert number(line, "y1") == number(area, "y")


def test_explicit_y_bounds_hold_and_values_beyond_them_sit_on_the_edge() -> None:
    budget = Series("budget", [(T0, 1.0), (T0 + timedelta(days=1), -0.5)])
    root = parse(
        line_chart([budget], start=T0, end=T0 + timedelta(days=1), y_min=0, y_max=1, y_format=fmt_percent)
    )
    assert axis_labels(root, "y") == ["0%", "20%", "40%", "60%", "80%", "100%"]
    (area,) = elements(root, "rect", "fs-plot-area")
    (path,) = elements(root, "path", "fs-line")
    ((first, last),) = subpaths(path.attrib["d"])
    assert first[1] == number(area, "y")
    assert last[1] == number(area, "y") + number(area, "height")


def test_duration_values_tick_on_round_durations() -> None:
    lag = Series("lag", [(T0, 30.0), (T0 + timedelta(hours=1), 3630.0)])
    root = parse(line_chart([lag], start=T0, end=T0 + timedelta(hours=1), y_format=fmt_duration))
    assert axis_labels(root, "y") == ["0s", "15m", "30m", "45m", "1h", "1h15m"]


def test_the_time_axis_ticks_hours_for_a_day() -> None:
    root = parse(line_chart([ORDERS], start=T0, end=T0 + timedelta(days=1)))
    labels = axis_labels(root, "x")
    assert labels == [
        "Nov 26",
        "03:00",
        "06:00",
        "09:00",
        "12:00",
        "15:00",
        "18:00",
        "21:00",
        "Nov 27",
        "UTC",
    ]


def test_the_time_axis_ticks_hours_up_to_two_days() -> None:
    root = parse(line_chart([ORDERS], start=T0, end=T0 + timedelta(days=2)))
    labels = axis_labels(root, "x")
    assert labels[:5] == ["Nov 26", "06:00", "12:00", "18:00", "Nov 27"]
    assert len(labels) == 10


def test_the_time_axis_ticks_days_beyond_two_days() -> None:
    root = parse(line_chart([ORDERS], start=T0, end=T0 + timedelta(days=7)))
    labels = axis_labels(root, "x")
    assert labels == ["Nov 26", "Nov 27", "Nov 28", "Nov 29", "Nov 30", "Dec 1", "Dec 2", "Dec 3", "UTC"]


def test_an_axis_across_new_year_shows_years_and_drops_labels_that_would_overlap() -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    series = Series("orders", [(start, 1.0), (start + timedelta(days=40), 2.0)])
    root = parse(line_chart([series], start=start, end=start + timedelta(days=40)))
    # weekly ticks from Dec 1; "Dec 8 2026" would overlap "Dec 1 2026", which starts at the plot's edge
    assert axis_labels(root, "x") == [
        "Dec 1 2026",
        "Dec 15 2026",
        "Dec 22 2026",
        "Dec 29 2026",
        "Jan 5 2027",
        "UTC",
    ]
    assert len(elements(root, "line", "fs-grid")) == 6 + 6  # six y ticks, six x ticks


def test_times_with_any_offset_or_none_are_placed_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    local = Series(
        "orders", [(datetime(2026, 11, 26, 8, 0, tzinfo=plus_two), 50.0), (T0 + timedelta(hours=12), 100.0)]
    )
    naive = Series("orders", [(datetime(2026, 11, 26, 6, 0), 50.0), (T0 + timedelta(hours=12), 100.0)])
    reference = Series("orders", [(T0 + timedelta(hours=6), 50.0), (T0 + timedelta(hours=12), 100.0)])
    paths = {
        elements(parse(line_chart([s], start=T0, end=T0 + timedelta(days=1))), "path", "fs-line")[0].attrib[
            "d"
        ]
        for s in (local, naive, reference)
    }
    assert len(paths) == 1


def test_a_legend_appears_only_for_more_than_one_series() -> None:
    one = parse(line_chart([ORDERS], start=T0, end=T0 + timedelta(days=1)))
    assert elements(one, "line", "fs-swatch") == []
    two = parse(line_chart([ORDERS, Series("returns", [(T0, 1.0)])], start=T0, end=T0 + timedelta(days=1)))
    assert [e.get("class") for e in elements(two, "line", "fs-swatch")] == [
        "fs-swatch fs-series-0",
        "fs-swatch fs-series-1",
    ]
    assert texts(two, "fs-legend-label") == ["orders", "returns"]


def test_series_names_are_escaped_and_round_trip() -> None:
    markup = line_chart(
        [ORDERS, Series(TRICKY, [(T0, 1.0)])], start=T0, end=T0 + timedelta(days=1), title=f"trend {TRICKY}"
    )
    assert "a&lt;b &amp; &quot;c&quot;" in markup
    root = parse(markup)
    assert texts(root, "fs-legend-label") == ["orders", TRICKY]
    assert root.find("svg:title", NS).text == f"trend {TRICKY}"  # type: ignore[union-attr]
    assert f"{TRICKY}: last 1" in (root.find("svg:desc", NS).text or "")  # type: ignore[union-attr]


# --- bar chart -------------------------------------------------------------------------------------


def test_bar_lengths_are_proportional_to_values() -> None:
    # labels "erp"/"wms" -> label column ceil(3 * 6.5) = 20; values "100"/"50" -> value column 20;
    # bars start at 8 + 20 + 8 = 36 and have 640 - 36 - 6 - 20 - 8 = 570 units for the largest value.
    root = parse(bar_chart([Bar("erp", 100), Bar("wms", 50)]))
    bars = elements(root, "rect", "fs-bar")
    assert [number(b, "x") for b in bars] == [36, 36]
    assert [number(b, "width") for b in bars] == [570, 285]
    assert texts(root, "fs-label") == ["erp", "wms"]
    assert texts(root, "fs-value") == ["100", "50"]
    assert root.get("viewBox") == "0 0 640 60"


def test_bar_chart_height_grows_with_the_number_of_bars() -> None:
    root = parse(bar_chart([Bar(f"system-{i}", i + 1) for i in range(10)]))
    assert len(elements(root, "rect", "fs-bar")) == 10
    assert root.get("viewBox") == "0 0 640 236"


def test_bar_status_sets_the_level_class() -> None:
    root = parse(
        bar_chart([Bar("a", 1, "bad"), Bar("b", 1, "warn"), Bar("c", 1, "ok"), Bar("d", 1), Bar("e", 1, "x")])
    )
    assert [b.get("class") for b in elements(root, "rect", "fs-bar")] == [
        "fs-bar fs-bad",
        "fs-bar fs-warn",
        "fs-bar fs-ok",
        "fs-bar fs-series-0",
        "fs-bar fs-series-0",
    ]


def test_bar_values_use_the_value_format_and_missing_values_print_a_dash() -> None:
    root = parse(bar_chart([Bar("<1h", 0.5), Bar("1-4h", math.nan)], value_format=fmt_percent))
    assert texts(root, "fs-value") == ["50%", NO_VALUE]
    assert [number(b, "width") for b in elements(root, "rect", "fs-bar")][1] == 0


def test_bar_labels_are_escaped_and_round_trip() -> None:
    markup = bar_chart([Bar(TRICKY, 1), Bar("SO-1\x00", 2)])
    assert "a&lt;b &amp; &quot;c&quot;" in markup
    root = parse(markup)
    assert texts(root, "fs-label") == [TRICKY, "SO-1\ufffd"]
    tips = [g.find("svg:title", NS) for g in elements(root, "g", "fs-bar-row")]
    assert [t.text for t in tips if t is not None] == [f"{TRICKY}: 1", "SO-1\ufffd: 2"]


def test_long_bar_labels_are_truncated_with_the_full_label_in_the_tooltip() -> None:
    label = "SO-" + "9" * 200
    root = parse(bar_chart([Bar(label, 1)], width=400))
    (shown,) = texts(root, "fs-label")
    assert shown.endswith("\u2026") and len(shown) == 24  # label column 40% of 400 = 160 -> 24 characters
    (row,) = elements(root, "g", "fs-bar-row")
    assert row.find("svg:title", NS).text == f"{label}: 1"  # type: ignore[union-attr]


def test_vertical_bar_heights_are_proportional_to_values() -> None:
    # height 200, 18 above for the values and 22 below for the labels -> 160 for the largest value
    root = parse(bar_chart([Bar("<1h", 60), Bar("1-4h", 30), Bar(">24h", 0)], horizontal=False))
    bars = elements(root, "rect", "fs-bar")
    assert [number(b, "height") for b in bars] == [160, 80, 0]
    assert [number(b, "y") for b in bars] == [18, 98, 178]
    assert texts(root, "fs-label") == ["<1h", "1-4h", ">24h"]


# --- funnel ----------------------------------------------------------------------------------------


def test_funnel_widths_are_relative_to_the_first_stage() -> None:
    # label column ceil(13 * 6.5) = 85, value column ceil(10 * 6.5) = 65;
    # bars centred in 640 - 101 - 8 - 65 - 8 = 458 units starting at 101.
    root = parse(funnel_chart([("order_created", 2_000_000), ("shipped", 1_700_000), ("invoiced", 0)]))
    bars = elements(root, "rect", "fs-bar")
    assert [number(b, "width") for b in bars] == [458, 389.3, 0]
    assert [number(b, "x") for b in bars] == [101, 135.35, 330]
    assert texts(root, "fs-value") == ["2M \u00b7 100%", "1.7M \u00b7 85%", "0 \u00b7 0%"]
    tips = [g.find("svg:title", NS) for g in elements(root, "g", "fs-funnel-row")]
    assert tips[1] is not None
    assert tips[1].text == "shipped: 1,700,000 (85% of order_created, 85% of the previous stage)"


def test_a_funnel_whose_first_stage_is_empty_prints_no_shares() -> None:
    root = parse(funnel_chart([("order_created", 0), ("shipped", 0)]))
    assert texts(root, "fs-value") == [f"0 \u00b7 {NO_VALUE}", f"0 \u00b7 {NO_VALUE}"]
    assert [number(b, "width") for b in elements(root, "rect", "fs-bar")] == [0, 0]


# --- budget bar ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remaining", "fill", "level", "text"),
    [
        pytest.param(0.5, 103, "fs-ok", "50%", id="half the budget left is ok"),
        pytest.param(1.3, 206, "fs-ok", "130%", id="more than the budget fills the meter"),
        pytest.param(0.25, 51.5, "fs-warn", "25%", id="a quarter left is a warning"),
        pytest.param(0.0, 206, "fs-bad", "0%", id="an exhausted budget is full and bad"),
        pytest.param(-0.2, 206, "fs-bad", "-20%", id="an overspent budget is full and bad"),
    ],
)
def test_budget_bar_levels(remaining: float, fill: float, level: str, text: str) -> None:
    # the text column fits "100%" (or a longer figure): 240 - ceil(4 * 6.5) - 8 = 206 for the meter
    root = parse(budget_bar(remaining))
    (track,) = elements(root, "rect", "fs-meter-track")
    (bar,) = elements(root, "rect", "fs-meter-fill")
    assert number(track, "width") == (206 if len(text) <= 4 else 199)
    assert number(bar, "width") == (fill if len(text) <= 4 else 199)
    assert bar.get("class") == f"fs-meter-fill {level}"
    assert texts(root, "fs-value") == [text]


# --- sparkline -------------------------------------------------------------------------------------


def test_sparkline_spreads_values_evenly_and_breaks_at_gaps() -> None:
    # 3 units of padding: x = 3 + 114 * i / 3; values 1..3 span y 25..3
    root = parse(sparkline([1.0, None, 3.0, 2.0]))
    (path,) = elements(root, "path", "fs-line")
    assert subpaths(path.attrib["d"]) == [[(3.0, 25.0)], [(79.0, 3.0), (117.0, 14.0)]]
    (last,) = elements(root, "circle", "fs-last")
    assert (number(last, "cx"), number(last, "cy")) == (117, 14)


def test_a_flat_sparkline_runs_through_the_middle() -> None:
    root = parse(sparkline([5.0, 5.0]))
    (path,) = elements(root, "path", "fs-line")
    assert subpaths(path.attrib["d"]) == [[(3.0, 14.0), (117.0, 14.0)]]


# --- waterfall -------------------------------------------------------------------------------------


def render_waterfall() -> ET.Element:
    return parse(waterfall(WATERFALL_ROWS, start=T0 + timedelta(hours=10), end=T0 + timedelta(hours=12)))


def test_waterfall_keeps_row_order_and_indents_by_depth() -> None:
    root = render_waterfall()
    rows = elements(root, "g", "fs-row")
    labels = [elements(r, "text", "fs-label")[0] for r in rows]
    assert [t.text for t in labels] == [r.label for r in WATERFALL_ROWS]
    assert [r.get("data-depth") for r in rows] == ["0", "1", "1", "0", "0"]
    assert [number(t, "x") for t in labels] == [8, 20, 20, 8, 8]
    assert [number(t, "y") for t in labels] == [39, 61, 83, 105, 127]


def test_waterfall_draws_bars_for_spans_and_diamonds_for_points() -> None:
    root = render_waterfall()
    assert len(elements(root, "rect", "fs-bar")) == 3
    markers = elements(root, "path", "fs-marker")
    assert [m.get("class") for m in markers] == [
        "fs-marker fs-kind-stage",
        "fs-marker fs-kind-stage fs-status-breach fs-bad",
    ]


def test_waterfall_places_spans_on_the_time_axis() -> None:
    root = render_waterfall()
    (area,) = elements(root, "rect", "fs-plot-area")
    x0, width = number(area, "x"), number(area, "width")
    assert x0 + width == 952  # 960 minus the 8-unit margin
    bars = elements(root, "rect", "fs-bar")
    # "oms POST /orders" lasts one second of two hours: drawn at the 2-unit minimum
    assert (number(bars[0], "x"), number(bars[0], "width")) == (x0, 2)
    # "erp create order" runs from 10:30 to 11:00, the second quarter of the range
    assert number(bars[1], "x") == round(x0 + width / 4, 2)
    assert number(bars[1], "width") == round(width / 4, 2)
    assert bars[1].get("class") == "fs-bar fs-kind-span fs-status-error fs-bad"


def test_an_open_exception_extends_to_the_end_of_the_chart() -> None:
    root = render_waterfall()
    (area,) = elements(root, "rect", "fs-plot-area")
    (row,) = elements(root, "g", "fs-open")
    (bar,) = elements(row, "rect", "fs-bar")
    assert bar.get("class") == "fs-bar fs-kind-exception fs-open"
    assert number(bar, "x") == round(number(area, "x") + number(area, "width") / 2, 2)
    assert number(bar, "x") + number(bar, "width") == number(area, "x") + number(area, "width")
    assert texts(row, "fs-badge") == ["open"]
    tip = row.find("svg:title", NS)
    assert tip is not None
    assert tip.text == "exception at erp_order_created\nopened 2026-11-26 11:00 UTC, open for 1h"


def test_an_sla_breach_stands_out() -> None:
    root = render_waterfall()
    (row,) = elements(root, "g", "fs-breach")
    assert elements(row, "rect", "fs-row-breach")[0].get("class") == "fs-row-breach fs-bad"
    assert elements(row, "text", "fs-label")[0].get("class") == "fs-label fs-bad"
    assert texts(row, "fs-badge") == ["SLA breach"]
    assert "1 SLA breaches; 1 open exceptions" in (root.find("svg:desc", NS).text or "")  # type: ignore[union-attr]


def test_waterfall_rows_carry_a_tooltip_with_times_and_detail() -> None:
    root = render_waterfall()
    tips = [r.find("svg:title", NS) for r in elements(root, "g", "fs-row")]
    assert [t.text for t in tips if t is not None][:3] == [
        "order_created\n2026-11-26 10:00 UTC",
        "oms POST /orders\n2026-11-26 10:00 UTC \u2192 2026-11-26 10:00:01 UTC (1s)",
        "erp create order\n2026-11-26 10:30 UTC \u2192 2026-11-26 11:00 UTC (30m)\nstatus: error\n"
        "HTTP 503 <upstream timeout>",
    ]


def test_waterfall_time_axis_is_on_top() -> None:
    root = render_waterfall()
    ticks = [t for t in elements(root, "text", "fs-tick") if t.text != "UTC"]
    assert {number(t, "y") for t in ticks} == {14}
    assert [t.text for t in ticks][:3] == ["10:00", "10:10", "10:20"]
    assert ticks[0].get("text-anchor") == "start"  # the first label does not run into the "UTC" caption


def test_waterfall_labels_and_classes_are_escaped() -> None:
    rows = [WaterfallRow(TRICKY, T0, T0 + timedelta(minutes=5), kind='span" onload="x', detail="<b>&")]
    markup = waterfall(rows, start=T0, end=T0 + timedelta(hours=1))
    root = parse(markup)
    (row,) = elements(root, "g", "fs-row")
    assert row.get("class") == "fs-row fs-kind-span-onload-x"
    assert texts(row, "fs-label") == [TRICKY]
    assert row.find("svg:title", NS).text.endswith("\n<b>&")  # type: ignore[union-attr]


# --- stylesheet ------------------------------------------------------------------------------------


def test_the_stylesheet_styles_every_class_the_charts_use() -> None:
    css = CSS.read_text()
    required = [
        "fs-axis",
        "fs-grid",
        *(f"fs-series-{i}" for i in range(8)),
        "fs-ok",
        "fs-warn",
        "fs-bad",
        "fs-threshold",
        "fs-line",
        "fs-bar",
        "fs-marker",
        "fs-last",
        "fs-meter-track",
        "fs-meter-fill",
        "fs-row-breach",
        "fs-nodata",
        *(f"fs-kind-{k}" for k in ("stage", "span", "exception", "gap")),
        *(f"fs-status-{s}" for s in ("error", "breach", "open", "ok")),
    ]
    missing = [c for c in required if not re.search(rf"\.{c}(?![\w-])", css)]
    assert missing == []


def test_the_dark_theme_redefines_every_colour() -> None:
    css = CSS.read_text()

    def variables(block: str) -> set[str]:
        return set(re.findall(r"(--fs-[\w-]+)\s*:", block))

    light = variables(css.split("@media (prefers-color-scheme: dark)")[0].split("}")[0])
    media = css.split("@media (prefers-color-scheme: dark)")[1].split("}\n}")[0]
    forced = css.split(".fs-theme-dark {")[1].split("}")[0]
    assert len(light) == 18
    assert variables(media) == light
    assert variables(forced) == light
