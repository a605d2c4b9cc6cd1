"""The injected clock: evaluation and ingest code take ``now`` from here, never from the OS directly."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


class FixedClock:
    """A clock that stands still until moved (for tests and as-of evaluation)."""

    def __init__(self, now: datetime):
        self.now = now if now.tzinfo else now.replace(tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta
