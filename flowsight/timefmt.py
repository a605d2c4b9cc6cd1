"""Timestamps as the API writes them: RFC 3339 in UTC with a ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(ts: datetime) -> datetime:
    """``ts`` with its zone set to UTC (ClickHouse returns naive UTC datetimes)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def iso_utc(ts: datetime | None) -> str | None:
    """``2026-11-26T10:00:00.123Z``; None stays None."""
    if ts is None:
        return None
    return as_utc(ts).isoformat().replace("+00:00", "Z")


def to_ms(ts: datetime) -> int:
    """Milliseconds since the epoch."""
    return int(as_utc(ts).timestamp() * 1000)
