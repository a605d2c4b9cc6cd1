"""Human durations used across config files: ``30s``, ``5m``, ``24h``, ``14d``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")


def parse_duration(value: str | int | float) -> timedelta:
    """Parse a duration such as ``15m`` or a number of seconds.

    Raises:
        ValueError: the text is not a non-negative duration with a unit of ms, s, m, h, d or w.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 24h or 14d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return _seconds(value)
    match = _PATTERN.match(value)
    if not match:
        raise ValueError(f"invalid duration {value!r}: expected e.g. 30s, 5m, 24h or 14d")
    number, unit = match.groups()
    return _seconds(float(number) * _UNITS[unit])


def _seconds(seconds: float) -> timedelta:
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"duration too large: {seconds:g} seconds") from None


def format_duration(delta: timedelta) -> str:
    """Render a timedelta in the largest unit that divides it exactly (``90m`` -> ``90m``)."""
    seconds = delta.total_seconds()
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    text = f"{seconds:.6f}".rstrip("0").rstrip(".")
    return f"{text or '0'}s"
