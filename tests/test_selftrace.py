"""Self-tracing: the service's own requests leave as OTLP spans through the real OTel SDK exporter."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from flowsight.app import build_services, create_app
from tests.conftest import event


@pytest.fixture
def otlp_sink() -> Iterator[tuple[str, list[bytes]]]:
    """A loopback HTTP endpoint that records what an OTLP exporter posts to it."""
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["content-length"])))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", received
    server.shutdown()


def test_requests_are_exported_as_spans_when_self_tracing_is_on(
    settings: Any, engine: Any, clock: Any, otlp_sink: tuple[str, list[bytes]]
) -> None:
    endpoint, received = otlp_sink
    traced = settings.model_copy(update={"self_tracing": True, "self_tracing_endpoint": endpoint})
    with TestClient(create_app(build_services(traced, store=engine, clock=clock))) as client:
        client.post(
            "/v1/events", content=orjson.dumps([event(1)]), headers={"content-type": "application/json"}
        )
        client.get("/api/orders/SO-404/timeline")
        client.post("/v1/traces", content=b"{}", headers={"content-type": "application/json"})
    # Leaving the app shuts the tracer provider down, which flushes the batch processor.
    spans = []
    for body in received:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}[
                "service.name"
            ]
            for scope in resource_spans.scope_spans:
                spans.extend((service, span) for span in scope.spans)
    names = {(service, span.name) for service, span in spans}
    assert ("flowsight", "POST /v1/events") in names
    assert ("flowsight", "GET /api/orders/SO-404/timeline") in names
    assert not any(name.startswith("POST /v1/traces") for _, name in names)
    statuses = {
        span.name: {a.key: a.value.int_value for a in span.attributes}["http.response.status_code"]
        for _, span in spans
    }
    assert statuses["GET /api/orders/SO-404/timeline"] == 404


def test_nothing_is_exported_when_self_tracing_is_off(
    settings: Any, engine: Any, clock: Any, otlp_sink: tuple[str, list[bytes]]
) -> None:
    endpoint, received = otlp_sink
    untraced = settings.model_copy(update={"self_tracing": False, "self_tracing_endpoint": endpoint})
    with TestClient(create_app(build_services(untraced, store=engine, clock=clock))) as client:
        assert client.get("/healthz").status_code == 200
    assert received == []
