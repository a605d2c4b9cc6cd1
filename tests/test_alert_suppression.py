"""Lifecycle and dependency-aware suppression, as pure functions over alerts."""

from __future__ import annotations

from datetime import timedelta

from flowsight.alerts import suppression
from flowsight.alerts.lifecycle import Alert, advance, fingerprint
from flowsight.alerts.model import Candidate, Rule
from flowsight.topology import DEFAULT_TOPOLOGY, System, Topology
from tests.conftest import T0

HEALTH = Rule("SystemUnhealthy", "system_error_ratio", for_=timedelta(minutes=1), severity="page")
STUCK = Rule("StuckOrders", "stuck_orders", for_=timedelta(minutes=5))
RULES = {r.name: r for r in (HEALTH, STUCK)}


def candidate(rule: Rule, system: str, **labels: str) -> Candidate:
    return Candidate(
        rule, {"alertname": rule.name, "system": system, "severity": rule.severity, **labels}, {}, 1.0
    )


def test_fingerprint_is_alertmanagers_fnv1a_over_sorted_labels() -> None:
    # Alertmanager's model.LabelSet{}.Fingerprint() of the empty set is the FNV-64a offset basis.
    assert fingerprint({}) == "cbf29ce484222325"
    assert fingerprint({"b": "2", "a": "1"}) == fingerprint({"a": "1", "b": "2"})
    assert fingerprint({"a": "1"}) != fingerprint({"a": "2"})


def test_pending_then_firing_then_resolved_and_pending_dropped() -> None:
    alerts: dict[str, Alert] = {}
    erp = candidate(HEALTH, "erp")
    advance(alerts, [erp], RULES, T0)
    [alert] = alerts.values()
    assert (alert.state, alert.active_since) == ("pending", T0)
    advance(alerts, [erp], RULES, T0 + timedelta(seconds=59))
    assert alert.state == "pending"
    advance(alerts, [erp], RULES, T0 + timedelta(minutes=1))
    assert (alert.state, alert.fired_at) == ("firing", T0 + timedelta(minutes=1))
    advance(alerts, [], RULES, T0 + timedelta(minutes=2))
    assert (alert.state, alert.resolved_at) == ("resolved", T0 + timedelta(minutes=2))
    # Back again: a new pending period, same identity.
    advance(alerts, [erp], RULES, T0 + timedelta(minutes=3))
    assert (alerts[alert.fingerprint].state, alerts[alert.fingerprint].active_since) == (
        "pending",
        T0 + timedelta(minutes=3),
    )
    advance(alerts, [], RULES, T0 + timedelta(minutes=4))
    assert alerts[alert.fingerprint].state == "inactive"


def _firing(*found: Candidate) -> dict[str, Alert]:
    alerts: dict[str, Alert] = {}
    advance(alerts, found, RULES, T0)
    advance(alerts, found, RULES, T0 + timedelta(minutes=10))
    return alerts


def named(alerts: dict[str, Alert], system: str, name: str = "StuckOrders") -> Alert:
    return next(a for a in alerts.values() if a.system == system and a.name == name)


def test_a_firing_system_health_alert_suppresses_its_own_and_downstream_systems_two_levels_deep() -> None:
    # Default topology: wms -> erp, shipping -> wms -> erp -> middleware; crm -> oms.
    alerts = _firing(
        candidate(HEALTH, "erp"),
        candidate(STUCK, "erp", stage="erp_order_created"),
        candidate(STUCK, "wms", stage="fulfillment_released"),
        candidate(STUCK, "shipping", stage="shipped"),
        candidate(STUCK, "oms", stage="order_created"),
        candidate(HEALTH, "wms"),
    )
    suppression.apply(alerts.values(), DEFAULT_TOPOLOGY)
    root = named(alerts, "erp", "SystemUnhealthy")
    assert root.suppressed_by is None
    for system in ("erp", "wms", "shipping"):
        assert named(alerts, system).suppressed_by == root.fingerprint
    assert named(alerts, "wms", "SystemUnhealthy").suppressed_by == root.fingerprint
    assert named(alerts, "oms").suppressed_by is None  # oms does not depend on erp
    assert root.impacted == sorted(
        [named(alerts, s).fingerprint for s in ("erp", "wms", "shipping")]
        + [named(alerts, "wms", "SystemUnhealthy").fingerprint]
    )


def test_the_furthest_upstream_root_wins_and_a_pending_root_suppresses_nothing() -> None:
    alerts = _firing(
        candidate(HEALTH, "middleware"),
        candidate(HEALTH, "erp"),
        candidate(STUCK, "wms", stage="fulfillment_released"),
    )
    suppression.apply(alerts.values(), DEFAULT_TOPOLOGY)
    middleware = named(alerts, "middleware", "SystemUnhealthy")
    assert named(alerts, "erp", "SystemUnhealthy").suppressed_by == middleware.fingerprint
    assert named(alerts, "wms").suppressed_by == middleware.fingerprint

    pending: dict[str, Alert] = {}
    advance(pending, [candidate(HEALTH, "erp"), candidate(STUCK, "wms", stage="x")], RULES, T0)
    suppression.apply(pending.values(), DEFAULT_TOPOLOGY)
    assert all(a.suppressed_by is None for a in pending.values())


def test_pending_symptoms_are_suppressed_too_and_released_when_the_root_resolves() -> None:
    alerts: dict[str, Alert] = {}
    health, stuck = candidate(HEALTH, "erp"), candidate(STUCK, "wms", stage="fulfillment_released")
    advance(alerts, [health], RULES, T0)
    advance(alerts, [health, stuck], RULES, T0 + timedelta(minutes=1))
    suppression.apply(alerts.values(), DEFAULT_TOPOLOGY)
    symptom = named(alerts, "wms")
    assert (symptom.state, symptom.suppressed_by) == (
        "pending",
        named(alerts, "erp", "SystemUnhealthy").fingerprint,
    )
    advance(alerts, [stuck], RULES, T0 + timedelta(minutes=7))
    suppression.apply(alerts.values(), DEFAULT_TOPOLOGY)
    assert (symptom.state, symptom.suppressed_by) == ("firing", None)


def test_a_custom_topology_is_walked_transitively() -> None:
    topology = Topology((System("a"), System("b", ("a",)), System("c", ("b",)), System("d", ("c",))))
    alerts = _firing(candidate(HEALTH, "a"), candidate(STUCK, "d", stage="s"))
    suppression.apply(alerts.values(), topology)
    assert named(alerts, "d").suppressed_by == named(alerts, "a", "SystemUnhealthy").fingerprint
