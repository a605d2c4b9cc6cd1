"""Alerts and notification delivery as Prometheus metrics, read from memory at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flowsight.alerts.dispatch import Dispatcher
from flowsight.alerts.engine import AlertEngine
from flowsight.store import StoreUnavailable

STATES = ("pending", "firing", "suppressed", "silenced")


class AlertMetrics(Collector):
    """``flowsight_alerts`` by state, one ``flowsight_alert_active`` series per active alert
    (like Prometheus's ``ALERTS``), and the notification counters per receiver."""

    def __init__(self, engine: AlertEngine, dispatcher: Dispatcher | None):
        self.engine = engine
        self.dispatcher = dispatcher

    def collect(self) -> Iterator[Metric]:
        try:
            alerts = self.engine.list(include_resolved=False)
        except StoreUnavailable:  # state not read yet and the database away: the rest still answers
            alerts = None
        if alerts is not None:
            yield from self._alerts(alerts)
        yield from self._notifications()

    def _alerts(self, alerts: list[dict[str, Any]]) -> Iterator[Metric]:
        by_state = GaugeMetricFamily("flowsight_alerts", "Alerts by state.", labels=["state"])
        counts = dict.fromkeys(STATES, 0)
        active = GaugeMetricFamily(
            "flowsight_alert_active",
            "1 per pending, firing or suppressed alert, with its state.",
            labels=["alertname", "system", "severity", "state", "fingerprint"],
        )
        for alert in alerts:
            counts[alert["state"]] = counts.get(alert["state"], 0) + 1
            if alert["silenced_by"]:
                counts["silenced"] += 1
            labels = alert["labels"]
            active.add_metric(
                [
                    alert["name"],
                    labels.get("system", ""),
                    labels.get("severity", ""),
                    alert["state"],
                    alert["fingerprint"],
                ],
                1,
            )
        for state in STATES:
            by_state.add_metric([state], counts.get(state, 0))
        yield by_state
        yield active

    def _notifications(self) -> Iterator[Metric]:
        sent = CounterMetricFamily(
            "flowsight_notifications", "Notifications delivered, per receiver.", labels=["receiver"]
        )
        failed = CounterMetricFamily(
            "flowsight_notification_failures", "Failed delivery attempts, per receiver.", labels=["receiver"]
        )
        dropped = CounterMetricFamily(
            "flowsight_notifications_dropped",
            "Notifications given up after every retry, per receiver (planned again next evaluation).",
            labels=["receiver"],
        )
        if self.dispatcher is not None:
            stats = self.dispatcher.stats
            for receiver in self.dispatcher.receivers:
                sent.add_metric([receiver.name], stats.sent.get(receiver.name, 0))
                failed.add_metric([receiver.name], stats.failed_attempts.get(receiver.name, 0))
                dropped.add_metric([receiver.name], stats.dropped.get(receiver.name, 0))
        yield sent
        yield failed
        yield dropped
