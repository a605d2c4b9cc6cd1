"""Flow health with data of known truth: every figure hand-computed, including duplicates,
out-of-order and late events, orders not yet due, and evaluation as of an earlier time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def ev(
    order: str, stage: str, at: str, status: str = "ok", n: int = 0, workflow: str = "order_to_cash"
) -> dict[str, Any]:
    return {
        "event_id": f"{order}-{stage}-{status}-{n}",
        "correlation_id": order,
        "workflow": workflow,
        "stage": stage,
        "system": "oms",
        "occurred_at": at,
        "status": status,
        "channel": "web",
    }


# order      what happened (times on 2026-11-2x)                         truth at NOW (26th 12:00)
# DONE       created 23rd 10:00, invoiced 24th 10:00 (within 72h)        completed on time
# LATE       created 20th 10:00, invoiced 24th 10:00 (96h > 72h)          completed, not on time
# OVERDUE    created 22nd 09:00, only payment since                        due (72h passed), not complete
# YOUNG      created 26th 11:58                                            not due, not stuck (2m < 5m)
# STUCK_ERP  ... inventory 26th 10:00, no erp_order_created                stuck at erp_order_created (15m)
# FAILING    ... payment 26th 09:00, inventory failed 09:05 and 09:30     stuck at inventory_reserved; one
#                                                                           exception opened 09:05 (2h55m)
# RECOVERED  inventory failed 08:00, ok 08:30, failed again 11:30          exception opened 11:30 (<1h)
EVENTS = [
    ev("DONE", "order_created", "2026-11-23T10:00:00Z"),
    ev("DONE", "payment_authorized", "2026-11-23T10:01:00Z"),
    ev("DONE", "invoiced", "2026-11-24T10:00:00Z"),
    ev("LATE", "order_created", "2026-11-20T10:00:00Z"),
    ev("LATE", "invoiced", "2026-11-24T10:00:00Z"),
    ev("OVERDUE", "order_created", "2026-11-22T09:00:00Z"),
    ev("OVERDUE", "payment_authorized", "2026-11-22T09:01:00Z"),
    ev("YOUNG", "order_created", "2026-11-26T11:58:00Z"),
    ev("STUCK_ERP", "order_created", "2026-11-26T09:50:00Z"),
    ev("STUCK_ERP", "payment_authorized", "2026-11-26T09:55:00Z"),
    ev("STUCK_ERP", "inventory_reserved", "2026-11-26T10:00:00Z"),
    ev("FAILING", "order_created", "2026-11-26T08:59:00Z"),
    ev("FAILING", "payment_authorized", "2026-11-26T09:00:00Z"),
    ev("FAILING", "inventory_reserved", "2026-11-26T09:05:00Z", "failed", 1),
    ev("FAILING", "inventory_reserved", "2026-11-26T09:30:00Z", "failed", 2),
    ev("RECOVERED", "order_created", "2026-11-26T07:59:00Z"),
    ev("RECOVERED", "payment_authorized", "2026-11-26T07:59:30Z"),
    ev("RECOVERED", "inventory_reserved", "2026-11-26T08:00:00Z", "failed", 1),
    ev("RECOVERED", "inventory_reserved", "2026-11-26T08:30:00Z"),
    ev("RECOVERED", "erp_order_created", "2026-11-26T08:35:00Z"),
    ev("RECOVERED", "inventory_reserved", "2026-11-26T11:30:00Z", "failed", 2),
]


@pytest.fixture
def loaded(client: TestClient, clock: Any) -> TestClient:
    clock.now = NOW
    # Reversed (out of order), in two requests, the second resending half of the first.
    reversed_events = EVENTS[::-1]
    for part in (reversed_events[:12], reversed_events[6:]):
        response = client.post(
            "/v1/events", content=orjson.dumps(part), headers={"content-type": "application/json"}
        )
        assert response.json()["rejected"] == 0
    return client


def test_completion_counts_only_due_orders(loaded: TestClient) -> None:
    o2c = loaded.get("/api/flow/health").json()["workflows"]["order_to_cash"]
    assert (o2c["completed"], o2c["in_flight"]) == (2, 5)
    # Due: DONE, LATE (complete) and OVERDUE (past 72h); on time: DONE only.
    assert (o2c["due"], o2c["completed_on_time"], o2c["completion_rate"]) == (3, 1, pytest.approx(1 / 3))


def test_funnel_counts_orders_per_stage(loaded: TestClient) -> None:
    funnel = loaded.get("/api/flow/health").json()["workflows"]["order_to_cash"]["funnel"]
    assert funnel == {
        "order_created": 7,
        "payment_authorized": 5,
        "inventory_reserved": 2,
        "erp_order_created": 1,
        "fulfillment_released": 0,
        "shipped": 0,
        "invoiced": 2,
        "cancelled": 0,
    }


def test_stuck_orders_by_stage_and_owner(loaded: TestClient) -> None:
    stuck = loaded.get("/api/flow/health").json()["workflows"]["order_to_cash"]["stuck"]
    # OVERDUE and FAILING wait for inventory (10m), STUCK_ERP for the ERP order (15m),
    # RECOVERED for fulfillment (30m, waiting since 08:35).
    assert stuck == {
        "total": 4,
        "by_stage": {"inventory_reserved": 2, "erp_order_created": 1, "fulfillment_released": 1},
        "by_system": {"erp": 3, "wms": 1},
    }


def test_open_exceptions_age_from_the_first_failure_after_the_last_ok(loaded: TestClient) -> None:
    health = loaded.get("/api/flow/health").json()
    assert health["exceptions"]["open"] == 2
    assert health["exceptions"]["aging"] == {"<1h": 1, "1-4h": 1, "4-24h": 0, ">24h": 0}
    assert health["backlog"] == {"erp": 2}
    # FAILING's exception, opened 09:05, is the oldest at 12:00.
    assert health["exceptions"]["oldest_s"]["order_to_cash"] == {"inventory_reserved": 2 * 3600 + 55 * 60}


def test_sync_lag_percentiles(loaded: TestClient) -> None:
    lag = loaded.get("/api/flow/health").json()["sync_lag"]
    # created -> payment: DONE 60 s, OVERDUE 60 s, STUCK_ERP 300 s, FAILING 60 s, RECOVERED 30 s.
    assert lag["order_created->payment_authorized"]["orders"] == 5
    assert lag["order_created->payment_authorized"]["p50_s"] == 60
    assert lag["order_created->erp_order_created"] == {
        "p50_s": 2160.0,
        "p95_s": 2160.0,
        "p99_s": 2160.0,
        "orders": 1,
    }


def test_stuck_order_listing_is_paged_and_filtered(loaded: TestClient) -> None:
    page = loaded.get("/api/orders", params={"stuck": "true", "limit": 2}).json()
    assert page["total"] == 4
    assert [(i["correlation_id"], i["waiting_for"], i["waited_s"]) for i in page["items"]] == [
        ("OVERDUE", "inventory_reserved", 4 * 86400 - 60 + 3 * 3600 - 60 * 0),
        ("RECOVERED", "fulfillment_released", 3 * 3600 + 25 * 60),
    ]
    wms = loaded.get("/api/orders", params={"system": "wms"}).json()
    assert [i["correlation_id"] for i in wms["items"]] == ["RECOVERED"]
    erp = loaded.get("/api/orders", params={"stage": "erp_order_created"}).json()
    assert [(i["correlation_id"], i["owner"]) for i in erp["items"]] == [("STUCK_ERP", "erp")]


def test_evaluation_as_of_an_earlier_time_ignores_later_events(loaded: TestClient) -> None:
    health = loaded.get("/api/flow/health", params={"at": "2026-11-26T09:20:00Z"}).json()
    o2c = health["workflows"]["order_to_cash"]
    # At 09:20 STUCK_ERP and YOUNG did not exist; FAILING's first failure was 15 minutes old.
    assert o2c["funnel"]["order_created"] == 5
    assert health["exceptions"]["aging"]["<1h"] == 1
    assert health["evaluated_at"] == "2026-11-26T09:20:00Z"


def test_a_time_without_offset_is_rejected(loaded: TestClient) -> None:
    response = loaded.get("/api/flow/health", params={"at": "2026-11-26T09:20:00"})
    assert response.status_code == 400
    assert "at:" in response.json()["error"]
