"""The alerting domain model: rules as frozen values, and the alerts they produce."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

Severity = Literal["page", "ticket"]

SYSTEM_HEALTH_KINDS = frozenset({"system_error_ratio", "system_silence"})
"""Rule kinds whose firing alerts make their system a root cause that suppresses dependents."""


@dataclass(frozen=True)
class Rule:
    """One alert rule. ``params`` holds the kind's own settings (see :mod:`flowsight.alerts.spec`)."""

    name: str
    kind: str
    for_: timedelta = timedelta(0)
    keep_firing_for: timedelta = timedelta(0)
    severity: Severity = "ticket"
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def system_health(self) -> bool:
        return self.kind in SYSTEM_HEALTH_KINDS


@dataclass(frozen=True)
class RuleSet:
    """Every configured rule, in file order."""

    rules: tuple[Rule, ...]

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def get(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)


@dataclass(frozen=True)
class Candidate:
    """What a rule found at one evaluation: an alert instance whose condition holds (``active``).

    ``labels`` include ``alertname``, ``system`` and ``severity``; their fingerprint is the
    alert's identity.
    """

    rule: Rule
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    value: float
