"""OTLP/HTTP ingestion: spans into ``otel_traces``; log records that carry ``flowsight.*``
attributes into lifecycle events, through the same validation, dedup and dead letters."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from flowsight.auth import Principal
from flowsight.collector import dead_letters
from flowsight.collector.events import DEFAULT_LIMITS, EventBatch, EventLimits
from flowsight.collector.ingest import batch_for
from flowsight.collector.otlp import (
    PROTOBUF,
    SpanBatch,
    attributes,
    correlation_of,
    decode_logs,
    decode_traces,
)
from flowsight.collector.otlp_wire import span_table
from flowsight.collector.writer import EMPTY_SPANS, EventWriter
from flowsight.timefmt import to_ms
from flowsight.workflows import WorkflowCatalog

WORKFLOW_KEY = "flowsight.workflow"
STAGE_KEY = "flowsight.stage"
STATUS_KEY = "flowsight.status"
SYSTEM_KEY = "flowsight.system"
EVENT_ID_KEY = "flowsight.event_id"
CHANNEL_KEY = "flowsight.channel"
_RESERVED = frozenset({WORKFLOW_KEY, STAGE_KEY, STATUS_KEY, SYSTEM_KEY, EVENT_ID_KEY, CHANNEL_KEY})


@dataclass(frozen=True)
class OtlpResult:
    """What one export request came to: stored, duplicate and rejected items, and why."""

    accepted: int
    duplicates: int
    rejected: int
    message: str
    ignored: int = 0


def _rfc3339(unix_nano: int) -> str:
    seconds, nanos = divmod(unix_nano, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos // 1_000_000:03d}Z"


def derived_event_id(trace_id: str, span_id: str, workflow: str, stage: str, unix_nano: int) -> str:
    """A stable id for a log record without ``flowsight.event_id``, so a resend dedupes."""
    digest = hashlib.blake2b(f"{trace_id}|{span_id}|{workflow}|{stage}|{unix_nano}".encode(), digest_size=16)
    return "otlp-" + digest.hexdigest()


def lifecycle_events(
    request: ExportLogsServiceRequest, correlation_keys: Sequence[str]
) -> tuple[list[Any], int]:
    """Lifecycle events (as event-contract dicts) from the log records that carry
    ``flowsight.workflow`` and ``flowsight.stage``; also how many records carried neither."""
    events: list[Any] = []
    ignored = 0
    for resource_logs in request.resource_logs:
        resource = attributes(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                attrs = attributes(record.attributes)
                if WORKFLOW_KEY not in attrs and STAGE_KEY not in attrs:
                    ignored += 1
                    continue
                unix_nano = record.time_unix_nano or record.observed_time_unix_nano
                trace_id, span_id = record.trace_id.hex(), record.span_id.hex()
                workflow, stage = attrs.get(WORKFLOW_KEY, ""), attrs.get(STAGE_KEY, "")
                event: dict[str, Any] = {
                    "event_id": attrs.get(EVENT_ID_KEY)
                    or derived_event_id(trace_id, span_id, workflow, stage, unix_nano),
                    "correlation_id": correlation_of(correlation_keys, attrs, resource) or None,
                    "workflow": workflow or None,
                    "stage": stage or None,
                    "system": attrs.get(SYSTEM_KEY) or resource.get("service.name") or None,
                    "occurred_at": _rfc3339(unix_nano) if unix_nano else None,
                    "status": attrs.get(STATUS_KEY, "ok"),
                }
                if attrs.get(CHANNEL_KEY):
                    event["channel"] = attrs[CHANNEL_KEY]
                if trace_id.strip("0"):
                    event["trace_id"] = trace_id
                if span_id.strip("0"):
                    event["span_id"] = span_id
                extra = {k: v for k, v in attrs.items() if k not in _RESERVED and k not in correlation_keys}
                if extra:
                    event["attributes"] = dict(list(extra.items())[:64])
                events.append({k: v for k, v in event.items() if v is not None})
    return events, ignored


class OtlpIngestor:
    """Decodes OTLP export requests and writes what they carry."""

    def __init__(
        self,
        writer: EventWriter,
        catalog: Callable[[], WorkflowCatalog],
        clock: Callable[[], datetime],
        correlation_keys: Sequence[str],
        limits: EventLimits = DEFAULT_LIMITS,
    ):
        self.writer = writer
        self.catalog = catalog
        self.clock = clock
        self.correlation_keys = tuple(correlation_keys)
        self.limits = limits

    async def traces(self, body: bytes, media: str, sender: Principal | None = None) -> OtlpResult:
        """Store the spans of an ``ExportTraceServiceRequest`` (resent spans once). A sender
        limited to some systems has the spans of other services rejected."""
        spans = span_table(body, self.correlation_keys) if media == PROTOBUF else None
        rejected, message = 0, ""
        if spans is None:  # OTLP/JSON, or a request the wire scanner leaves to the protobuf library
            batch = SpanBatch(self.correlation_keys)
            batch.add_request(decode_traces(body, media))
            spans = batch.to_arrow()
            rejected, message = batch.rejected, batch.message()
        if sender is not None and sender.systems is not None and spans.num_rows:
            allowed = pc.is_in(spans.column("ServiceName"), pa.array(sorted(sender.systems), pa.string()))
            refused = spans.num_rows - pc.sum(allowed).as_py()
            if refused:
                spans = spans.filter(allowed)
                rejected += refused
                note = (
                    f"{refused} span(s) from services token {sender.name!r} may not report for "
                    f"(it may send for {', '.join(sorted(sender.systems))})"
                )
                message = f"{message}; {note}" if message else note
        outcome = await asyncio.wrap_future(
            self.writer.submit(EventBatch(self.catalog(), "otlp", 0).to_arrow(), None, spans)
        )
        return OtlpResult(outcome.spans_accepted, outcome.spans_duplicates, rejected, message)

    async def logs(self, body: bytes, media: str, sender: Principal | None = None) -> OtlpResult:
        """Turn lifecycle log records into events; the rest are acknowledged and not kept."""
        request = decode_logs(body, media)
        events, ignored = lifecycle_events(request, self.correlation_keys)
        now_ms = to_ms(self.clock())
        batch = batch_for(self.catalog(), "otlp", now_ms, self.limits, sender)
        for index, item in enumerate(events):
            batch.add(index, item)
        dead = dead_letters.build(
            now_ms,
            "otlp_logs",
            [
                (eid, error, payload)
                for (_, eid, error), payload in zip(batch.errors, batch.rejected_payloads, strict=True)
            ],
        )
        outcome = await asyncio.wrap_future(self.writer.submit(batch.to_arrow(), dead, EMPTY_SPANS))
        message = ""
        if batch.errors:
            shown = "; ".join(f"{eid or '#' + str(i)}: {error}" for i, eid, error in batch.errors[:10])
            message = f"{len(batch.errors)} log record(s) rejected as lifecycle events: {shown}"
        return OtlpResult(outcome.accepted, outcome.duplicates, len(batch.errors), message, ignored)
