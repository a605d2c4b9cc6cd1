"""The alert lifecycle: candidates over time become pending, firing and resolved alerts.

An alert's identity is the fingerprint of its label set (Alertmanager's: FNV-1a 64 over the
sorted label names and values). While its condition holds it is *pending* until it has held for
the rule's ``for``, then *firing*; when the condition stops it stays firing for
``keep_firing_for`` (against flapping), then is *resolved*. A pending alert whose condition
stops is dropped (``inactive``). The clock is the evaluation's ``at``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from flowsight.alerts.model import Candidate, Rule

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_SEPARATOR = 0xFF


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's label-set fingerprint (FNV-1a 64), as 16 hex digits."""
    h = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode():
                h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
            h = ((h ^ _SEPARATOR) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


ACTIVE_STATES = ("pending", "firing")


@dataclass
class Alert:
    """One alert instance and where it stands."""

    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    rule_kind: str
    system_health: bool
    state: str  # pending | firing | resolved | inactive
    value: float
    active_since: datetime
    last_active_at: datetime
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    suppressed_by: str | None = None
    silenced_by: tuple[str, ...] = ()
    impacted: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def system(self) -> str:
        return self.labels.get("system", "")

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def snapshot(self) -> tuple[object, ...]:
        """What a change of is worth recording."""
        return (
            self.state,
            self.fired_at,
            self.resolved_at,
            self.suppressed_by,
            self.silenced_by,
            tuple(sorted(self.annotations.items())),
        )


def advance(
    alerts: dict[str, Alert], found: Iterable[Candidate], rules: Mapping[str, Rule], at: datetime
) -> None:
    """Move every alert one evaluation on, in place: ``found`` are the candidates holding at ``at``."""
    seen: set[str] = set()
    for candidate in found:
        labels = dict(candidate.labels)
        fp = fingerprint(labels)
        seen.add(fp)
        current = alerts.get(fp)
        rule = candidate.rule
        if current is None or not current.active:
            current = Alert(
                fingerprint=fp,
                labels=labels,
                annotations=dict(candidate.annotations),
                rule_kind=rule.kind,
                system_health=rule.system_health,
                state="pending",
                value=candidate.value,
                active_since=at,
                last_active_at=at,
            )
            alerts[fp] = current
        else:
            current.annotations = dict(candidate.annotations)
            current.value = candidate.value
            current.last_active_at = at
        if current.state == "pending" and at - current.active_since >= rule.for_:
            current.state, current.fired_at = "firing", at
    for fp, alert in alerts.items():
        if fp in seen or not alert.active:
            continue
        if alert.state == "pending":
            alert.state = "inactive"
            continue
        owner = rules.get(alert.name)
        keep = owner.keep_firing_for if owner else None
        if keep is None or at - alert.last_active_at >= keep:
            alert.state, alert.resolved_at = "resolved", at


def forget(alerts: dict[str, Alert], before: datetime) -> None:
    """Drop resolved alerts resolved before ``before`` and inactive ones (both stay recorded)."""
    for fp in [
        fp
        for fp, a in alerts.items()
        if a.state == "inactive"
        or (a.state == "resolved" and a.resolved_at is not None and a.resolved_at < before)
    ]:
        del alerts[fp]


def copy(alert: Alert) -> Alert:
    return replace(
        alert, labels=dict(alert.labels), annotations=dict(alert.annotations), impacted=list(alert.impacted)
    )
