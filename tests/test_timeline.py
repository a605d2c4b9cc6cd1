"""GET /api/orders/{id}/timeline: stages, SLAs and breaches, events in order, exceptions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote

import orjson
from fastapi.testclient import TestClient

from tests.conftest import event


def post(client: TestClient, events: Any) -> None:
    response = client.post(
        "/v1/events", content=orjson.dumps(events), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200 and response.json()["rejected"] == 0, response.text


def at(minutes: float) -> str:
    return f"2026-11-26T09:{int(minutes):02d}:{int(minutes % 1 * 60):02d}Z"


def order(client: TestClient) -> None:
    o = "SO-42"
    post(
        client,
        [
            event("c", "order_created", correlation_id=o, occurred_at=at(0), channel="web"),
            event("p", "payment_authorized", correlation_id=o, system="payments", occurred_at=at(2)),
            event(
                "i-fail",
                "inventory_reserved",
                correlation_id=o,
                system="erp",
                status="failed",
                occurred_at=at(5),
            ),
            event(
                "i-fail2",
                "inventory_reserved",
                correlation_id=o,
                system="erp",
                status="failed",
                occurred_at=at(6),
            ),
            event("i", "inventory_reserved", correlation_id=o, system="erp", occurred_at=at(20)),
            event(
                "e-fail",
                "erp_order_created",
                correlation_id=o,
                system="erp",
                status="failed",
                occurred_at=at(25),
            ),
        ],
    )


def test_unknown_order_gets_404_with_a_clear_message(client: TestClient) -> None:
    response = client.get("/api/orders/SO-404/timeline")
    assert response.status_code == 404
    assert response.json() == {"error": "no events are stored for correlation ID 'SO-404'"}


def test_stages_show_reach_time_owner_time_since_previous_and_sla_breach(
    client: TestClient, clock: Any
) -> None:
    order(client)
    clock.now = clock.now.replace(hour=9, minute=50)
    doc = client.get("/api/orders/SO-42/timeline").json()
    assert doc["workflow"] == "order_to_cash"
    assert doc["status"] == "in_progress"
    assert doc["channel"] == "web"
    stages = {s["stage"]: s for s in doc["stages"]}
    assert list(stages) == [
        "order_created",
        "payment_authorized",
        "inventory_reserved",
        "erp_order_created",
        "fulfillment_released",
        "shipped",
        "invoiced",
    ]
    assert stages["order_created"] == {
        "stage": "order_created",
        "owner": "oms",
        "system": "oms",
        "reached_at": "2026-11-26T09:00:00Z",
        "state": "reached",
        "since_previous_s": None,
        "sla_s": None,
        "breached": False,
    }
    assert stages["payment_authorized"]["since_previous_s"] == 120
    assert stages["payment_authorized"]["breached"] is False
    # 18 minutes after payment against a 10 minute SLA.
    assert stages["inventory_reserved"]["since_previous_s"] == 18 * 60
    assert stages["inventory_reserved"]["sla_s"] == 600
    assert stages["inventory_reserved"]["breached"] is True
    # Waiting for the ERP since 09:20, 30 minutes against a 15 minute SLA: stuck.
    assert stages["erp_order_created"]["state"] == "stuck"
    assert stages["erp_order_created"]["since_previous_s"] == 30 * 60
    assert stages["erp_order_created"]["breached"] is True
    assert stages["fulfillment_released"]["state"] == "pending"
    assert stages["fulfillment_released"]["since_previous_s"] is None


def test_waiting_within_the_sla_is_not_stuck(client: TestClient, clock: Any) -> None:
    order(client)
    clock.now = clock.now.replace(hour=9, minute=30)
    stages = {s["stage"]: s for s in client.get("/api/orders/SO-42/timeline").json()["stages"]}
    assert stages["erp_order_created"]["state"] == "waiting"
    assert stages["erp_order_created"]["breached"] is False


def test_events_are_listed_in_time_order_across_systems(client: TestClient) -> None:
    order(client)
    doc = client.get("/api/orders/SO-42/timeline").json()
    assert [e["event_id"] for e in doc["events"]] == [
        "evt-c",
        "evt-p",
        "evt-i-fail",
        "evt-i-fail2",
        "evt-i",
        "evt-e-fail",
    ]
    assert [e["system"] for e in doc["events"]] == ["oms", "payments", "erp", "erp", "erp", "erp"]
    assert doc["spans"] == []


def test_exceptions_open_on_failure_and_resolve_on_the_next_ok(client: TestClient, clock: Any) -> None:
    order(client)
    clock.now = clock.now.replace(hour=10, minute=25)
    doc = client.get("/api/orders/SO-42/timeline").json()
    assert [
        (x["stage"], x["opened_at"], x["resolved_at"], x["open"], x["age_s"]) for x in doc["exceptions"]
    ] == [
        ("inventory_reserved", "2026-11-26T09:05:00Z", "2026-11-26T09:20:00Z", False, 15 * 60.0),
        ("erp_order_created", "2026-11-26T09:25:00Z", None, True, 3600.0),
    ]


def test_terminal_stage_completes_the_order(client: TestClient) -> None:
    post(
        client,
        [
            event("1", "order_created", correlation_id="SO-7"),
            event("2", "cancelled", correlation_id="SO-7", occurred_at=at(3)),
        ],
    )
    doc = client.get("/api/orders/SO-7/timeline").json()
    assert (doc["status"], doc["terminal_stage"], doc["completed_at"]) == (
        "complete",
        "cancelled",
        "2026-11-26T09:03:00Z",
    )
    assert doc["stages"][-1]["stage"] == "cancelled"


def test_order_past_its_completion_deadline_is_overdue(client: TestClient, clock: Any) -> None:
    post(client, [event("1", "order_created", correlation_id="SO-8")])
    clock.advance(timedelta(hours=73))
    assert client.get("/api/orders/SO-8/timeline").json()["status"] == "overdue"


def test_resent_events_appear_once(client: TestClient) -> None:
    order(client)
    order(client)
    assert len(client.get("/api/orders/SO-42/timeline").json()["events"]) == 6


def test_order_id_with_markup_is_returned_as_data(client: TestClient) -> None:
    weird = "<script>alert(1)</script>/SO 1?x=%"
    post(client, [event("x", correlation_id=weird)])
    response = client.get(f"/api/orders/{quote(weird, safe='')}/timeline")
    assert response.json()["correlation_id"] == weird
