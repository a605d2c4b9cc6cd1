"""OTLP/HTTP protocol rules: encodings, status codes, partial success, dedup, durability."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1 import trace_pb2

from flowsight.app import build_services, create_app
from tests.faults import switchable_store

TRACE = "5b8efff798038103d269b633813fc60c"
ORDER_SPAN, CHILD_SPAN = "eee19b7ec3c1b174", "aaa19b7ec3c1b174"


def json_request(spans: list[dict[str, Any]], resource: dict[str, str] | None = None) -> bytes:
    attrs = [
        {"key": k, "value": {"stringValue": v}}
        for k, v in {"service.name": "erp", **(resource or {})}.items()
    ]
    return orjson.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": attrs},
                    "scopeSpans": [{"scope": {"name": "erp"}, "spans": spans}],
                }
            ]
        }
    )


def span(
    span_id: str, name: str, *, parent: str = "", attrs: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "traceId": TRACE.upper(),
        "spanId": span_id,
        "parentSpanId": parent,
        "name": name,
        "kind": 2,
        "startTimeUnixNano": "1795600000000000000",
        "endTimeUnixNano": "1795600000250000000",
        "attributes": [
            {"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
            for k, v in (attrs or {}).items()
        ],
        "status": {"code": 2, "message": "timeout"},
    }
    body.update(extra)
    return body


def post_json(client: TestClient, body: bytes, **headers: str) -> Any:
    return client.post("/v1/traces", content=body, headers={"content-type": "application/json", **headers})


def spans_of(client: TestClient, order: str) -> list[dict[str, Any]]:
    return client.get(f"/api/orders/{order}/timeline").json()["spans"]  # type: ignore[no-any-return]


def test_json_with_hex_ids_integer_enums_string_int64_and_unknown_fields(client: TestClient) -> None:
    body = json_request(
        [
            span(
                ORDER_SPAN,
                "POST /orders",
                attrs={"order.id": "SO-J1", "http.status_code": 504},
                someFutureField=1,
            ),
            span(CHILD_SPAN, "SELECT", parent=ORDER_SPAN),
        ]
    )
    response = post_json(client, body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {}
    spans = {s["name"]: s for s in spans_of(client, "SO-J1")}
    assert spans["POST /orders"]["trace_id"] == TRACE
    assert spans["POST /orders"]["kind"] == "Server"
    assert spans["POST /orders"]["status"] == "error"
    assert spans["POST /orders"]["duration_ms"] == 250.0
    assert spans["POST /orders"]["start"] == "2026-11-25T09:46:40Z"
    assert spans["SELECT"]["parent_span_id"] == ORDER_SPAN


def test_protobuf_request_gets_a_protobuf_answer(client: TestClient) -> None:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    kv = resource_spans.resource.attributes.add()
    kv.key, kv.value.string_value = "order.id", "SO-P1"  # on the resource this time
    pb_span = resource_spans.scope_spans.add().spans.add()
    pb_span.trace_id, pb_span.span_id = bytes.fromhex(TRACE), bytes.fromhex(ORDER_SPAN)
    pb_span.name, pb_span.kind = "charge", trace_pb2.Span.SPAN_KIND_CLIENT
    pb_span.start_time_unix_nano, pb_span.end_time_unix_nano = 1795600000000000000, 1795600000001000000
    response = client.post(
        "/v1/traces", content=request.SerializeToString(), headers={"content-type": "application/x-protobuf"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    assert not ExportTraceServiceResponse.FromString(response.content).HasField("partial_success")
    [stored] = spans_of(client, "SO-P1")
    assert (stored["name"], stored["kind"], stored["duration_ms"]) == ("charge", "Client", 1.0)


def test_invalid_spans_are_rejected_in_partial_success(client: TestClient) -> None:
    body = json_request(
        [
            span(ORDER_SPAN, "good", attrs={"order.id": "SO-J2"}),
            span("0000000000000000", "zero span id"),
            span(CHILD_SPAN, "backwards", endTimeUnixNano="1"),
        ]
    )
    response = post_json(client, body)
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "2"
    assert "zero span id" in partial["errorMessage"] and "ends before it starts" in partial["errorMessage"]
    assert [s["name"] for s in spans_of(client, "SO-J2")] == ["good"]


def test_each_span_keeps_its_own_resource_and_scope(client: TestClient, services: Any) -> None:
    def resource(service: str, region: str, scopes: list[tuple[str, str, list[dict[str, Any]]]]) -> Any:
        return {
            "resource": {
                "attributes": [
                    {"key": "service.name", "value": {"stringValue": service}},
                    {"key": "region", "value": {"stringValue": region}},
                ]
            },
            "scopeSpans": [
                {"scope": {"name": name, "version": version}, "spans": spans}
                for name, version, spans in scopes
            ],
        }

    body = orjson.dumps(
        {
            "resourceSpans": [
                resource(
                    "oms",
                    "eu",
                    [
                        (
                            "http",
                            "1.0",
                            [span("1000000000000001", "a"), span("0000000000000000", "rejected")],
                        ),
                        ("db", "2.0", [span("1000000000000002", "b")]),
                    ],
                ),
                resource(
                    "erp",
                    "us",
                    [("rfc", "3.1", [span("1000000000000003", "c"), span("1000000000000004", "d")])],
                ),
            ]
        }
    )
    assert post_json(client, body).json()["partialSuccess"]["rejectedSpans"] == "1"
    assert services.writer.wait_idle()
    rows = services.store.rows(
        "SELECT SpanName, ServiceName, ResourceAttributes['region'], ScopeName, ScopeVersion "
        f"FROM {services.schema.table('otel_traces')} ORDER BY SpanName"
    )
    assert [tuple(r) for r in rows] == [
        ("a", "oms", "eu", "http", "1.0"),
        ("b", "oms", "eu", "db", "2.0"),
        ("c", "erp", "us", "rfc", "3.1"),
        ("d", "erp", "us", "rfc", "3.1"),
    ]


def test_resent_spans_are_stored_once(client: TestClient, services: Any) -> None:
    body = json_request([span(ORDER_SPAN, "POST /orders", attrs={"order.id": "SO-J3"})])
    for _ in range(3):
        assert post_json(client, body).status_code == 200
    assert len(spans_of(client, "SO-J3")) == 1
    assert services.writer.wait_idle()
    assert services.store.rows(f"SELECT count() FROM {services.schema.table('otel_traces')}")[0][0] == 1


def test_gzip_body_is_accepted(client: TestClient) -> None:
    body = gzip.compress(json_request([span(ORDER_SPAN, "zipped", attrs={"order.id": "SO-J4"})]))
    assert post_json(client, body, **{"content-encoding": "gzip"}).status_code == 200
    assert [s["name"] for s in spans_of(client, "SO-J4")] == ["zipped"]


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        pytest.param(b"\x0a\xff\xff", "application/x-protobuf", 400, id="undecodable protobuf gets 400"),
        pytest.param(b"{not json", "application/json", 400, id="invalid JSON gets 400"),
        pytest.param(
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]}',
            "application/json",
            400,
            id="a trace id that is not hex gets 400",
        ),
        pytest.param(b"[]", "text/plain", 415, id="another content type gets 415"),
    ],
)
def test_bad_bodies_get_a_status_in_the_request_encoding(
    client: TestClient, body: bytes, content_type: str, status: int
) -> None:
    response = client.post("/v1/traces", content=body, headers={"content-type": content_type})
    assert response.status_code == status
    if content_type == "application/x-protobuf":
        assert status_pb2.Status.FromString(response.content).message
    else:
        assert response.json()["message"]


def test_metrics_are_refused_clearly(client: TestClient) -> None:
    response = client.post("/v1/metrics", content=b"{}", headers={"content-type": "application/json"})
    assert response.status_code == 404
    assert "does not accept OTLP metrics" in response.json()["message"]


def test_body_too_large_after_decompression_gets_413(settings: Any, engine: Any, clock: Any) -> None:
    small = settings.model_copy(update={"max_decompressed_bytes": 10_000})
    with TestClient(create_app(build_services(small, store=engine, clock=clock))) as client:
        response = post_json(client, gzip.compress(b" " * 1_000_000), **{"content-encoding": "gzip"})
    assert response.status_code == 413


@pytest.fixture
def faulty(settings: Any, engine: Any, clock: Any) -> Iterator[tuple[TestClient, Any, Any]]:
    store, switch = switchable_store(engine)
    services = build_services(settings, store=store, clock=clock)
    with TestClient(create_app(services)) as client:
        yield client, services, switch


def test_spans_wait_in_the_log_while_the_database_is_down_and_are_stored_once(faulty: Any) -> None:
    client, services, switch = faulty
    body = json_request(
        [span(ORDER_SPAN, "POST /orders", attrs={"order.id": "SO-J5"}), span(CHILD_SPAN, "child")]
    )
    switch.go_down()
    assert post_json(client, body).status_code == 200
    assert post_json(client, body).status_code == 200  # a resend while down
    switch.come_back()
    assert services.writer.wait_idle(timeout=20)
    assert services.store.rows(f"SELECT count() FROM {services.schema.table('otel_traces')}")[0][0] == 2
    assert {s["name"] for s in spans_of(client, "SO-J5")} == {"POST /orders", "child"}


def test_full_write_ahead_log_answers_503_with_retry_after(settings: Any, engine: Any, clock: Any) -> None:
    store, switch = switchable_store(engine)
    services = build_services(settings.model_copy(update={"wal_max_bytes": 1}), store=store, clock=clock)
    with TestClient(create_app(services)) as client:
        switch.go_down()
        response = post_json(client, json_request([span(ORDER_SPAN, "x")]))
        assert response.status_code == 503
        assert response.headers["retry-after"] == str(settings.retry_after_seconds)
