"""What a receiver is told: a group of alerts, each firing or resolved.

The shape follows Alertmanager's (webhook v4 and API v2), so every notifier renders the same
thing its own way. Built by the dispatcher, sent by :mod:`flowsight.alerts.notifiers`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class AlertView:
    """One alert as notified. ``labels`` include ``alertname``; ``ends_at`` is None while firing."""

    fingerprint: str
    status: str  # "firing" | "resolved"
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None = None
    generator_url: str = ""


@dataclass(frozen=True)
class Notification:
    """A group of alerts for one receiver (alerts sharing the values of the group_by labels)."""

    receiver: str
    group_key: str
    group_labels: dict[str, str]
    alerts: tuple[AlertView, ...]
    external_url: str = ""
    truncated_alerts: int = field(default=0)

    @property
    def status(self) -> str:
        """``firing`` while any alert of the group fires, else ``resolved``."""
        return "firing" if any(a.status == "firing" for a in self.alerts) else "resolved"

    @property
    def common_labels(self) -> dict[str, str]:
        return _common([a.labels for a in self.alerts])

    @property
    def common_annotations(self) -> dict[str, str]:
        return _common([a.annotations for a in self.alerts])


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = maps[0]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}


class DeliveryError(Exception):
    """A receiver did not take the notification (network error, timeout or non-2xx answer)."""
