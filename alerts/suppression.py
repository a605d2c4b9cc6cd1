"""Dependency-aware suppression: one root cause instead of forty symptoms.

An alert, pending or firing, is suppressed while a system it depends on — its own system or one
upstream through the topology, transitively — has a firing system-health alert. The root cause
named is the one furthest upstream; a system-health alert is not suppressed by another on its own
system (both are root causes of that system), only by one upstream.
"""

from __future__ import annotations

from collections.abc import Iterable

from flowsight.alerts.lifecycle import Alert
from flowsight.topology import Topology


def apply(alerts: Iterable[Alert], topology: Topology) -> None:
    """Set ``suppressed_by`` and ``impacted`` on the active alerts, in place."""
    active = [a for a in alerts if a.active]
    roots: dict[str, Alert] = {}
    for alert in sorted(active, key=lambda a: (a.name, a.fingerprint)):
        if alert.system_health and alert.state == "firing":
            roots.setdefault(alert.system, alert)
    for alert in active:
        alert.impacted = []
    for alert in active:
        chain = topology.upstream(alert.system)
        if not alert.system_health:
            chain = [alert.system, *chain]
        upstream_roots = [roots[s] for s in chain if s in roots]
        root = upstream_roots[-1] if upstream_roots else None  # the furthest upstream
        alert.suppressed_by = root.fingerprint if root is not None and root is not alert else None
        if root is not None and root is not alert:
            root.impacted.append(alert.fingerprint)
    for alert in active:
        alert.impacted.sort()
