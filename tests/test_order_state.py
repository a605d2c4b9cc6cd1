"""The per-order state (order_state): exact stage times whatever the arrival order or resends."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi.testclient import TestClient

from tests.conftest import event


def post(client: TestClient, events: list[dict[str, Any]]) -> None:
    response = client.post(
        "/v1/events", content=orjson.dumps(events), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200 and response.json()["rejected"] == 0


def state(services: Any, correlation_id: str) -> dict[str, Any]:
    assert services.writer.wait_idle()
    [row] = services.store.dicts(
        f"""SELECT min(first_seen) AS first_seen, max(last_seen) AS last_seen, max(channel) AS channel,
                   minMap(reached) AS reached, maxMap(last_ok) AS last_ok,
                   minMap(first_failed) AS first_failed, maxMap(last_failed) AS last_failed
            FROM {services.schema.table("order_state")} WHERE correlation_id = {{c:String}}""",
        {"c": correlation_id},
    )
    return row


def t(minute: int) -> str:
    return f"2026-11-26T09:{minute:02d}:00Z"


def at(minute: int) -> datetime:
    return datetime(2026, 11, 26, 9, minute)


def test_stage_times_are_exact_when_events_arrive_out_of_order(client: TestClient, services: Any) -> None:
    o = "SO-1"
    post(client, [event("p2", "payment_authorized", correlation_id=o, occurred_at=t(7))])
    post(client, [event("c", "order_created", correlation_id=o, occurred_at=t(1), channel="app")])
    post(client, [event("p1", "payment_authorized", correlation_id=o, occurred_at=t(4))])
    row = state(services, o)
    assert row["reached"] == {"order_created": at(1), "payment_authorized": at(4)}
    assert row["last_ok"] == {"order_created": at(1), "payment_authorized": at(7)}
    assert (row["first_seen"], row["last_seen"], row["channel"]) == (at(1), at(7), "app")


def test_failures_are_kept_apart_from_reached_stages(client: TestClient, services: Any) -> None:
    o = "SO-2"
    post(
        client,
        [
            event("c", "order_created", correlation_id=o, occurred_at=t(0)),
            event("f1", "inventory_reserved", correlation_id=o, status="failed", occurred_at=t(3)),
            event("f2", "inventory_reserved", correlation_id=o, status="failed", occurred_at=t(9)),
        ],
    )
    row = state(services, o)
    assert "inventory_reserved" not in row["reached"]
    assert row["first_failed"] == {"inventory_reserved": at(3)}
    assert row["last_failed"] == {"inventory_reserved": at(9)}
    post(client, [event("ok", "inventory_reserved", correlation_id=o, occurred_at=t(12))])
    row = state(services, o)
    assert row["reached"]["inventory_reserved"] == at(12)
    assert row["last_failed"]["inventory_reserved"] < row["last_ok"]["inventory_reserved"]


def test_state_matches_the_timeline(client: TestClient, services: Any) -> None:
    o = "SO-3"
    post(
        client,
        [
            event(f"s{i}", stage, correlation_id=o, occurred_at=t(i * 5))
            for i, stage in enumerate(
                ["order_created", "payment_authorized", "inventory_reserved", "erp_order_created"]
            )
        ],
    )
    timeline = client.get(f"/api/orders/{o}/timeline").json()
    from_timeline = {
        s["stage"]: datetime.fromisoformat(s["reached_at"]).astimezone(UTC).replace(tzinfo=None)
        for s in timeline["stages"]
        if s["reached_at"]
    }
    assert state(services, o)["reached"] == from_timeline
