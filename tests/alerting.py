"""Helpers for alerting tests: post events and spans at given times, evaluate, read alerts."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson
from fastapi.testclient import TestClient

from flowsight.timefmt import iso_utc
from tests.test_otlp_protocol import json_request

O2C = [
    ("order_created", "oms"),
    ("payment_authorized", "payments"),
    ("inventory_reserved", "erp"),
    ("erp_order_created", "erp"),
    ("fulfillment_released", "wms"),
    ("shipped", "shipping"),
    ("invoiced", "erp"),
]


def post_events(client: TestClient, events: list[dict[str, Any]]) -> None:
    for start in range(0, len(events), 1000):
        response = client.post(
            "/v1/events",
            content=orjson.dumps(events[start : start + 1000]),
            headers={"content-type": "application/json"},
        )
        body = response.json()
        assert response.status_code == 200 and body["rejected"] == 0, body


def order(
    order_id: str, created: datetime, stages: int, *, gap: timedelta = timedelta(minutes=1), **fields: Any
) -> list[dict[str, Any]]:
    """Events of an order_to_cash order that reached the first ``stages`` stages, ``gap`` apart."""
    return [
        {
            "event_id": f"{order_id}-{stage}",
            "correlation_id": order_id,
            "workflow": "order_to_cash",
            "stage": stage,
            "system": system,
            "occurred_at": iso_utc(created + i * gap),
            "channel": "web",
            **fields,
        }
        for i, (stage, system) in enumerate(O2C[:stages])
    ]


def failure(order_id: str, stage: str, system: str, at: datetime, n: int = 0) -> dict[str, Any]:
    return {
        "event_id": f"{order_id}-{stage}-failed-{n}",
        "correlation_id": order_id,
        "workflow": "order_to_cash",
        "stage": stage,
        "system": system,
        "occurred_at": iso_utc(at),
        "status": "failed",
    }


def post_spans(
    client: TestClient, service: str, at: datetime, ok: int, errors: int, prefix: str = ""
) -> None:
    """``ok`` + ``errors`` spans of ``service`` ending just before ``at``."""
    spans = []
    for i in range(ok + errors):
        start = int((at - timedelta(seconds=30)).timestamp() * 1e9) + i * 1000
        spans.append(
            {
                "traceId": f"{abs(hash((service, prefix, i))) % 16**32:032x}",
                "spanId": f"{i + 1:016x}",
                "name": f"{service} call",
                "kind": 2,
                "startTimeUnixNano": str(start),
                "endTimeUnixNano": str(start + 5_000_000),
                "status": {"code": 2, "message": "timeout"} if i < errors else {"code": 1},
            }
        )
    response = client.post(
        "/v1/traces",
        content=json_request(spans, {"service.name": service}),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200, response.text


def evaluate(client: TestClient, at: datetime) -> dict[str, Any]:
    response = client.post("/api/evaluate", params={"at": iso_utc(at)})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "error" not in body.get("alerts", {}), body.get("alerts")
    return body


def alerts(client: TestClient, **params: str) -> list[dict[str, Any]]:
    response = client.get("/api/alerts", params=params)
    assert response.status_code == 200, response.text
    return list(response.json())


def by_name(found: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [a for a in found if a["name"] == name]
