"""The SLO domain model: frozen values the engine computes with, and the burn-rate window table.

What users write lives in :mod:`flowsight.slo.spec` and is mapped here by
:mod:`flowsight.slo.loading`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import ClassVar, Literal


class CalendarMonth(enum.Enum):
    """The marker of an SLO window that is the current calendar month rather than a rolling duration."""

    CALENDAR_MONTH = "calendar_month"


CALENDAR_MONTH = CalendarMonth.CALENDAR_MONTH

Window = timedelta | Literal[CalendarMonth.CALENDAR_MONTH]


@dataclass(frozen=True)
class CompletionSli:
    """Good: correlations of ``workflow`` that reach a terminal stage within its completion deadline."""

    kind: ClassVar[str] = "completion"
    workflow: str


@dataclass(frozen=True)
class StageLatencySli:
    """Good: correlations that reach ``to_stage`` within ``threshold`` of reaching ``from_stage``."""

    kind: ClassVar[str] = "stage_latency"
    workflow: str
    from_stage: str
    to_stage: str
    threshold: timedelta


@dataclass(frozen=True)
class ExceptionAgeSli:
    """Good: exceptions resolved within ``threshold``; ``workflow`` None means every workflow."""

    kind: ClassVar[str] = "exception_age"
    threshold: timedelta
    workflow: str | None = None


@dataclass(frozen=True)
class SpanErrorRatioSli:
    """Good: spans that did not end in error; ``services`` None means every service."""

    kind: ClassVar[str] = "span_error_ratio"
    services: tuple[str, ...] | None = None


@dataclass(frozen=True)
class FreshnessSli:
    """Good: evaluations at which a system's newest data is younger than ``threshold``.

    ``systems`` None means every system that reports.
    """

    kind: ClassVar[str] = "freshness"
    threshold: timedelta
    systems: tuple[str, ...] | None = None


Sli = CompletionSli | StageLatencySli | ExceptionAgeSli | SpanErrorRatioSli | FreshnessSli


@dataclass(frozen=True)
class Slo:
    """One service level objective; ``group_by`` empty means one series, else one per group."""

    name: str
    objective: float
    window: Window
    sli: Sli
    description: str = ""
    group_by: tuple[str, ...] = ()
    min_events: int = 20
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def burn_windows(self) -> tuple[BurnWindow, ...]:
        """The burn-rate alert windows scaled to this SLO's window."""
        return burn_windows(self.window)


@dataclass(frozen=True)
class SloCatalog:
    """Every configured SLO, by name."""

    slos: tuple[Slo, ...]
    _by_name: Mapping[str, Slo] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {slo.name: slo for slo in self.slos})

    def get(self, name: str) -> Slo | None:
        return self._by_name.get(name)

    def __iter__(self) -> Iterator[Slo]:
        return iter(self.slos)

    def __len__(self) -> int:
        return len(self.slos)

    def names(self) -> list[str]:
        return [slo.name for slo in self.slos]

    @classmethod
    def of(cls, slos: Iterable[Slo]) -> SloCatalog:
        return cls(tuple(slos))


# -- burn-rate windows ------------------------------------------------------------------------


@dataclass(frozen=True)
class BurnWindow:
    """One multi-window burn-rate condition.

    It fires when the error rate is at least ``burn_rate`` times the budgeted rate over both the
    ``long`` window (enough budget is spent) and the ``short`` one (it is still being spent).
    """

    severity: Literal["page", "ticket"]
    burn_rate: float
    long: timedelta
    short: timedelta


BURN_TABLE_SLO_WINDOW = timedelta(days=30)
"""The SLO window the rows of :data:`BURN_WINDOWS` are defined for."""

# Multiwindow, multi-burn-rate alerts as in the Google SRE Workbook, chapter 5 "Alerting on SLOs",
# recommendation 6 (https://sre.google/workbook/alerting-on-slos/), with the 3x-over-1d ticket row
# Sloth adds. Each long window spends 2%, 5%, 10% and 10% of a 30-day budget; each short window
# is 1/12 of its long one, so an alert resets soon after the burning stops.
BURN_WINDOWS: tuple[BurnWindow, ...] = (
    BurnWindow("page", 14.4, timedelta(hours=1), timedelta(minutes=5)),
    BurnWindow("page", 6.0, timedelta(hours=6), timedelta(minutes=30)),
    BurnWindow("ticket", 3.0, timedelta(days=1), timedelta(hours=2)),
    BurnWindow("ticket", 1.0, timedelta(days=3), timedelta(hours=6)),
)

_MICROSECOND = timedelta(microseconds=1)


def _scale(delta: timedelta, numerator: int, denominator: int) -> timedelta:
    # Integer microseconds, rounded half up: 1h * 28d / 30d is exactly 56m, not 55m59.999999s.
    micros = delta // _MICROSECOND
    return timedelta(microseconds=(micros * numerator + denominator // 2) // denominator)


def burn_windows(slo_window: Window) -> tuple[BurnWindow, ...]:
    """The burn-rate windows for an SLO window: the 30-day table scaled in proportion.

    The same burn rate then spends the same share of the budget (a 28d SLO pages at 14.4x over
    56m and 4m40s). A calendar month uses the table as it stands, 30 days being its typical length.

    Raises:
        ValueError: the window is not longer than zero.
    """
    if slo_window is CALENDAR_MONTH:
        return BURN_WINDOWS
    if slo_window <= timedelta(0):
        raise ValueError(f"an SLO window must be longer than zero, got {slo_window}")
    numerator, denominator = slo_window // _MICROSECOND, BURN_TABLE_SLO_WINDOW // _MICROSECOND
    return tuple(
        BurnWindow(
            row.severity,
            row.burn_rate,
            _scale(row.long, numerator, denominator),
            _scale(row.short, numerator, denominator),
        )
        for row in BURN_WINDOWS
    )
