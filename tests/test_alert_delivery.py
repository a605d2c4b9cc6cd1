"""Notification delivery: grouping timers, a failing receiver, and a restart mid-incident."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from flowsight.app import build_services, create_app
from flowsight.settings import Settings
from flowsight.store import Store
from tests.alerting import alerts, evaluate, post_spans
from tests.conftest import T0
from tests.receiver import Receiver

RULES = """version: 1
rules:
  - name: SystemUnhealthy
    kind: system_error_ratio
    window: 5m
    min_events: 20
    ratio: 0.2
"""


def make_settings(tmp_path: Path, webhook: Receiver, slack: Receiver | None = None, **extra: Any) -> Settings:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    return Settings(
        data_dir=tmp_path,
        database=f"t_{uuid.uuid4().hex[:12]}",
        evaluation_interval_seconds=0,
        alert_rules_file=rules,
        alert_webhook_url=webhook.url,
        slack_webhook_url=f"{slack.url}/services/T/B/X" if slack else None,
        notify_retry_base_seconds=0.01,
        **extra,
    )


def failing(client: TestClient, system: str, at: datetime) -> None:
    post_spans(client, system, at, ok=10, errors=20, prefix=f"{system}-{at.isoformat()}")


def run(client: TestClient, services: Any, at: datetime) -> dict[str, Any]:
    body = evaluate(client, at)
    assert services.dispatcher.drain(10)
    return body


def told(receiver: Receiver) -> list[list[tuple[str, str]]]:
    """Each webhook notification as its (system, status) pairs."""
    return [[(a["labels"]["system"], a["status"]) for a in r.json["alerts"]] for r in receiver.requests]


class TestGrouping:
    @pytest.fixture
    def settings(self, tmp_path: Path, webhook: Receiver) -> Settings:
        return make_settings(
            tmp_path,
            webhook,
            alert_group_by=["alertname"],
            alert_group_wait_seconds=60,
            alert_group_interval_seconds=300,
            alert_repeat_interval_seconds=3600,
        )

    def test_group_wait_group_interval_and_repeat_interval(
        self, client: TestClient, services: Any, webhook: Receiver
    ) -> None:
        at = T0
        failing(client, "erp", at)
        run(client, services, at)  # erp fires; the new group waits 60 s
        assert told(webhook) == []
        failing(client, "erp", at + timedelta(seconds=30))
        run(client, services, at + timedelta(seconds=30))
        assert told(webhook) == []
        run(client, services, at + timedelta(seconds=60))
        assert told(webhook) == [[("erp", "firing")]]
        # crm joins the group 30 s later: a change, held until 300 s after the last notification.
        failing(client, "crm", at + timedelta(seconds=90))
        run(client, services, at + timedelta(seconds=90))
        for t in (120, 240, 330):
            failing(client, "erp", at + timedelta(seconds=t))
            failing(client, "crm", at + timedelta(seconds=t))
            run(client, services, at + timedelta(seconds=t))
        assert len(told(webhook)) == 1
        run(client, services, at + timedelta(seconds=360))
        assert told(webhook)[-1] == [("crm", "firing"), ("erp", "firing")]
        assert webhook.requests[-1].json["groupLabels"] == {"alertname": "SystemUnhealthy"}
        # Nothing changes: repeated once the repeat interval (1h) has passed, not before.
        for t in (600, 3600, 3959):
            failing(client, "erp", at + timedelta(seconds=t))
            failing(client, "crm", at + timedelta(seconds=t))
            run(client, services, at + timedelta(seconds=t))
        assert len(told(webhook)) == 2
        failing(client, "erp", at + timedelta(seconds=3960))
        failing(client, "crm", at + timedelta(seconds=3960))
        run(client, services, at + timedelta(seconds=3960))
        assert len(told(webhook)) == 3
        assert told(webhook)[-1] == [("crm", "firing"), ("erp", "firing")]


class TestFailingReceiver:
    @pytest.fixture
    def settings(self, tmp_path: Path, webhook: Receiver, slack: Receiver) -> Settings:
        return make_settings(
            tmp_path,
            webhook,
            slack,
            alert_group_wait_seconds=0,
            alert_group_interval_seconds=0,
            notify_retry_attempts=3,
        )

    def test_a_failing_receiver_stops_neither_the_others_nor_evaluation(
        self, client: TestClient, services: Any, webhook: Receiver, slack: Receiver
    ) -> None:
        webhook.respond_with(500)
        failing(client, "erp", T0)
        body = run(client, services, T0)
        assert body["alerts"]["firing"] == 1
        assert len(slack.requests) == 1 and "[FIRING" in slack.requests[0].json["text"]
        # Three attempts, backing off, then the notification is dropped for now.
        assert [r.status for r in webhook.requests] == [500, 500, 500]
        assert services.dispatcher.stats.dropped == {"webhook": 1}
        assert services.dispatcher.stats.failed_attempts == {"webhook": 3}
        # The webhook is back: the next evaluation tells it; Slack, already told, hears nothing new.
        webhook.respond_with(200)
        failing(client, "erp", T0 + timedelta(minutes=1))
        run(client, services, T0 + timedelta(minutes=1))
        assert [r.status for r in webhook.requests][-1] == 200
        assert told(webhook)[-1] == [("erp", "firing")]
        assert len(slack.requests) == 1


class TestRestart:
    def test_a_restart_mid_incident_neither_renotifies_nor_forgets_the_resolve(
        self, tmp_path: Path, engine: Store, clock: Any, webhook: Receiver
    ) -> None:
        settings = make_settings(
            tmp_path, webhook, alert_group_wait_seconds=0, alert_group_interval_seconds=0
        )
        first = build_services(settings, store=engine, clock=clock)
        with TestClient(create_app(first)) as client:
            failing(client, "erp", T0)
            run(client, first, T0)
            assert told(webhook) == [[("erp", "firing")]]
            [before] = alerts(client)
        # A new process over the same database.
        second = build_services(settings, store=engine, clock=clock)
        with TestClient(create_app(second)) as client:
            [after] = alerts(client)
            assert (after["fingerprint"], after["state"], after["fired_at"]) == (
                before["fingerprint"],
                "firing",
                before["fired_at"],
            )
            failing(client, "erp", T0 + timedelta(minutes=1))
            run(client, second, T0 + timedelta(minutes=1))
            assert len(webhook.requests) == 1  # not told again
            # The spans leave the 5m window: resolved, and the resolve is told.
            run(client, second, T0 + timedelta(minutes=7))
            assert told(webhook)[-1] == [("erp", "resolved")]
        third = build_services(settings, store=engine, clock=clock)
        with TestClient(create_app(third)) as client:
            [resolved] = alerts(client)
            assert (resolved["state"], resolved["resolved_at"]) == ("resolved", "2026-11-26T10:07:00Z")
            run(client, third, T0 + timedelta(minutes=8))
            assert len(webhook.requests) == 2  # the resolve is not told twice


class TestSilences:
    @pytest.fixture
    def settings(self, tmp_path: Path, webhook: Receiver) -> Settings:
        return make_settings(tmp_path, webhook, alert_group_wait_seconds=0, alert_group_interval_seconds=0)

    def test_a_silenced_alert_is_listed_but_not_notified_until_the_silence_ends(
        self, client: TestClient, services: Any, clock: Any, webhook: Receiver
    ) -> None:
        clock.now = T0
        response = client.post(
            "/api/silences",
            json={
                "matchers": [{"name": "system", "value": "er.", "isRegex": True}],
                "endsAt": "2026-11-26T10:30:00Z",
                "createdBy": "sre",
                "comment": "ERP maintenance window",
            },
        )
        assert response.status_code == 200, response.text
        silence_id = response.json()["silenceID"]
        failing(client, "erp", T0)
        failing(client, "crm", T0)
        run(client, services, T0)
        by_system = {a["labels"]["system"]: a for a in alerts(client)}
        assert by_system["erp"]["silenced_by"] == [silence_id]
        assert by_system["crm"]["silenced_by"] == []
        assert told(webhook) == [[("crm", "firing")]]
        # The silence is deleted (expired): the ERP alert, still failing, is told now.
        clock.now = T0 + timedelta(minutes=1)
        assert client.delete(f"/api/silences/{silence_id}").status_code == 200
        failing(client, "erp", T0 + timedelta(minutes=1))
        run(client, services, T0 + timedelta(minutes=1))
        assert [("erp", "firing")] in told(webhook)
        assert {a["labels"]["system"]: a for a in alerts(client)}["erp"]["silenced_by"] == []


class TestMetrics:
    @pytest.fixture
    def settings(self, tmp_path: Path, webhook: Receiver) -> Settings:
        return make_settings(tmp_path, webhook, alert_group_wait_seconds=0, notify_retry_attempts=2)

    def test_alerts_and_deliveries_on_metrics(
        self, client: TestClient, services: Any, webhook: Receiver
    ) -> None:
        webhook.respond_with(500, times=1)
        failing(client, "erp", T0)
        run(client, services, T0)
        text = client.get("/metrics").text
        assert 'flowsight_alerts{state="firing"} 1.0' in text
        assert 'flowsight_alerts{state="pending"} 0.0' in text
        assert 'flowsight_alert_active{alertname="SystemUnhealthy",fingerprint="' in text
        assert 'flowsight_notifications_total{receiver="webhook"} 1.0' in text
        assert 'flowsight_notification_failures_total{receiver="webhook"} 1.0' in text
        assert 'flowsight_notifications_dropped_total{receiver="webhook"} 0.0' in text
