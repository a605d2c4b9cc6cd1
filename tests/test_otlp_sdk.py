"""The OTLP receiver against the real OpenTelemetry SDK exporters: a system changes nothing but
its exporter endpoint, and its spans and lifecycle logs join the order's timeline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

from tests.server import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("otlp") / "data").start()
    yield process
    process.kill()


def tracer_provider(server: ServerProcess, service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{server.url}/v1/traces")))
    return provider


def timeline(server: ServerProcess, order: str, spans: int, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(f"{server.url}/api/orders/{order}/timeline")
        if response.status_code == 200 and len(response.json()["spans"]) >= spans:
            return response.json()  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, response.text
        time.sleep(0.1)


def test_spans_of_a_trace_join_the_order_even_without_the_key(server: ServerProcess) -> None:
    oms, erp = tracer_provider(server, "oms"), tracer_provider(server, "erp")
    with (
        oms.get_tracer("shop").start_as_current_span(
            "POST /orders", attributes={"order.id": "SO-OTEL-1"}
        ) as root,
        erp.get_tracer("erp").start_as_current_span("create sales order") as child,
    ):
        child.set_status(Status(StatusCode.ERROR, "ERP timeout"))
    for provider in (erp, oms):
        provider.force_flush()
        provider.shutdown()
    doc = timeline(server, "SO-OTEL-1", spans=2)
    assert doc["workflow"] is None  # known from traces only
    spans = {s["name"]: s for s in doc["spans"]}
    trace_id = format(root.get_span_context().trace_id, "032x")
    assert spans["POST /orders"]["service"] == "oms"
    assert spans["POST /orders"]["trace_id"] == trace_id
    assert spans["create sales order"]["service"] == "erp"
    assert spans["create sales order"]["parent_span_id"] == format(root.get_span_context().span_id, "016x")
    assert spans["create sales order"]["status"] == "error"
    assert spans["create sales order"]["correlation_id"] is None
    assert spans["POST /orders"]["duration_ms"] >= spans["create sales order"]["duration_ms"] > 0


def test_lifecycle_log_records_become_events_with_their_trace(server: ServerProcess) -> None:
    provider = LoggerProvider(resource=Resource.create({"service.name": "erp"}))
    provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{server.url}/v1/logs"))
    )
    logger = provider.get_logger("erp.orders")
    tracer = tracer_provider(server, "erp")
    started = time.time_ns()
    try:
        with tracer.get_tracer("erp").start_as_current_span(
            "post order", attributes={"order.id": "SO-OTEL-2"}
        ):
            for minute, stage in enumerate(("order_created", "payment_authorized")):
                logger.emit(
                    timestamp=started + minute * 60_000_000_000,
                    body="stage reached",
                    attributes={
                        "flowsight.workflow": "order_to_cash",
                        "flowsight.stage": stage,
                        "order.id": "SO-OTEL-2",
                    },
                )
            logger.emit(body="not a lifecycle record", attributes={"order.id": "SO-OTEL-2"})
        provider.force_flush()
        tracer.force_flush()
    finally:
        provider.shutdown()
        tracer.shutdown()
    doc = timeline(server, "SO-OTEL-2", spans=1)
    assert doc["workflow"] == "order_to_cash"
    assert [(e["stage"], e["system"], e["source"]) for e in doc["events"]] == [
        ("order_created", "erp", "otlp"),
        ("payment_authorized", "erp", "otlp"),
    ]
    assert doc["events"][0]["trace_id"] == doc["spans"][0]["trace_id"]
    assert doc["events"][0]["event_id"].startswith("otlp-")
    assert [s["state"] for s in doc["stages"][:2]] == ["reached", "reached"]
    assert doc["stages"][1]["since_previous_s"] == 60
