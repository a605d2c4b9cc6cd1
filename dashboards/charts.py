"""Server-side SVG charts for the dashboard pages: trends, bars, funnels, budget meters, timelines.

Every chart is a pure function that returns inline SVG markup: no JavaScript, no external assets.
The ``<svg>`` carries a ``viewBox`` and ``width="100%"`` so it scales from a laptop to a wall
screen, ``role="img"`` with a ``<title>`` and a ``<desc>`` that summarises the data for screen
readers, and XML-escaped text throughout (labels are user data: stage names, order IDs).

Colours come only from classes (``fs-series-0`` .. ``fs-series-7``, ``fs-ok``, ``fs-warn``,
``fs-bad``, ``fs-threshold``, ``fs-axis``, ``fs-grid``...) styled by ``static/charts.css``; shapes
fall back to ``currentColor`` when no stylesheet is present. ``standalone=True`` embeds a small
default stylesheet for an SVG served on its own. Empty data renders a "no data" chart, never an
exception. Times are shown in UTC; naive datetimes are taken as UTC.
"""

from __future__ import annotations

import hashlib
import html
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flowsight.timefmt import as_utc

__all__ = [
    "NO_VALUE",
    "SVG_NS",
    "Bar",
    "Series",
    "WaterfallRow",
    "bar_chart",
    "budget_bar",
    "fmt_duration",
    "fmt_number",
    "fmt_percent",
    "funnel_chart",
    "line_chart",
    "sparkline",
    "waterfall",
]

SVG_NS = "http://www.w3.org/2000/svg"
NO_VALUE = "\u2013"
"""What the formatters print for a missing value (None or NaN): an en dash."""

Formatter = Callable[[float], str]

# Average glyph advance at the 11-unit font, on the generous side so that estimated label
# widths never make neighbouring texts collide.
_CHAR_W = 6.5
_FONT_SIZE = 11
_SERIES_COLOURS = 8
_STATUS_CLASS = {"ok": "fs-ok", "warn": "fs-warn", "bad": "fs-bad"}
_ROW_STATUS_CLASS = {"breach": "fs-bad", "error": "fs-bad", "open": "fs-warn", "ok": "fs-ok"}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DAY = 86400.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Characters XML 1.0 cannot carry at all; user labels containing them would break the page.
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_SLUG = re.compile(r"[^a-z0-9_-]+")
# Presentation defaults for when no stylesheet is loaded; charts.css overrides them by class.
_GRID: dict[str, str | float | None] = {"stroke": "currentColor", "stroke_opacity": "0.15"}
_AXIS: dict[str, str | float | None] = {"stroke": "currentColor", "stroke_opacity": "0.5"}
_TIME_STEPS: tuple[float, ...] = (
    *(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
    *(1, 2, 5, 10, 15, 30),
    *(60, 120, 300, 600, 900, 1800),
    *(3600, 7200, 10800, 21600, 43200),
    *(_DAY * d for d in (1, 2, 7, 14, 30, 91, 182, 365)),
)


@dataclass(frozen=True)
class Series:
    """One line of a line chart; a None value is a gap that breaks the line."""

    name: str
    points: Sequence[tuple[datetime, float | None]]


@dataclass(frozen=True)
class Bar:
    """One bar; ``status`` "ok", "warn" or "bad" colours it by level."""

    label: str
    value: float
    status: str = ""


@dataclass(frozen=True)
class WaterfallRow:
    """One row of an order timeline: a span (start to end) or a point in time (end None).

    ``kind`` is "stage", "span", "exception" or "gap"; ``status`` is "error", "breach", "open",
    "ok" or empty. An exception with no end is still open and extends to the chart's end.
    """

    label: str
    start: datetime
    end: datetime | None = None
    depth: int = 0
    kind: str = "span"
    status: str = ""
    detail: str = ""


# --- formatting helpers (also used by the page templates) -------------------------------------


def _finite(x: float | None) -> float | None:
    if x is None:
        return None
    value = float(x)
    return value if math.isfinite(value) else None


def _strip_zeros(text: str) -> str:
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def fmt_number(x: float | None) -> str:
    """A compact number: ``999``, ``1.2k``, ``12.3k``, ``123k``, ``3.4M``, ``-1.5B``, ``0.25``.

    None and NaN print as an en dash, infinities as the infinity sign.
    """
    if x is not None and math.isinf(x):
        return "\u221e" if x > 0 else "-\u221e"
    value = _finite(x)
    if value is None:
        return NO_VALUE
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    suffixes = ("", "k", "M", "B", "T")
    for power, suffix in enumerate(suffixes):
        scaled = magnitude / 1000**power
        decimals = 0 if scaled >= 100 else 1 if scaled >= 10 or power else 2
        text = f"{scaled:.{decimals}f}"
        if float(text) >= 1000 and power < len(suffixes) - 1:
            continue  # rounding reached the next unit: 999.7 is 1k, not 1000
        text = _strip_zeros(text)
        if text == "0":  # a tiny non-zero value keeps two significant digits
            text = f"{scaled:.2g}"
        return f"{sign}{text}{suffix}"
    raise AssertionError("unreachable")  # pragma: no cover


def fmt_percent(x: float | None, digits: int = 1) -> str:
    """A ratio as a percentage with at most ``digits`` decimals: ``0.995`` -> ``99.5%``.

    A ratio below 1 never prints as ``100%`` (``0.99999`` -> ``99.9%``): an objective that is
    almost met must not read as met. None and NaN print as an en dash.
    """
    value = _finite(x)
    if value is None:
        return NO_VALUE
    digits = max(digits, 0)
    percent = value * 100
    text = f"{percent:.{digits}f}"
    if float(text) >= 100 and value < 1:
        scale = 10**digits
        text = f"{math.floor(percent * scale) / scale:.{digits}f}"
    return f"{_strip_zeros(text)}%"


def fmt_duration(seconds: float | timedelta | None) -> str:
    """A duration in its two largest units: ``45s``, ``4m``, ``1m30s``, ``2h30m``, ``3d``, ``3d4h``.

    Rounded to the smaller of the two units; under a second in milliseconds (``250ms``).
    None and NaN print as an en dash.
    """
    value = seconds.total_seconds() if isinstance(seconds, timedelta) else _finite(seconds)
    if value is None:
        return NO_VALUE
    if value < 0:
        return f"-{fmt_duration(-value)}"
    if value == 0:
        return "0s"
    if value < 1:
        millis = math.floor(value * 1000 + 0.5)
        if millis < 1000:
            return f"{millis}ms" if millis else "<1ms"
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))

    def largest(total: float) -> int:
        return next((i for i, (_, size) in enumerate(units) if total >= size), len(units) - 1)

    index = largest(value)
    finer = units[min(index + 1, len(units) - 1)][1]
    total = math.floor(value / finer + 0.5) * finer
    index = largest(total)  # rounding may carry into the next unit: 59.6s is 1m
    name, size = units[index]
    major, rest = divmod(total, size)
    text = f"{int(major)}{name}"
    if index + 1 < len(units):
        minor_name, minor_size = units[index + 1]
        minor = int(rest // minor_size)
        if minor:
            text += f"{minor}{minor_name}"
    return text


# --- SVG building blocks ---------------------------------------------------------------------


def _esc(text: object) -> str:
    return html.escape(_INVALID_XML.sub("\ufffd", str(text)), quote=True)


def _num(value: float) -> str:
    """A coordinate with at most two decimals."""
    return _strip_zeros(f"{value:.2f}")


def _el(tag: str, text: str | None = None, /, **attrs: str | float | None) -> str:
    """One element; ``cls`` is the class attribute and underscores in names become hyphens."""
    parts = [tag]
    for key, value in attrs.items():
        if value is None:
            continue
        name = "class" if key == "cls" else key.replace("_", "-")
        shown = value if isinstance(value, str) else _num(value)
        parts.append(f'{name}="{_esc(shown)}"')
    head = " ".join(parts)
    return f"<{head}/>" if text is None else f"<{head}>{_esc(text)}</{tag}>"


def _truncate(text: str, width: float) -> str:
    limit = max(int(width // _CHAR_W), 2)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _text_width(text: str) -> float:
    return len(text) * _CHAR_W


def _slug(text: str) -> str:
    return _SLUG.sub("-", text.strip().lower()).strip("-")[:32]


def _svg(
    kind: str, width: float, height: float, title: str, desc: str, body: list[str], standalone: bool
) -> str:
    digest = hashlib.blake2s(digest_size=5)
    for piece in (kind, title, desc, *body):
        digest.update(piece.encode("utf-8", "replace"))
    uid = f"fs-{digest.hexdigest()}"
    head = (
        f'<svg xmlns="{SVG_NS}" class="fs-chart fs-{kind}" viewBox="0 0 {_num(width)} {_num(height)}" '
        f'width="100%" role="img" aria-labelledby="{uid}-t {uid}-d" font-size="{_FONT_SIZE}">'
    )
    style = f"<style>{_DEFAULT_STYLE}</style>" if standalone else ""
    labels = f'<title id="{uid}-t">{_esc(title)}</title><desc id="{uid}-d">{_esc(desc)}</desc>'
    return head + style + labels + "".join(body) + "</svg>"


def _no_data(kind: str, width: float, height: float, title: str, standalone: bool) -> str:
    text = _el(
        "text", "no data", cls="fs-nodata", x=width / 2, y=height / 2, dy="0.35em", text_anchor="middle"
    )
    return _svg(kind, width, height, title, "No data.", [text], standalone)


def _ts(when: datetime) -> float:
    return as_utc(when).timestamp()


def _fmt_time(seconds: float) -> str:
    """``2026-11-26 10:00 UTC``, with seconds and milliseconds only when they are not zero."""
    when = _EPOCH + timedelta(milliseconds=round(seconds * 1000))
    text = f"{when:%Y-%m-%d %H:%M}"
    if when.second or when.microsecond:
        text += f":{when:%S}"
    if when.microsecond:
        text += f".{when.microsecond // 1000:03d}"
    return f"{text} UTC"


# --- axes ---------------------------------------------------------------------------------------


def _clean(value: float) -> float:
    """Drop binary noise from a tick: 0.30000000000000004 is 0.3."""
    return float(f"{value:.12g}") + 0.0


def _nice_ticks(
    lo: float, hi: float, *, fixed_lo: bool, fixed_hi: bool, steps: Sequence[float] = ()
) -> tuple[float, float, list[float]]:
    """Four to six round ticks; free ends widen to the outer ticks.

    Steps are 1, 2 or 5 x 10^n unless ``steps`` offers others (durations tick in 15m, 1h, 1d).
    """
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = (lo if fixed_lo else lo - pad), (hi if fixed_hi else hi + pad)
        if hi == lo:
            hi = lo + pad
    exponent = math.floor(math.log10((hi - lo) / 6))
    decimal = [m * 10.0**p for p in range(exponent - 1, exponent + 3) for m in (1, 2, 5)]
    best: tuple[int, float, int, int] | None = None
    for step in [*steps, *decimal]:
        first = math.ceil(lo / step - 1e-9) if fixed_lo else math.floor(lo / step + 1e-9)
        last = math.floor(hi / step + 1e-9) if fixed_hi else math.ceil(hi / step - 1e-9)
        count = last - first + 1
        if count == 3 and not (fixed_lo and fixed_hi):  # one more step on a free end reaches four
            last, first = (last + 1, first) if not fixed_hi else (last, first - 1)
            count = 4
        if 4 <= count <= 6:
            best = (0, step, first, last)
            break
        if best is None or abs(count - 5) < best[0]:
            best = (abs(count - 5), step, first, last)
    assert best is not None
    _, step, first, last = best
    ticks = [_clean((first + i) * step) for i in range(max(last - first + 1, 0))]
    if not ticks:
        return lo, hi, [lo, hi]
    return (lo if fixed_lo else min(lo, ticks[0])), (hi if fixed_hi else max(hi, ticks[-1])), ticks


def _time_ticks(
    t0: float, t1: float, plot_w: float, steps: Sequence[float], with_year: bool
) -> tuple[float, list[float]]:
    """The finest step whose labels fit ``plot_w``, and its ticks aligned to UTC boundaries."""
    span = t1 - t0
    chosen = steps[-1]
    for step in steps:
        # the widest label of the step: "10:00:00.250", "10:00:05", or a date ("Nov 26 2026")
        chars = 12 if step < 1 else 8 if step < 60 else 11 if with_year else 6
        if span / step * (chars * _CHAR_W + 20) <= plot_w:
            chosen = step
            break
    # Multi-day steps count from the first midnight in range; finer steps align to the epoch.
    unit = chosen if chosen < _DAY else _DAY
    first = math.ceil(t0 / unit - 1e-9) * unit
    ticks: list[float] = []
    tick = first
    while tick <= t1 + 1e-6:
        ticks.append(round(tick, 3))
        tick = first + len(ticks) * chosen
    return chosen, ticks


def _time_label(seconds: float, step: float, with_year: bool) -> str:
    when = _EPOCH + timedelta(milliseconds=round(seconds * 1000))
    midnight = when.hour == when.minute == when.second == when.microsecond == 0
    if step >= _DAY or (midnight and step >= 60):
        date = f"{_MONTHS[when.month - 1]} {when.day}"
        return f"{date} {when.year}" if with_year else date
    if step < 1:
        return f"{when:%H:%M:%S}.{when.microsecond // 1000:03d}"
    return f"{when:%H:%M:%S}" if step < 60 else f"{when:%H:%M}"


def _time_axis(
    t0: float,
    t1: float,
    x_of: Callable[[float], float],
    steps: Sequence[float],
    plot: tuple[float, float, float, float],
    label_y: float,
    chart_w: float,
) -> list[str]:
    """Grid lines and UTC tick labels for ``plot`` = (left, right, top, bottom), and the zone caption.

    Labels centre on their ticks, align inward at the edges and are left out where they would
    overlap the previous one (their grid lines stay).
    """
    left, right, top, bottom = plot
    with_year = _years_differ(t0, t1)
    step, ticks = _time_ticks(t0, t1, right - left, steps, with_year)
    parts: list[str] = []
    labels: list[str] = []
    taken = left - 6  # the "UTC" caption ends here
    for tick in ticks:
        x = x_of(tick)
        parts.append(_el("line", cls="fs-grid", x1=x, y1=top, x2=x, y2=bottom, **_GRID))
        label = _time_label(tick, step, with_year)
        size = _text_width(label)
        anchor, begin = "middle", x - size / 2
        if begin < left - 4:
            anchor, begin = "start", x
        elif x + size / 2 > chart_w - 2:
            anchor, begin = "end", x - size
        if begin < taken + 6:
            continue
        taken = begin + size
        labels.append(_el("text", label, cls="fs-tick", x=x, y=label_y, text_anchor=anchor))
    caption = _el("text", "UTC", cls="fs-tick fs-tz", x=left - 6, y=label_y, text_anchor="end")
    return [*parts, *labels, caption]


def _years_differ(t0: float, t1: float) -> bool:
    return datetime.fromtimestamp(t0, UTC).year != datetime.fromtimestamp(t1, UTC).year


# --- charts ---------------------------------------------------------------------------------------


def line_chart(
    series: Sequence[Series],
    *,
    start: datetime,
    end: datetime,
    width: int = 640,
    height: int = 200,
    y_min: float | None = None,
    y_max: float | None = None,
    y_format: Formatter = fmt_number,
    threshold: float | None = None,
    threshold_label: str = "",
    title: str = "",
    standalone: bool = False,
) -> str:
    """Series over time between ``start`` and ``end``: burn-down of error budget, completion trends.

    Each series is a ``<path>`` (class ``fs-series-i``) broken at None values, with a
    ``<circle>`` on its last value; points outside the time range are left out and values
    outside an explicit ``y_min``/``y_max`` are drawn at the edge. The time axis ticks hours up
    to two days and days beyond; ``threshold`` (e.g. the SLO objective) is a dashed line. With
    ``y_format=fmt_duration`` the y ticks fall on round durations (15m, 1h, 1d).
    """
    title = title or "Line chart"
    t0, t1 = _ts(start), _ts(end)
    lines: list[tuple[int, Series, list[tuple[float, float | None]]]] = []
    for index, item in enumerate(series):
        points = [(_ts(when), _finite(value)) for when, value in item.points]
        kept = sorted((p for p in points if t0 <= p[0] <= t1), key=lambda p: p[0])
        lines.append((index, item, kept))
    values = [v for _, _, points in lines for _, v in points if v is not None]
    if t1 <= t0 or not values:
        return _no_data("line-chart", width, height, title, standalone)

    limit, y_min, y_max = _finite(threshold), _finite(y_min), _finite(y_max)
    extent = values if limit is None else [*values, limit]
    y_lo, y_hi, y_ticks = _nice_ticks(
        min(extent) if y_min is None else y_min,
        max(extent) if y_max is None else y_max,
        fixed_lo=y_min is not None,
        fixed_hi=y_max is not None,
        steps=_TIME_STEPS if y_format is fmt_duration else (),
    )
    tick_labels = [y_format(tick) for tick in y_ticks]
    left = math.ceil(max(_text_width(label) for label in tick_labels)) + 14
    right = 24

    legend: list[str] = []
    legend_rows = 0
    if len(lines) > 1:
        x, legend_rows = float(left), 1
        for index, item, _ in lines:
            name = _truncate(item.name, 32 * _CHAR_W)
            item_w = 22 + _text_width(name) + 14
            if x + item_w > width - right and x > left:
                x, legend_rows = float(left), legend_rows + 1
            y = 10.0 + (legend_rows - 1) * 18
            colour = f"fs-series-{index % _SERIES_COLOURS}"
            legend.append(
                _el("line", cls=f"fs-swatch {colour}", x1=x, y1=y, x2=x + 16, y2=y)
                + _el("text", name, cls="fs-legend-label", x=x + 22, y=y, dy="0.35em")
            )
            x += item_w
    top = 10 + 18 * legend_rows
    bottom = 22
    plot_w = max(width - left - right, 10)
    plot_h = max(height - top - bottom, 10)

    def x_of(t: float) -> float:
        return left + plot_w * (t - t0) / (t1 - t0)

    def y_of(v: float) -> float:
        v = min(max(v, y_lo), y_hi)
        return top + plot_h * (y_hi - v) / (y_hi - y_lo)

    body = [
        _el("rect", cls="fs-plot-area", x=left, y=top, width=plot_w, height=plot_h, fill="none"),
        '<g class="fs-axis fs-axis-y">',
    ]
    for tick, label in zip(y_ticks, tick_labels, strict=True):
        y = y_of(tick)
        body.append(_el("line", cls="fs-grid", x1=left, y1=y, x2=left + plot_w, y2=y, **_GRID))
        body.append(_el("text", label, cls="fs-tick", x=left - 6, y=y, dy="0.35em", text_anchor="end"))
    body.append('</g><g class="fs-axis fs-axis-x">')
    allowed = [s for s in _TIME_STEPS if (s < _DAY) == (t1 - t0 <= 2 * _DAY)]
    base = top + plot_h
    body += _time_axis(t0, t1, x_of, allowed, (left, left + plot_w, top, base), base + 15, width)
    body.append(_el("line", cls="fs-axis", x1=left, y1=base, x2=left + plot_w, y2=base, **_AXIS))
    body.append("</g>")

    summary = [f"{title}. From {_fmt_time(t0)} to {_fmt_time(t1)}."]
    if limit is not None and y_lo <= limit <= y_hi:
        y = y_of(limit)
        shown = threshold_label or y_format(limit)
        body.append(
            _el(
                "line",
                cls="fs-threshold",
                x1=left,
                y1=y,
                x2=left + plot_w,
                y2=y,
                stroke="currentColor",
                stroke_dasharray="6 4",
            )
        )
        body.append(_el("text", shown, cls="fs-threshold", x=left + plot_w, y=y - 4, text_anchor="end"))
        summary.append(f"Threshold {shown} at {y_format(limit)}.")

    for index, item, points in lines:
        present = [(t, v) for t, v in points if v is not None]
        if not present:
            summary.append(f"{item.name}: no data.")
            continue
        commands: list[str] = []
        pen_up = True
        for t, v in points:
            if v is None:
                pen_up = True
                continue
            commands.append(f"{'M' if pen_up else 'L'}{_num(x_of(t))} {_num(y_of(v))}")
            pen_up = False
        colour = f"fs-series-{index % _SERIES_COLOURS}"
        body.append(
            f'<path class="fs-line {colour}" d="{" ".join(commands)}" fill="none" stroke="currentColor" '
            f'stroke-width="2" stroke-linejoin="round" stroke-linecap="round">'
            f"{_el('title', item.name)}</path>"
        )
        last_t, last_v = present[-1]
        tip = f"{item.name}: {y_format(last_v)} at {_fmt_time(last_t)}"
        body.append(
            f'<circle class="fs-last {colour}" cx="{_num(x_of(last_t))}" cy="{_num(y_of(last_v))}" '
            f'r="3" fill="currentColor">{_el("title", tip)}</circle>'
        )
        low, high = min(v for _, v in present), max(v for _, v in present)
        summary.append(
            f"{item.name}: last {y_format(last_v)}, lowest {y_format(low)}, highest {y_format(high)}."
        )
    if legend:
        body.append('<g class="fs-legend">' + "".join(legend) + "</g>")
    return _svg("line-chart", width, height, title, " ".join(summary), body, standalone)


def _row_label(label: str, width: float, x: float, y: float) -> str:
    """A bar row's label, right-aligned before the bar, cut to ``width``."""
    return _el("text", _truncate(label, width), cls="fs-label", x=x, y=y, dy="0.35em", text_anchor="end")


def bar_chart(
    bars: Sequence[Bar],
    *,
    width: int = 640,
    height: int | None = None,
    value_format: Formatter = fmt_number,
    title: str = "",
    horizontal: bool = True,
    standalone: bool = False,
) -> str:
    """Labelled bars with their values: stuck orders by stage or system, aging buckets, backlogs.

    Bar lengths are proportional to the values (negative values draw as zero, a non-zero value
    at least 1 unit long). Horizontal bars grow the chart by 22 units a bar when ``height`` is
    None; vertical bars default to 200 high.
    """
    title = title or "Bar chart"
    items = list(bars)
    if not items:
        return _no_data("bar-chart", width, height or 60, title, standalone)
    values = [_finite(bar.value) for bar in items]
    lengths = [max(v, 0.0) if v is not None else 0.0 for v in values]
    peak = max(lengths)
    texts = [NO_VALUE if v is None else value_format(v) for v in values]
    desc = _listing(title, [f"{bar.label}: {text}" for bar, text in zip(items, texts, strict=True)])

    def share(length: float) -> float:
        return length / peak if peak > 0 else 0.0

    def classes(bar: Bar) -> str:
        status = _STATUS_CLASS.get(bar.status)
        return f"fs-bar {status}" if status else "fs-bar fs-series-0"

    pad = 8
    count = len(items)
    body: list[str] = []
    if horizontal:
        row_h = 22.0 if height is None else max((height - 2 * pad) / count, 4.0)
        total_h = height if height is not None else math.ceil(2 * pad + count * row_h)
        label_w = min(math.ceil(max(_text_width(bar.label) for bar in items)), round(width * 0.4))
        value_w = math.ceil(max(_text_width(text) for text in texts))
        bar_x = pad + label_w + 8
        area = max(width - bar_x - 6 - value_w - pad, 10)
        thickness = max(round(row_h * 0.64), 2)
        for i, (bar, length, text) in enumerate(zip(items, lengths, texts, strict=True)):
            y = pad + i * row_h
            mid = y + row_h / 2
            size = max(area * share(length), 1.0) if length > 0 else 0.0
            body += [
                f'<g class="fs-bar-row">{_el("title", f"{bar.label}: {text}")}',
                _row_label(bar.label, label_w, bar_x - 8, mid),
                _el(
                    "rect",
                    cls=classes(bar),
                    x=bar_x,
                    y=mid - thickness / 2,
                    width=size,
                    height=thickness,
                    fill="currentColor",
                ),
                _el("text", text, cls="fs-value", x=bar_x + size + 6, y=mid, dy="0.35em"),
                "</g>",
            ]
        return _svg("bar-chart", width, total_h, title, desc, body, standalone)

    total_h = height if height is not None else 200
    top, bottom = 18, 22
    plot_h = max(total_h - top - bottom, 10)
    slot = (width - 2 * pad) / count
    column = min(slot * 0.7, 64.0)
    base = top + plot_h
    for i, (bar, length, text) in enumerate(zip(items, lengths, texts, strict=True)):
        centre = pad + (i + 0.5) * slot
        size = max(plot_h * share(length), 1.0) if length > 0 else 0.0
        body += [
            f'<g class="fs-bar-row">{_el("title", f"{bar.label}: {text}")}',
            _el(
                "rect",
                cls=classes(bar),
                x=centre - column / 2,
                y=base - size,
                width=column,
                height=size,
                fill="currentColor",
            ),
            _el("text", text, cls="fs-value", x=centre, y=base - size - 5, text_anchor="middle"),
            _el(
                "text",
                _truncate(bar.label, slot),
                cls="fs-label",
                x=centre,
                y=base + 15,
                text_anchor="middle",
            ),
            "</g>",
        ]
    body.append(_el("line", cls="fs-axis", x1=pad, y1=base, x2=width - pad, y2=base, **_AXIS))
    return _svg("bar-chart", width, total_h, title, desc, body, standalone)


def funnel_chart(
    stages: Sequence[tuple[str, int]], *, width: int = 640, title: str = "", standalone: bool = False
) -> str:
    """Orders reaching each stage: bar widths relative to the first stage, printed "1.7M · 85%"."""
    title = title or "Funnel"
    items = [(str(name), max(int(count), 0) if math.isfinite(count) else 0) for name, count in stages]
    if not items:
        return _no_data("funnel-chart", width, 60, title, standalone)
    first = items[0][1]

    def ratio(count: int, of: int) -> float | None:
        return count / of if of > 0 else None

    texts = [f"{fmt_number(count)} \u00b7 {fmt_percent(ratio(count, first))}" for _, count in items]
    pad, row_h, thickness = 8, 26, 18
    label_w = min(math.ceil(max(_text_width(name) for name, _ in items)), round(width * 0.35))
    value_w = math.ceil(max(_text_width(text) for text in texts))
    bar_x = pad + label_w + 8
    area = max(width - bar_x - 8 - value_w - pad, 10)
    body: list[str] = []
    previous = first
    for i, ((name, count), text) in enumerate(zip(items, texts, strict=True)):
        mid = pad + i * row_h + row_h / 2
        size = area * min(ratio(count, first) or 0.0, 1.0)
        tip = f"{name}: {count:,} ({fmt_percent(ratio(count, first))} of {items[0][0]}"
        tip += f", {fmt_percent(ratio(count, previous))} of the previous stage)" if i else ")"
        body += [
            f'<g class="fs-funnel-row">{_el("title", tip)}',
            _row_label(name, label_w, bar_x - 8, mid),
            _el(
                "rect",
                cls="fs-bar fs-funnel fs-series-0",
                x=bar_x + (area - size) / 2,
                y=mid - thickness / 2,
                width=size,
                height=thickness,
                fill="currentColor",
            ),
            _el("text", text, cls="fs-value", x=bar_x + area + 8, y=mid, dy="0.35em"),
            "</g>",
        ]
        previous = count
    desc = _listing(title, [f"{name}: {text}" for (name, _), text in zip(items, texts, strict=True)])
    return _svg("funnel-chart", width, 2 * pad + len(items) * row_h, title, desc, body, standalone)


def budget_bar(
    remaining: float | None, *, width: int = 240, height: int = 28, title: str = "", standalone: bool = False
) -> str:
    """Error budget remaining (a ratio, 1.0 = untouched) as a meter from 0 to 100%.

    Above 25% is ``fs-ok``, above 0 ``fs-warn``; at or below 0 the budget is exhausted and the
    meter is full and ``fs-bad``.
    """
    title = title or "Error budget remaining"
    value = _finite(remaining)
    if value is None:
        return _no_data("budget-bar", width, height, title, standalone)
    level = "ok" if value > 0.25 else "warn" if value > 0 else "bad"
    text = fmt_percent(value)
    meter_w = max(width - math.ceil(_text_width(max(text, "100%", key=len))) - 8, 10)
    inset = 4
    fill = meter_w if value <= 0 else meter_w * min(value, 1.0)
    body = [
        _el(
            "rect",
            cls="fs-meter-track",
            x=0,
            y=inset,
            width=meter_w,
            height=height - 2 * inset,
            rx=3,
            fill="currentColor",
            fill_opacity="0.15",
        ),
        _el(
            "rect",
            cls=f"fs-meter-fill fs-{level}",
            x=0,
            y=inset,
            width=fill,
            height=height - 2 * inset,
            rx=3,
            fill="currentColor",
        ),
        _el("text", text, cls=f"fs-value fs-{level}", x=meter_w + 6, y=height / 2, dy="0.35em"),
    ]
    state = {"ok": "ok", "warn": "running low", "bad": "exhausted"}[level]
    desc = f"{title}: {text} ({state})."
    return _svg("budget-bar", width, height, title, desc, body, standalone)


def sparkline(
    values: Sequence[float | None],
    *,
    width: int = 120,
    height: int = 28,
    title: str = "",
    value_format: Formatter = fmt_number,
    standalone: bool = False,
) -> str:
    """A word-sized trend: evenly spaced values, None breaks the line, a dot on the last value."""
    title = title or "Trend"
    points = [_finite(v) for v in values]
    present = [(i, v) for i, v in enumerate(points) if v is not None]
    if not present:
        return _no_data("sparkline", width, height, title, standalone)
    pad = 3
    low, high = min(v for _, v in present), max(v for _, v in present)

    def x_of(i: int) -> float:
        return pad + (width - 2 * pad) * (i / (len(points) - 1) if len(points) > 1 else 0.5)

    def y_of(v: float) -> float:
        return pad + (height - 2 * pad) * ((high - v) / (high - low) if high > low else 0.5)

    commands: list[str] = []
    pen_up = True
    for i, v in enumerate(points):
        if v is None:
            pen_up = True
            continue
        commands.append(f"{'M' if pen_up else 'L'}{_num(x_of(i))} {_num(y_of(v))}")
        pen_up = False
    last_i, last_v = present[-1]
    body = [
        f'<path class="fs-line fs-series-0" d="{" ".join(commands)}" fill="none" stroke="currentColor" '
        'stroke-width="1.5" stroke-linejoin="round" stroke-linecap="round"/>',
        _el("circle", cls="fs-last fs-series-0", cx=x_of(last_i), cy=y_of(last_v), r=2, fill="currentColor"),
    ]
    desc = (
        f"{title}: {len(present)} values, last {value_format(last_v)}, "
        f"lowest {value_format(low)}, highest {value_format(high)}."
    )
    return _svg("sparkline", width, height, title, desc, body, standalone)


def waterfall(
    rows: Sequence[WaterfallRow],
    *,
    start: datetime,
    end: datetime,
    width: int = 960,
    row_height: int = 22,
    title: str = "",
    standalone: bool = False,
) -> str:
    """An order's timeline across systems: one row per stage, span, exception or gap, in order.

    Spans are bars (at least 2 units wide), points in time are diamonds, an exception without an
    end is still open and runs to ``end``; SLA breaches carry ``fs-bad`` and a highlighted row.
    Each row holds a ``<title>`` tooltip with its label, times, status and detail.
    """
    title = title or "Order timeline"
    items = list(rows)
    t0, t1 = _ts(start), _ts(end)
    if not items or t1 <= t0:
        return _no_data("waterfall", width, 60, title, standalone)
    pad, indent, max_depth, top = 8, 12, 8, 28

    def depth_of(row: WaterfallRow) -> int:
        return min(max(row.depth, 0), max_depth)

    needed = max(depth_of(r) * indent + _text_width(r.label) for r in items) + 8
    label_w = min(max(math.ceil(needed), 80), round(width * 0.3))
    x0, x1 = pad + label_w + 8, width - pad
    plot_w = x1 - x0
    rows_h = len(items) * row_height
    total_h = top + rows_h + pad
    thickness = max(row_height - 8, 4)

    def x_of(t: float) -> float:
        return x0 + plot_w * (min(max(t, t0), t1) - t0) / (t1 - t0)

    body = [
        _el("rect", cls="fs-plot-area", x=x0, y=top, width=plot_w, height=rows_h, fill="none"),
        '<g class="fs-axis fs-axis-x">',
    ]
    body += _time_axis(t0, t1, x_of, _TIME_STEPS, (x0, x1, top - 4, top + rows_h), 14, width)
    body.append(_el("line", cls="fs-axis", x1=x0, y1=top - 4, x2=x1, y2=top - 4, **_AXIS))
    body.append("</g>")

    breaches = opened = 0
    for i, row in enumerate(items):
        y = top + i * row_height
        mid = y + row_height / 2
        kind, status = _slug(row.kind) or "span", _slug(row.status)
        is_open = row.end is None and kind == "exception"
        marks = [f"fs-kind-{kind}"]
        if status:
            marks.append(f"fs-status-{status}")
        if status in _ROW_STATUS_CLASS:
            marks.append(_ROW_STATUS_CLASS[status])
        if is_open:
            marks.append("fs-open")
        breach = status == "breach"
        breaches += breach
        opened += is_open
        group = ["fs-row", f"fs-kind-{kind}"] + ([f"fs-status-{status}"] if status else [])
        group += (["fs-breach"] if breach else []) + (["fs-open"] if is_open else [])
        begin = _ts(row.start)
        body.append(f'<g class="{" ".join(group)}" data-depth="{depth_of(row)}">')
        body.append(_el("title", _row_tooltip(row, begin, t1, is_open)))
        if i % 2:
            body.append(
                _el(
                    "rect",
                    cls="fs-row-alt",
                    x=0,
                    y=y,
                    width=width,
                    height=row_height,
                    fill="currentColor",
                    fill_opacity="0.04",
                )
            )
        if breach:
            body.append(
                _el(
                    "rect",
                    cls="fs-row-breach fs-bad",
                    x=0,
                    y=y,
                    width=width,
                    height=row_height,
                    fill="currentColor",
                    fill_opacity="0.12",
                )
            )
        label_cls = "fs-label fs-bad" if breach else "fs-label"
        label_x = pad + depth_of(row) * indent
        label = _truncate(row.label, pad + label_w - label_x)
        body.append(_el("text", label, cls=label_cls, x=label_x, y=mid, dy="0.35em"))
        if row.end is None and not is_open:
            x = x_of(begin)
            r = min(6.0, thickness / 2)
            d = f"M{_num(x)} {_num(mid - r)} L{_num(x + r)} {_num(mid)} L{_num(x)} {_num(mid + r)} L{_num(x - r)} {_num(mid)} Z"
            body.append(_el("path", cls=" ".join(["fs-marker", *marks]), d=d, fill="currentColor"))
            left_edge, right_edge = x - r, x + r
        else:
            a = x_of(begin)
            b = x1 if is_open or row.end is None else x_of(_ts(row.end))
            a, b = min(a, b), max(a, b)
            size = max(b - a, 2.0)
            a = min(a, x1 - size)
            body.append(
                _el(
                    "rect",
                    cls=" ".join(["fs-bar", *marks]),
                    x=a,
                    y=mid - thickness / 2,
                    width=size,
                    height=thickness,
                    fill="currentColor",
                )
            )
            left_edge, right_edge = a, a + size
        badge = "SLA breach" if breach else "open" if is_open else ""
        if badge:
            after = right_edge + 6 + _text_width(badge) <= x1
            body.append(
                _el(
                    "text",
                    badge,
                    cls=f"fs-badge {_ROW_STATUS_CLASS.get(status, 'fs-warn')}",
                    x=right_edge + 6 if after else left_edge - 6,
                    y=mid,
                    dy="0.35em",
                    text_anchor="start" if after else "end",
                )
            )
        body.append("</g>")

    desc = f"{title}: {len(items)} rows from {_fmt_time(t0)} to {_fmt_time(t1)}"
    desc += f"; {breaches} SLA breaches; {opened} open exceptions." if breaches or opened else "."
    return _svg("waterfall", width, total_h, title, desc, body, standalone)


def _row_tooltip(row: WaterfallRow, begin: float, chart_end: float, is_open: bool) -> str:
    if is_open:
        lines = [row.label, f"opened {_fmt_time(begin)}, open for {fmt_duration(chart_end - begin)}"]
    elif row.end is None:
        lines = [row.label, _fmt_time(begin)]
    else:
        finish = _ts(row.end)
        lines = [row.label, f"{_fmt_time(begin)} \u2192 {_fmt_time(finish)} ({fmt_duration(finish - begin)})"]
    if row.status:
        lines.append(f"status: {row.status}")
    if row.detail:
        lines.append(row.detail)
    return "\n".join(lines)


def _listing(title: str, entries: list[str], limit: int = 30) -> str:
    shown = "; ".join(entries[:limit])
    more = f"; and {len(entries) - limit} more" if len(entries) > limit else ""
    return f"{title}: {shown}{more}."


# The stylesheet embedded by standalone=True: a compact subset of static/charts.css, scoped to
# the chart so that an SVG pasted into a page does not restyle the page.
_DEFAULT_STYLE = (
    ".fs-chart{--fs-text:#1f2328;--fs-muted:#59636e;--fs-grid:#d1d9e0;--fs-axis:#818b98;"
    "--fs-ok:#1a7f37;--fs-warn:#9a6700;--fs-bad:#cf222e;--fs-threshold:#8250df;"
    "--fs-s0:#0072b2;--fs-s1:#d55e00;--fs-s2:#009e73;--fs-s3:#cc79a7;--fs-s4:#b58900;"
    "--fs-s5:#56b4e9;--fs-s6:#7a5195;--fs-s7:#6e7781;--fs-c:var(--fs-s0);"
    "color:var(--fs-text);font-family:system-ui,sans-serif;font-variant-numeric:tabular-nums}"
    "@media (prefers-color-scheme:dark){.fs-chart{--fs-text:#e6edf3;--fs-muted:#9198a1;"
    "--fs-grid:#30363d;--fs-axis:#656c76;--fs-ok:#3fb950;--fs-warn:#d29922;--fs-bad:#f85149;"
    "--fs-threshold:#bc8cff;--fs-s0:#4ea1f3;--fs-s1:#ff8c42;--fs-s2:#3fcf9f;--fs-s3:#e58fc3;"
    "--fs-s4:#f5c04a;--fs-s5:#8fd3ff;--fs-s6:#b392f0;--fs-s7:#adb5bd}}"
    ".fs-chart text{fill:var(--fs-text)}.fs-chart .fs-tick,.fs-chart .fs-nodata{fill:var(--fs-muted)}"
    ".fs-grid{stroke:var(--fs-grid);stroke-opacity:1}line.fs-axis{stroke:var(--fs-axis);stroke-opacity:1}"
    ".fs-series-0{--fs-c:var(--fs-s0)}.fs-series-1{--fs-c:var(--fs-s1)}.fs-series-2{--fs-c:var(--fs-s2)}"
    ".fs-series-3{--fs-c:var(--fs-s3)}.fs-series-4{--fs-c:var(--fs-s4)}.fs-series-5{--fs-c:var(--fs-s5)}"
    ".fs-series-6{--fs-c:var(--fs-s6)}.fs-series-7{--fs-c:var(--fs-s7)}"
    ".fs-kind-stage{--fs-c:var(--fs-s0)}.fs-kind-span{--fs-c:var(--fs-s5)}"
    ".fs-kind-exception{--fs-c:var(--fs-warn)}.fs-kind-gap{--fs-c:var(--fs-s7)}"
    ".fs-ok{--fs-c:var(--fs-ok)}.fs-warn{--fs-c:var(--fs-warn)}.fs-bad{--fs-c:var(--fs-bad)}"
    ".fs-line,.fs-swatch{stroke:var(--fs-c)}.fs-bar,.fs-marker,.fs-last,.fs-meter-fill{fill:var(--fs-c)}"
    ".fs-meter-track{fill:var(--fs-grid);fill-opacity:1}.fs-swatch{stroke-width:3}"
    ".fs-row-breach{fill:var(--fs-bad)}.fs-chart text.fs-ok,.fs-chart text.fs-warn,"
    ".fs-chart text.fs-bad{fill:var(--fs-c)}line.fs-threshold{stroke:var(--fs-threshold)}"
    ".fs-chart text.fs-threshold{fill:var(--fs-threshold)}"
)
