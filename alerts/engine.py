"""One alert evaluation: rules -> candidates -> lifecycle -> suppression and silences -> state
recorded in ClickHouse -> notifications. Runs after each SLO evaluation, with its ``at``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from flowsight.alerts import lifecycle, suppression
from flowsight.alerts.dispatch import Dispatcher
from flowsight.alerts.lifecycle import Alert
from flowsight.alerts.model import RuleSet
from flowsight.alerts.rules import ActivitySource, Inputs, candidates
from flowsight.alerts.silences import SilenceStore, silenced_by
from flowsight.alerts.state import AlertStateStore
from flowsight.slo.model import SloCatalog
from flowsight.timefmt import iso_utc
from flowsight.topology import Topology
from flowsight.workflows import WorkflowCatalog

log = logging.getLogger(__name__)

RESOLVED_SHOWN = timedelta(hours=24)
"""How long a resolved alert stays in ``GET /api/alerts``."""


class AlertEngine:
    def __init__(
        self,
        rules: Callable[[], RuleSet],
        slos: Callable[[], SloCatalog],
        catalog: Callable[[], WorkflowCatalog],
        topology: Callable[[], Topology],
        activity: ActivitySource,
        state: AlertStateStore,
        silences: SilenceStore,
        dispatcher: Dispatcher | None,
        clock: Callable[[], datetime],
    ):
        self.rules = rules
        self.slos = slos
        self.catalog = catalog
        self.topology = topology
        self.activity = activity
        self.state = state
        self.silences = silences
        self.dispatcher = dispatcher
        self.clock = clock
        self._alerts: dict[str, Alert] | None = None
        self._lock = threading.RLock()

    def _current(self) -> dict[str, Alert]:
        if self._alerts is None:
            self._alerts = {a.fingerprint: a for a in self.state.load(self.clock() - RESOLVED_SHOWN)}
        return self._alerts

    def evaluate(
        self, at: datetime, slo_results: Sequence[Mapping[str, Any]], flow: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Advance every alert to ``at``; returns counts by state and notifications handed over."""
        with self._lock:
            alerts = self._current()
            rules = self.rules()
            found = candidates(
                rules,
                Inputs(
                    at=at,
                    slos=self.slos(),
                    slo_results=slo_results,
                    flow=flow,
                    catalog=self.catalog(),
                    activity=self.activity,
                ),
            )
            before = {fp: a.snapshot() for fp, a in alerts.items()}
            lifecycle.advance(alerts, found, {r.name: r for r in rules}, at)
            suppression.apply(alerts.values(), self.topology())
            in_force = self.silences.in_force(at)
            for alert in alerts.values():
                if alert.active:
                    alert.silenced_by = silenced_by(in_force, alert.labels, at)
            changed = [a for a in alerts.values() if a.snapshot() != before.get(a.fingerprint)]
            self.state.write(changed, at)
            notifications = 0
            if self.dispatcher is not None:
                notifications = self.dispatcher.dispatch(list(alerts.values()), at)
            lifecycle.forget(alerts, at - RESOLVED_SHOWN)
            counts: dict[str, int] = {
                "pending": 0,
                "firing": 0,
                "suppressed": 0,
                "silenced": 0,
                "resolved": 0,
            }
            for alert in alerts.values():
                counts[alert.state] = counts.get(alert.state, 0) + 1
                if alert.active and alert.suppressed_by:
                    counts["suppressed"] += 1
                if alert.active and alert.silenced_by:
                    counts["silenced"] += 1
            return {**counts, "changed": len(changed), "notifications": notifications}

    def list(self, *, include_resolved: bool = True) -> list[dict[str, Any]]:
        """``GET /api/alerts``: root causes first, then firing, pending, resolved."""
        with self._lock:
            alerts = [lifecycle.copy(a) for a in self._current().values() if a.state != "inactive"]
        impacted: dict[str, list[str]] = {}
        for alert in alerts:
            if alert.active and alert.suppressed_by:
                impacted.setdefault(alert.suppressed_by, []).append(alert.fingerprint)
        order = {"firing": 0, "pending": 1, "resolved": 2}
        out = []
        for alert in alerts:
            if alert.state == "resolved" and not include_resolved:
                continue
            suppressed = alert.active and alert.suppressed_by is not None
            out.append(
                {
                    "fingerprint": alert.fingerprint,
                    "name": alert.name,
                    "state": "suppressed" if suppressed else alert.state,
                    "lifecycle": alert.state,
                    "labels": alert.labels,
                    "annotations": alert.annotations,
                    "value": alert.value,
                    "started_at": iso_utc(alert.fired_at or alert.active_since),
                    "active_since": iso_utc(alert.active_since),
                    "fired_at": iso_utc(alert.fired_at),
                    "resolved_at": iso_utc(alert.resolved_at),
                    "suppressed_by": alert.suppressed_by if suppressed else None,
                    "silenced_by": list(alert.silenced_by) if alert.active else [],
                    "impacted": sorted(impacted.get(alert.fingerprint, [])),
                    "root_cause": bool(impacted.get(alert.fingerprint)),
                }
            )
        out.sort(
            key=lambda a: (
                not a["root_cause"],
                a["state"] == "suppressed",
                order.get(str(a["lifecycle"]), 3),
                a["name"],
                a["fingerprint"],
            )
        )
        return out
