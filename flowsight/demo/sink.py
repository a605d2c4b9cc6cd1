"""Where the simulated estate's traffic goes: the same paths real systems use.

Lifecycle events are posted to ``/v1/events`` in batches; every system has its own OpenTelemetry
SDK tracer provider (``service.name`` = the system) exporting spans over OTLP/HTTP to
``/v1/traces``, each carrying ``order.id``; the shipping integration reports its lifecycle as
OTLP log records (``flowsight.workflow``, ``flowsight.stage``, ...) to ``/v1/logs`` instead of
``/v1/events``, as a system already instrumented with OpenTelemetry would.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from flowsight.demo.estate import SYSTEMS
from flowsight.demo.simulator import Emitted

LOG_SYSTEMS = frozenset({"shipping"})
"""Systems that report their lifecycle as OTLP log records rather than to /v1/events."""

BATCH = 2000


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class SinkCounters:
    events: int = 0
    spans: int = 0
    logs: int = 0
    rejected: int = 0


class HttpSink:
    """Sends to a flowsight service at ``base_url``; :meth:`flush` after each simulated tick."""

    def __init__(self, base_url: str, *, spans: bool = True, seed: int = 11):
        self.base_url = base_url.rstrip("/")
        self.rng = random.Random(seed)
        self.spans = spans
        self.client = httpx.Client(timeout=60)
        self.pending: list[dict[str, Any]] = []
        self.counters = SinkCounters()
        self.tracers: dict[str, Any] = {}
        self.providers: list[TracerProvider] = []
        self.loggers: dict[str, Any] = {}
        self.log_providers: list[LoggerProvider] = []
        for system in SYSTEMS:
            resource = Resource.create({"service.name": system, "deployment.environment": "demo"})
            if spans:
                provider = TracerProvider(resource=resource)
                provider.add_span_processor(
                    BatchSpanProcessor(
                        OTLPSpanExporter(endpoint=f"{self.base_url}/v1/traces", timeout=30),
                        max_queue_size=200_000,
                        max_export_batch_size=2048,
                        schedule_delay_millis=1000,
                    )
                )
                self.providers.append(provider)
                self.tracers[system] = provider.get_tracer("flowsight.demo")
            if system in LOG_SYSTEMS:
                log_provider = LoggerProvider(resource=resource)
                log_provider.add_log_record_processor(
                    BatchLogRecordProcessor(
                        OTLPLogExporter(endpoint=f"{self.base_url}/v1/logs", timeout=30),
                        max_queue_size=100_000,
                        max_export_batch_size=1024,
                        schedule_delay_millis=1000,
                    )
                )
                self.log_providers.append(log_provider)
                self.loggers[system] = log_provider.get_logger("flowsight.demo")

    def emit(self, item: Emitted) -> None:
        trace_id, span_id = self._spans(item) if self.spans else ("", "")
        if item.system in LOG_SYSTEMS:
            self._log(item, trace_id, span_id)
            return
        event: dict[str, Any] = {
            "event_id": f"{item.correlation_id}-{item.stage}-{item.status}-{item.attempt}",
            "correlation_id": item.correlation_id,
            "workflow": item.workflow,
            "stage": item.stage,
            "system": item.system,
            "occurred_at": _iso(item.at),
            "status": item.status,
            "channel": item.channel,
        }
        if trace_id:
            event["trace_id"], event["span_id"] = trace_id, span_id
        if item.attempt:
            event["attributes"] = {"attempt": str(item.attempt)}
        self.pending.append(event)

    def heartbeat(self, system: str, at: float, operation: str) -> None:
        if not self.spans:
            return
        end = int(at * 1e9)
        span = self.tracers[system].start_span(operation, kind=SpanKind.CONSUMER, start_time=end - 50_000_000)
        span.end(end_time=end)
        self.counters.spans += 1

    def _spans(self, item: Emitted) -> tuple[str, str]:
        """The step's call: a server span of the step's system, and under it a span of the
        system it calls; errors where the failure was."""
        end = int(item.at * 1e9)
        duration = int(self.rng.uniform(0.02, 0.4) * 1e9)
        failed = item.status == "failed"
        root = self.tracers[item.system].start_span(
            item.operation or item.stage,
            kind=SpanKind.SERVER,
            start_time=end - duration,
            attributes={
                "order.id": item.correlation_id,
                "flowsight.stage": item.stage,
                "retail.channel": item.channel,
            },
        )
        if item.calls:
            child_start = end - duration + duration // 10
            child = self.tracers[item.calls].start_span(
                f"{item.calls}: {item.operation or item.stage}",
                kind=SpanKind.SERVER,
                context=trace.set_span_in_context(root),
                start_time=child_start,
            )
            if failed and item.cause and item.cause == item.calls:
                child.set_status(Status(StatusCode.ERROR, f"{item.calls} unavailable"))
            child.end(end_time=child_start + duration // 2)
            self.counters.spans += 1
        if failed:
            root.set_status(Status(StatusCode.ERROR, f"{item.cause or item.system} failed"))
        root.end(end_time=end)
        self.counters.spans += 1
        context = root.get_span_context()
        return f"{context.trace_id:032x}", f"{context.span_id:016x}"

    def _log(self, item: Emitted, trace_id: str, span_id: str) -> None:
        attributes = {
            "order.id": item.correlation_id,
            "flowsight.workflow": item.workflow,
            "flowsight.stage": item.stage,
            "flowsight.status": item.status,
            "flowsight.channel": item.channel,
            "flowsight.event_id": f"{item.correlation_id}-{item.stage}-{item.status}-{item.attempt}",
        }
        self.loggers[item.system].emit(
            timestamp=int(item.at * 1e9),
            body=f"{item.stage} {item.status} for {item.correlation_id}",
            severity_text="ERROR" if item.status == "failed" else "INFO",
            attributes=attributes,
        )
        self.counters.logs += 1

    def flush(self) -> None:
        """Post the buffered events and push out the SDKs' spans and log records."""
        self.flush_events()
        self.flush_telemetry()

    def flush_telemetry(self) -> None:
        """Push out the spans and log records the SDKs hold (they also export on their own,
        every second, as in any instrumented service)."""
        for provider in self._providers():
            provider.force_flush(30_000)

    def flush_events(self) -> None:
        """Post the buffered lifecycle events."""
        for start in range(0, len(self.pending), BATCH):
            chunk = self.pending[start : start + BATCH]
            response = self.client.post(
                f"{self.base_url}/v1/events",
                content=orjson.dumps(chunk),
                headers={"content-type": "application/json"},
            )
            response.raise_for_status()
            body = response.json()
            self.counters.events += int(body["accepted"])
            self.counters.rejected += int(body["rejected"])
        self.pending.clear()

    def _providers(self) -> Iterable[TracerProvider | LoggerProvider]:
        return [*self.providers, *self.log_providers]

    def close(self) -> None:
        self.flush()
        for provider in self._providers():
            provider.shutdown()
        self.client.close()
