"""OTLP log records that carry flowsight.workflow and flowsight.stage become lifecycle events."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.testclient import TestClient


def logs_request(records: list[dict[str, Any]], resource: dict[str, str] | None = None) -> bytes:
    attrs = [
        {"key": k, "value": {"stringValue": v}}
        for k, v in {"service.name": "wms", **(resource or {})}.items()
    ]
    return orjson.dumps(
        {
            "resourceLogs": [
                {"resource": {"attributes": attrs}, "scopeLogs": [{"scope": {}, "logRecords": records}]}
            ]
        }
    )


def record(stage: str, minute: int, **attrs: str) -> dict[str, Any]:
    return {
        "timeUnixNano": str(1795600000000000000 + minute * 60_000_000_000),
        "severityNumber": 9,
        "body": {"stringValue": f"{stage} done"},
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "attributes": [
            {"key": k, "value": {"stringValue": v}}
            for k, v in {"flowsight.workflow": "order_to_cash", "flowsight.stage": stage, **attrs}.items()
        ],
    }


def post(client: TestClient, body: bytes) -> Any:
    response = client.post("/v1/logs", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    return response.json()


def test_lifecycle_records_become_events_and_resends_dedupe(client: TestClient, services: Any) -> None:
    body = logs_request(
        [
            record("order_created", 0, **{"order.id": "SO-L1"}),
            record("payment_authorized", 2, **{"order.id": "SO-L1", "flowsight.system": "payments"}),
        ]
    )
    assert post(client, body) == {}
    assert post(client, body) == {}  # resent: the derived event ids are the same
    doc = client.get("/api/orders/SO-L1/timeline").json()
    assert [(e["stage"], e["system"], e["source"]) for e in doc["events"]] == [
        ("order_created", "wms", "otlp"),
        ("payment_authorized", "payments", "otlp"),
    ]
    assert doc["events"][0]["occurred_at"] == "2026-11-25T09:46:40Z"
    assert doc["events"][0]["trace_id"] == "5b8efff798038103d269b633813fc60c"
    assert services.writer.wait_idle()
    assert services.store.rows(f"SELECT count() FROM {services.schema.table('events')}")[0][0] == 2


def test_correlation_id_may_come_from_the_resource_and_event_id_from_the_record(client: TestClient) -> None:
    post(
        client,
        logs_request(
            [record("order_created", 0, **{"flowsight.event_id": "wms-1", "flowsight.status": "failed"})],
            {"order_id": "SO-L2"},
        ),
    )
    doc = client.get("/api/orders/SO-L2/timeline").json()
    assert [(e["event_id"], e["status"]) for e in doc["events"]] == [("wms-1", "failed")]


def test_invalid_lifecycle_records_are_rejected_and_kept_as_dead_letters(client: TestClient) -> None:
    body = logs_request(
        [
            record("teleported", 0, **{"order.id": "SO-L3"}),
            record("order_created", 1),  # no correlation key anywhere
            record("order_created", 2, **{"order.id": "SO-L3"}),
            {"timeUnixNano": "1795600000000000000", "body": {"stringValue": "plain log line"}},
        ]
    )
    answer = post(client, body)
    assert answer["partialSuccess"]["rejectedLogRecords"] == "2"
    assert "stage: 'teleported' is not a stage" in answer["partialSuccess"]["errorMessage"]
    assert "correlation_id: required" in answer["partialSuccess"]["errorMessage"]
    letters = client.get("/api/dead-letters", params={"source": "otlp_logs"}).json()
    assert letters["total"] == 2
    assert [e["stage"] for e in client.get("/api/orders/SO-L3/timeline").json()["events"]] == [
        "order_created"
    ]
