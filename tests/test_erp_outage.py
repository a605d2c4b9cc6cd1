"""End to end: an ERP outage pages once, in a real Alertmanager, as the root cause.

The ERP's spans fail, orders pile up at erp_order_created and (downstream, in the warehouse) at
fulfillment_released, exceptions age at the ERP's stage. flowsight evaluates every minute as
the scheduler would (``POST /api/evaluate?at=``); Alertmanager (Debian's
prometheus-alertmanager, on a loopback port) must end up holding exactly one alert, the ERP's
SystemUnhealthy, listing what it impacts, while flowsight shows every symptom suppressed by it.
Recovery resolves them all. The webhook and Slack bodies are checked at a local receiver.

Times are set in the past (the evaluations run hours ago) so Alertmanager, which reckons with
the wall clock, sees a resolved alert's ``endsAt`` as passed; the service's clock is the wall
clock, from which a firing alert's ``endsAt`` is set.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from flowsight.alerts.lifecycle import fingerprint
from flowsight.settings import Settings
from flowsight.timefmt import iso_utc
from tests.alerting import alerts, by_name, evaluate, failure, order, post_events, post_spans
from tests.alertmanager import AlertmanagerProcess, alertmanager  # noqa: F401  (fixture)
from tests.receiver import Receiver

NOW = datetime.now(UTC).replace(microsecond=0)
B = NOW - timedelta(hours=8)  # the outage starts (first evaluation)


@pytest.fixture
def settings(
    tmp_path: Path,
    alertmanager: AlertmanagerProcess,  # noqa: F811
    webhook: Receiver,
    slack: Receiver,
) -> Settings:
    # The default rules, with burn-rate pages only: a ticket (3x over 1d, 1x over 3d) rightly
    # outlasts an incident by hours, past the end of this test.
    rules = tmp_path / "rules.yaml"
    defaults = (Path(__file__).parent.parent / "alerts" / "defaults.yaml").read_text()
    rules.write_text(
        defaults.replace("    kind: burn_rate\n", "    kind: burn_rate\n    severities: [page]\n")
    )
    return Settings(
        data_dir=tmp_path,
        database=f"t_{uuid.uuid4().hex[:12]}",
        evaluation_interval_seconds=0,
        alert_rules_file=rules,
        alertmanager_url=alertmanager.url,
        alert_webhook_url=webhook.url,
        slack_webhook_url=f"{slack.url}/services/T000/B000/XXXX",
        alert_group_wait_seconds=0,
        alert_group_interval_seconds=0,
        notify_retry_base_seconds=0.05,
        external_url="http://flowsight.example",
    )


OUTAGE_REPORTERS = ("oms", "payments")
"""What keeps reporting through the outage: the storefront and payments."""


def heartbeat_events(at: datetime, systems: tuple[str, ...] = OUTAGE_REPORTERS) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"R-{system}-{iso_utc(at)}",
            "correlation_id": f"R-{system}-{iso_utc(at)}",
            "workflow": "return_to_refund",
            "stage": "return_requested",
            "system": system,
            "occurred_at": iso_utc(at - timedelta(seconds=20)),
        }
        for system in systems
    ]


def step(
    client: TestClient,
    services: Any,
    at: datetime,
    *,
    erp_errors: int,
    erp_ok: int = 0,
    reporters: tuple[str, ...] = OUTAGE_REPORTERS,
) -> dict[str, Any]:
    post_events(client, heartbeat_events(at, reporters))
    post_spans(client, "erp", at, ok=erp_ok, errors=erp_errors, prefix=iso_utc(at) or "")
    body = evaluate(client, at)
    assert services.dispatcher.drain(10)
    return body


def test_erp_outage_pages_once_as_root_cause_then_recovers(
    client: TestClient,
    services: Any,
    clock: Any,
    alertmanager: AlertmanagerProcess,  # noqa: F811
    webhook: Receiver,
    slack: Receiver,
) -> None:
    clock.now = NOW
    # Before the outage: 13 orders reached inventory_reserved (3 with a failed ERP posting at
    # erp_order_created, 90 minutes ago), 6 reached erp_order_created and wait for the warehouse.
    events = [e for i in range(10) for e in order(f"E{i}", B - timedelta(hours=1), 3)]
    events += [e for i in range(3) for e in order(f"X{i}", B - timedelta(hours=2), 3)]
    events += [failure(f"X{i}", "erp_order_created", "erp", B - timedelta(minutes=90)) for i in range(3)]
    events += [e for i in range(6) for e in order(f"W{i}", B - timedelta(hours=1), 4)]
    # The storefront and payments have reported every 5 minutes for the 6 hours before.
    events += [e for k in range(72, 0, -1) for e in heartbeat_events(B - k * timedelta(minutes=5))]
    post_events(client, events)

    # -- the outage: ERP spans fail, minute by minute ------------------------------------------
    for minute in range(7):
        step(client, services, B + timedelta(minutes=minute), erp_errors=25, erp_ok=5)

    found = alerts(client)
    [root] = [a for a in found if a["root_cause"]]
    assert (root["name"], root["state"], root["labels"]["system"]) == ("SystemUnhealthy", "firing", "erp")
    symptoms = [a for a in found if a is not root and a["state"] != "resolved"]
    assert symptoms, found
    assert {a["state"] for a in symptoms} == {"suppressed"}
    assert {a["suppressed_by"] for a in symptoms} == {root["fingerprint"]}
    assert sorted(root["impacted"]) == sorted(a["fingerprint"] for a in symptoms)
    stuck = {
        (a["labels"]["stage"], a["labels"]["system"], a["lifecycle"])
        for a in by_name(symptoms, "StuckOrders")
    }
    assert stuck == {("erp_order_created", "erp", "firing"), ("fulfillment_released", "wms", "firing")}
    [aging] = by_name(symptoms, "ExceptionAging")
    assert (aging["labels"]["stage"], aging["labels"]["system"]) == ("erp_order_created", "erp")

    # Alertmanager holds exactly one alert: the root cause, with flowsight's fingerprint.
    [held] = alertmanager.wait_until(
        lambda a: len(a) == 1 and a[0]["labels"]["alertname"] == "SystemUnhealthy"
    )
    assert held["labels"] == {"alertname": "SystemUnhealthy", "system": "erp", "severity": "page"}
    assert held["fingerprint"] == root["fingerprint"] == fingerprint(held["labels"])
    assert held["status"]["state"] == "active"
    assert held["annotations"]["impacted_count"] == str(len(symptoms))
    assert (
        'StuckOrders{stage="fulfillment_released", system="wms", workflow="order_to_cash"}'
        in (held["annotations"]["impacted"])
    )
    assert held["generatorURL"] == f"http://flowsight.example/alerts#{root['fingerprint']}"

    # The webhook got the root cause firing with its impact, in the Alertmanager v4 body.
    firing_bodies = [
        r.json
        for r in webhook.requests
        if r.json["status"] == "firing"
        and r.json["groupLabels"] == {"alertname": "SystemUnhealthy", "system": "erp"}
    ]
    assert firing_bodies, [r.json for r in webhook.requests]
    assert firing_bodies[0]["version"] == "4"
    [alert] = firing_bodies[0]["alerts"]
    assert (alert["fingerprint"], alert["status"]) == (root["fingerprint"], "firing")
    assert "impacted" in alert["annotations"]
    # Slack got the same as a message.
    assert any("[FIRING" in r.json["text"] and "SystemUnhealthy" in r.json["text"] for r in slack.requests), [
        r.json for r in slack.requests
    ]

    # Symptoms seen by a receiver before the root fired were closed when suppressed; nothing
    # suppressed is open at any receiver now.
    suppressed = {a["fingerprint"] for a in symptoms}
    last_status: dict[str, str] = {}
    for request in webhook.requests:
        for item in request.json["alerts"]:
            last_status[item["fingerprint"]] = item["status"]
    assert not [fp for fp in suppressed if last_status.get(fp) == "firing"], last_status

    # -- recovery: the ERP answers again and catches up -----------------------------------------
    fixed = B + timedelta(minutes=10)
    catch_up = [
        {**order(f"E{i}", fixed, 4)[3], "occurred_at": iso_utc(fixed - timedelta(seconds=30))}
        for i in range(10)
    ]
    catch_up += [
        {**order(f"X{i}", fixed, 4)[3], "occurred_at": iso_utc(fixed - timedelta(seconds=30))}
        for i in range(3)
    ]
    catch_up += [
        {**order(f"W{i}", fixed, 5)[4], "occurred_at": iso_utc(fixed - timedelta(seconds=30))}
        for i in range(6)
    ]
    post_events(client, catch_up)
    everyone = ("oms", "payments", "erp", "wms")
    for minute in (10, 11, 12):
        step(client, services, B + timedelta(minutes=minute), erp_errors=0, erp_ok=30, reporters=everyone)
    found = alerts(client)
    assert next(a for a in found if a["fingerprint"] == root["fingerprint"])["state"] == "resolved"
    # The root cause resolved; what still fails is no longer suppressed and is notified now: the
    # ERP's API error and freshness SLOs still burn over their 6x page windows (5h36m and 28m).
    still = sorted(a["labels"]["slo"] for a in found if a["state"] == "firing")
    assert still == ["api_error_ratio", "ingest_freshness"], [(a["name"], a["state"]) for a in found]
    told_firing = {
        item["labels"].get("slo")
        for r in webhook.requests
        for item in r.json["alerts"]
        if item["status"] == "firing" and item["labels"]["alertname"] == "SloErrorBudgetBurn"
    }
    assert {"api_error_ratio", "ingest_freshness"} <= told_firing
    alertmanager.wait_until(lambda a: len(a) == 2 and {x["labels"]["slo"] for x in a} == set(still))
    # Once the 28-minute short windows hold no failure, they resolve too. The warehouse
    # releases the caught-up orders 10 minutes later.
    released = B + timedelta(minutes=20)
    post_events(
        client,
        [
            {**order(o, released, 5)[4], "occurred_at": iso_utc(released)}
            for o in [*(f"E{i}" for i in range(10)), *(f"X{i}" for i in range(3))]
        ],
    )
    for minute in range(15, 50, 5):
        step(client, services, B + timedelta(minutes=minute), erp_errors=0, erp_ok=30, reporters=everyone)

    after = alerts(client)
    assert {a["state"] for a in after} == {"resolved"}, [
        (a["name"], a["state"], a["labels"], a["annotations"]["summary"])
        for a in after
        if a["state"] != "resolved"
    ]
    assert next(a for a in after if a["fingerprint"] == root["fingerprint"])["resolved_at"] == iso_utc(
        B + timedelta(minutes=12)
    )
    alertmanager.wait_until(lambda a: a == [], timeout=10)
    resolved = [
        item
        for r in webhook.requests
        for item in r.json["alerts"]
        if item["fingerprint"] == root["fingerprint"] and item["status"] == "resolved"
    ]
    assert resolved and resolved[-1]["endsAt"].startswith(iso_utc(B + timedelta(minutes=12))[:19])
    assert any("[RESOLVED" in r.json["text"] for r in slack.requests)
