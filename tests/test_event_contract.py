"""The lifecycle event contract (v1): each rule, through POST /v1/events on the real engine."""

from __future__ import annotations

import gzip
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from tests.conftest import event


def post(client: TestClient, events: Any, **kwargs: Any) -> Any:
    return client.post(
        "/v1/events", content=orjson.dumps(events), headers={"content-type": "application/json"}, **kwargs
    )


def stored(client: TestClient, services: Any) -> int:
    assert services.writer.wait_idle()
    return services.store.rows(f"SELECT count() FROM {services.schema.table('events')} FINAL")[0][0]


@pytest.mark.parametrize(
    ("change", "field_fragment"),
    [
        pytest.param({"event_id": None}, "event_id: required", id="a missing event_id is rejected"),
        pytest.param(
            {"event_id": ""}, "event_id: must be 1 to 128 characters", id="an empty event_id is rejected"
        ),
        pytest.param(
            {"event_id": "x" * 129},
            "event_id: must be 1 to 128 characters, got 129",
            id="an event_id over 128 characters is rejected",
        ),
        pytest.param({"event_id": 42}, "event_id: must be a string", id="a numeric event_id is rejected"),
        pytest.param(
            {"correlation_id": None}, "correlation_id: required", id="a missing correlation_id is rejected"
        ),
        pytest.param(
            {"correlation_id": "c" * 129},
            "correlation_id: must be 1 to 128 characters",
            id="a correlation_id over 128 characters is rejected",
        ),
        pytest.param(
            {"workflow": "unknown_flow"},
            "workflow: unknown workflow 'unknown_flow'",
            id="an unconfigured workflow is rejected",
        ),
        pytest.param({"workflow": None}, "workflow: required", id="a missing workflow is rejected"),
        pytest.param(
            {"stage": "teleported"},
            "stage: 'teleported' is not a stage of workflow 'order_to_cash'",
            id="a stage of no such name is rejected",
        ),
        pytest.param(
            {"stage": "refund_issued"},
            "stage: 'refund_issued' is not a stage of workflow 'order_to_cash'",
            id="a stage of another workflow is rejected",
        ),
        pytest.param(
            {"system": "ERP"}, "system: must match [a-z0-9_.-]{1,64}", id="an upper-case system is rejected"
        ),
        pytest.param(
            {"system": "s" * 65}, "system: must match", id="a system over 64 characters is rejected"
        ),
        pytest.param(
            {"occurred_at": "2026-11-26T10:00:00"},
            "occurred_at: must be an RFC 3339 timestamp with offset",
            id="a timestamp without offset is rejected",
        ),
        pytest.param(
            {"occurred_at": "2026-11-26"},
            "occurred_at: must be an RFC 3339 timestamp",
            id="a date without time is rejected",
        ),
        pytest.param(
            {"occurred_at": 1764151200},
            "occurred_at: must be an RFC 3339 timestamp",
            id="an epoch number is rejected",
        ),
        pytest.param({"occurred_at": None}, "occurred_at: required", id="a missing occurred_at is rejected"),
        pytest.param(
            {"status": "done"},
            "status: must be 'ok' or 'failed', got 'done'",
            id="an unknown status is rejected",
        ),
        pytest.param(
            {"trace_id": "xyz"}, "trace_id: must be 32 hex characters", id="a malformed trace_id is rejected"
        ),
        pytest.param(
            {"span_id": "00f067aa0ba902"},
            "span_id: must be 16 hex characters",
            id="a short span_id is rejected",
        ),
        pytest.param(
            {"attributes": {"a": 1}},
            "attributes.a: must be a string",
            id="a non-string attribute value is rejected",
        ),
        pytest.param(
            {"attributes": ["a"]},
            "attributes: must be an object of string to string",
            id="attributes that are not an object are rejected",
        ),
        pytest.param(
            {"attributes": {f"k{i}": "v" for i in range(65)}},
            "attributes: at most 64 entries, got 65",
            id="more than 64 attributes are rejected",
        ),
        pytest.param({"channel": 7}, "channel: must be a string", id="a numeric channel is rejected"),
        pytest.param({"chanel": "web"}, "chanel: unknown field", id="a misspelt field is rejected by name"),
    ],
)
def test_invalid_event_is_rejected_with_an_error_naming_the_field(
    client: TestClient, services: Any, change: dict[str, Any], field_fragment: str
) -> None:
    bad = event(1)
    for key, value in change.items():
        if value is None:
            bad.pop(key, None)
        else:
            bad[key] = value
    response = post(client, [event(2), bad])
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (1, 0, 1)
    [error] = body["errors"]
    assert error["index"] == 1
    assert field_fragment in error["error"]
    assert stored(client, services) == 1


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({}, id="the six required fields are enough"),
        pytest.param({"status": "failed"}, id="status failed is accepted"),
        pytest.param(
            {"occurred_at": "2026-11-26T10:00:00.123+01:00"}, id="an offset other than Z is accepted"
        ),
        pytest.param(
            {"trace_id": "4BF92F3577B34DA6A3CE929D0E0E4736", "span_id": "00f067aa0ba902b7"},
            id="upper-case hex trace IDs are accepted",
        ),
        pytest.param(
            {"channel": "web", "attributes": {"sku_count": "3"}}, id="channel and attributes are accepted"
        ),
        pytest.param({"stage": "cancelled"}, id="an out-of-sequence stage is accepted"),
    ],
)
def test_valid_event_is_accepted(client: TestClient, services: Any, extra: dict[str, Any]) -> None:
    response = post(client, [event(1, **extra)])
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": 0, "errors": []}
    assert stored(client, services) == 1


def test_one_error_per_rejected_event_lists_every_faulty_field(client: TestClient) -> None:
    bad = event(1, system="BAD", occurred_at="soon", status="maybe")
    [error] = post(client, [bad]).json()["errors"]
    assert error["event_id"] == "evt-1"
    assert "system:" in error["error"] and "occurred_at:" in error["error"] and "status:" in error["error"]


def test_timestamps_are_stored_in_utc(client: TestClient, services: Any) -> None:
    post(client, [event(1, occurred_at="2026-11-26T11:00:00.250+01:00")])
    assert services.writer.wait_idle()
    [(ts,)] = services.store.rows(f"SELECT toString(occurred_at) FROM {services.schema.table('events')}")
    assert ts == "2026-11-26 10:00:00.250"


def test_ndjson_body_is_accepted(client: TestClient) -> None:
    body = b"\n".join(orjson.dumps(event(i)) for i in range(5)) + b"\n"
    response = client.post("/v1/events", content=body, headers={"content-type": "application/x-ndjson"})
    assert response.json()["accepted"] == 5


def test_ndjson_line_that_is_not_json_is_rejected_alone(client: TestClient) -> None:
    body = orjson.dumps(event(1)) + b"\n{not json\n" + orjson.dumps(event(2))
    response = client.post("/v1/events", content=body, headers={"content-type": "application/x-ndjson"})
    body_json = response.json()
    assert (body_json["accepted"], body_json["rejected"]) == (2, 1)
    assert body_json["errors"][0]["index"] == 1
    assert "line 2: not valid JSON" in body_json["errors"][0]["error"]


def test_gzip_body_is_accepted(client: TestClient) -> None:
    body = gzip.compress(orjson.dumps([event(i) for i in range(3)]))
    response = client.post(
        "/v1/events", content=body, headers={"content-type": "application/json", "content-encoding": "gzip"}
    )
    assert response.json()["accepted"] == 3


def test_body_that_is_not_json_gets_400_and_is_kept_as_a_dead_letter(client: TestClient) -> None:
    response = client.post(
        "/v1/events", content=b"<html>oops</html>", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    letters = client.get("/api/dead-letters").json()
    assert letters["total"] == 1
    assert letters["items"][0]["payload"] == "<html>oops</html>"
    assert "not valid JSON" in letters["items"][0]["reason"]


def test_json_object_instead_of_array_gets_400(client: TestClient) -> None:
    response = post(client, event(1))
    assert response.status_code == 400
    assert "JSON array" in response.json()["error"]


def test_corrupt_gzip_gets_400(client: TestClient) -> None:
    response = client.post(
        "/v1/events",
        content=b"\x1f\x8b\x08garbage",
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert response.status_code == 400
    assert "invalid gzip body" in response.json()["error"]


def test_unsupported_content_encoding_gets_415(client: TestClient) -> None:
    response = client.post("/v1/events", content=b"[]", headers={"content-encoding": "br"})
    assert response.status_code == 415


@pytest.fixture
def small_limits(settings: Any) -> Any:
    return settings.model_copy(
        update={"max_body_bytes": 4096, "max_decompressed_bytes": 8192, "max_events_per_request": 20}
    )


@pytest.fixture
def limited_client(small_limits: Any, engine: Any, clock: Any) -> Any:
    from flowsight.app import build_services, create_app

    with TestClient(create_app(build_services(small_limits, store=engine, clock=clock))) as test_client:
        yield test_client


def test_body_over_the_size_limit_gets_413(limited_client: TestClient) -> None:
    response = limited_client.post("/v1/events", content=b"[" + b" " * 5000 + b"]")
    assert response.status_code == 413
    assert "4096 bytes" in response.json()["error"]


def test_gzip_bomb_gets_413_after_decompression(limited_client: TestClient) -> None:
    bomb = gzip.compress(b"[" + b" " * 3_000_000 + b"]")
    assert len(bomb) < 4096
    response = limited_client.post(
        "/v1/events", content=bomb, headers={"content-type": "application/json", "content-encoding": "gzip"}
    )
    assert response.status_code == 413
    assert "after decompression" in response.json()["error"]


def test_more_events_than_allowed_per_request_gets_413(limited_client: TestClient) -> None:
    response = limited_client.post(
        "/v1/events",
        content=gzip.compress(orjson.dumps([event(i) for i in range(21)])),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert response.status_code == 413
    assert "limit is 20" in response.json()["error"]
