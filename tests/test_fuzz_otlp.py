"""OTLP/HTTP ingest fuzzed on the real engine: hypothesis-made ``ExportTraceServiceRequest`` and
``ExportLogsServiceRequest`` payloads, as protobuf and as OTLP/JSON, some gzip, posted to
``/v1/traces`` and ``/v1/logs``.

No request gets a server error; every rejection is counted in ``partial_success`` with a message
naming the problem; every span accepted is stored once, with what was sent; every lifecycle log
record accepted is stored once as an event, and every one rejected is kept as a dead letter.
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from flowsight.app import Services, create_app
from flowsight.collector.otlp_ingest import derived_event_id
from flowsight.workflows import DEFAULT_WORKFLOWS
from tests.conftest import T0, stored_once

FUZZ = settings(derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
"""Deterministic runs: the same examples every time, nothing remembered between runs."""

T0_NS = int(T0.timestamp()) * 1_000_000_000
DAY_NS = 86_400 * 1_000_000_000
OLDEST_NS = T0_NS - 60 * DAY_NS
"""Valid spans start within 60 days of the pinned clock, so that a request stays within
ClickHouse's 100 partitions per insert (see test_spans_spanning_more_than_100_days_are_stored)."""
BEYOND_NS = 2**63
"""The first nanosecond past what a signed 64-bit count (and DateTime64(9)) holds: 2262-04-11."""
TRACE_POOL = [bytes([n]) * 16 for n in range(1, 5)] + [bytes.fromhex("5b8efff798038103d269b633813fc60c")]
SPAN_POOL = [bytes([n]) * 8 for n in range(1, 9)]
PAIRS = [(wf.name, stage.name) for wf in DEFAULT_WORKFLOWS for stage in wf.stages]
CONTRACT_FIELDS = ("event_id", "correlation_id", "workflow", "stage", "system", "occurred_at", "status")
ID_KEYS = {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}
PROTOBUF, JSON = "application/x-protobuf", "application/json"


@pytest.fixture
def otlp(services: Services) -> Iterator[TestClient]:
    """The app with its lifespan running; a server error is an answer here, not an exception."""
    with TestClient(create_app(services), raise_server_exceptions=False) as test_client:
        yield test_client


# -- encoding ------------------------------------------------------------------------------------


def hex_ids(node: Any) -> Any:
    """protobuf's JSON mapping writes bytes as base64; OTLP/JSON writes trace and span ids as hex."""
    if isinstance(node, dict):
        return {
            key: base64.b64decode(value).hex()
            if key in ID_KEYS and isinstance(value, str)
            else hex_ids(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [hex_ids(item) for item in node]
    return node


@dataclass(frozen=True)
class Encoding:
    """How a request goes over the wire: protobuf or OTLP/JSON (in one of its spellings), gzip or not."""

    media: str
    gzip: bool = False
    proto_names: bool = False
    enum_numbers: bool = True
    content_type: str = ""

    def body(self, message: Message) -> bytes:
        if self.media == PROTOBUF:
            data = message.SerializeToString()
        else:
            data = orjson.dumps(
                hex_ids(
                    json_format.MessageToDict(
                        message,
                        preserving_proto_field_name=self.proto_names,
                        use_integers_for_enums=self.enum_numbers,
                    )
                )
            )
        return gzip.compress(data) if self.gzip else data

    def headers(self) -> dict[str, str]:
        headers = {"content-type": self.content_type or self.media}
        if self.gzip:
            headers["content-encoding"] = "gzip"
        return headers

    def answer(self, response: Any, kind: type[Message]) -> Any:
        """The decoded answer, checking it comes in the request's encoding."""
        assert response.headers["content-type"].split(";")[0] == self.media
        if self.media == PROTOBUF:
            return kind.FromString(response.content)
        return json_format.Parse(response.text, kind())


@st.composite
def encodings(draw: st.DrawFn) -> Encoding:
    media = draw(st.sampled_from([PROTOBUF, JSON]))
    spellings = (
        [PROTOBUF, "application/protobuf"] if media == PROTOBUF else [JSON, "application/json; charset=utf-8"]
    )
    return Encoding(
        media,
        gzip=draw(st.booleans()),
        proto_names=draw(st.booleans()),
        enum_numbers=draw(st.booleans()),
        content_type=draw(st.sampled_from(spellings)),
    )


# -- attribute values ----------------------------------------------------------------------------

scalars = st.one_of(
    st.text(max_size=20).map(lambda s: AnyValue(string_value=s)),
    st.booleans().map(lambda b: AnyValue(bool_value=b)),
    st.integers(-(2**63), 2**63 - 1).map(lambda i: AnyValue(int_value=i)),
    st.floats().map(lambda f: AnyValue(double_value=f)),
    st.binary(max_size=8).map(lambda b: AnyValue(bytes_value=b)),
    st.just(AnyValue()),
)
any_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda vs: AnyValue(array_value=ArrayValue(values=vs))),
        st.lists(st.tuples(st.text(max_size=8), inner), max_size=3).map(
            lambda kvs: AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kvs]))
        ),
    ),
    max_leaves=6,
)


def key_values(pairs: dict[str, AnyValue] | list[tuple[str, AnyValue]]) -> list[KeyValue]:
    items = pairs.items() if isinstance(pairs, dict) else pairs
    return [KeyValue(key=k, value=v) for k, v in items]


def text_value(text: str) -> AnyValue:
    return AnyValue(string_value=text)


def nonzero(n: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=n, max_size=n).filter(lambda b: any(b))


# -- spans -------------------------------------------------------------------------------------

SPAN_FLAWS = {
    # flaw: what the rejection message must name
    "trace_id of another length": "trace_id",
    "trace_id all zero": "trace_id",
    "span_id of another length": "span_id",
    "span_id all zero": "span_id",
    "parent_span_id of another length": "parent_span_id",
    "ends before it starts": "ends before it starts",
    "no start time": "start_time_unix_nano",
    "starts after 2262": "start_time_unix_nano",
    "ends after 2262": "end_time_unix_nano",
    "an event after 2262": "time_unix_nano",
}


@dataclass(frozen=True)
class SpanCase:
    span: Span
    flaw: str | None

    @property
    def key(self) -> tuple[str, str]:
        return self.span.trace_id.hex(), self.span.span_id.hex()


@st.composite
def span_cases(draw: st.DrawFn, correlation_keys: tuple[str, ...]) -> SpanCase:
    """A span, valid or with one flaw the contract rejects."""
    start = draw(st.one_of(st.integers(OLDEST_NS, T0_NS), st.just(1), st.just(T0_NS)))
    attributes = draw(st.lists(st.tuples(st.text(max_size=12), any_values), max_size=4))
    if draw(st.booleans()):
        attributes.append((draw(st.sampled_from(correlation_keys)), text_value(draw(st.text(max_size=20)))))
    span = Span(
        trace_id=draw(st.one_of(st.sampled_from(TRACE_POOL), nonzero(16))),
        span_id=draw(st.one_of(st.sampled_from(SPAN_POOL), nonzero(8))),
        parent_span_id=draw(st.one_of(st.just(b""), st.binary(min_size=8, max_size=8))),
        trace_state=draw(st.text(max_size=10)),
        name=draw(st.text(max_size=30)),
        kind=draw(st.integers(0, 7)),  # type: ignore[arg-type]  # 6 and 7 are no kinds: unspecified
        start_time_unix_nano=start,
        end_time_unix_nano=draw(st.one_of(st.just(0), st.integers(start, start + 10**12))),
        attributes=key_values(attributes),
        status=Status(code=draw(st.integers(0, 3)), message=draw(st.text(max_size=10))),  # type: ignore[arg-type]
    )
    for _ in range(draw(st.integers(0, 2))):
        added = span.events.add()
        added.time_unix_nano = draw(st.integers(0, BEYOND_NS - 1))
        added.name = draw(st.text(max_size=10))
        added.attributes.extend(
            key_values(draw(st.lists(st.tuples(st.text(max_size=8), scalars), max_size=2)))
        )
    for _ in range(draw(st.integers(0, 2))):
        link = span.links.add()
        link.trace_id = draw(st.binary(max_size=16))
        link.span_id = draw(st.binary(max_size=8))
        link.trace_state = draw(st.text(max_size=5))
    flaw = draw(st.one_of(st.none(), st.none(), st.sampled_from(sorted(SPAN_FLAWS))))
    if flaw == "trace_id of another length":
        span.trace_id = draw(st.sampled_from([b"", b"\x01" * 8, b"\x01" * 15, b"\x01" * 17, b"\x01" * 32]))
    elif flaw == "trace_id all zero":
        span.trace_id = bytes(16)
    elif flaw == "span_id of another length":
        span.span_id = draw(st.sampled_from([b"", b"\x01" * 4, b"\x01" * 7, b"\x01" * 9, b"\x01" * 16]))
    elif flaw == "span_id all zero":
        span.span_id = bytes(8)
    elif flaw == "parent_span_id of another length":
        span.parent_span_id = draw(st.sampled_from([b"\x01", b"\x01" * 7, b"\x01" * 9, b"\x01" * 16]))
    elif flaw == "ends before it starts":
        span.start_time_unix_nano = max(start, 2)
        span.end_time_unix_nano = draw(st.integers(1, span.start_time_unix_nano - 1))
    elif flaw == "no start time":
        span.start_time_unix_nano = 0
    elif flaw == "starts after 2262":
        span.start_time_unix_nano = draw(st.integers(BEYOND_NS, 2**64 - 1))
        span.end_time_unix_nano = draw(
            st.one_of(st.just(0), st.integers(span.start_time_unix_nano, 2**64 - 1))
        )
    elif flaw == "ends after 2262":
        span.end_time_unix_nano = draw(st.integers(BEYOND_NS, 2**64 - 1))
    elif flaw == "an event after 2262":
        span.events.add(name="late", time_unix_nano=draw(st.integers(BEYOND_NS, 2**64 - 1)))
    return SpanCase(span, flaw)


@dataclass(frozen=True)
class TraceRequest:
    resources: list[tuple[str | None, list[list[SpanCase]]]]
    """Per resource: its service.name (or none), and its scopes' spans."""

    def message(self) -> ExportTraceServiceRequest:
        request = ExportTraceServiceRequest()
        for service, scopes in self.resources:
            resource_spans = request.resource_spans.add()
            if service is not None:
                resource_spans.resource.attributes.extend(key_values({"service.name": text_value(service)}))
            for n, cases in enumerate(scopes):
                scope_spans = resource_spans.scope_spans.add()
                scope_spans.scope.name, scope_spans.scope.version = f"scope-{n}", "1.0"
                scope_spans.spans.extend(case.span for case in cases)
        return request

    def cases(self) -> list[tuple[str, SpanCase]]:
        return [
            (service or "", case) for service, scopes in self.resources for cases in scopes for case in cases
        ]


def trace_requests(correlation_keys: tuple[str, ...]) -> st.SearchStrategy[TraceRequest]:
    spans = st.lists(span_cases(correlation_keys), max_size=6)
    service = st.one_of(st.none(), st.sampled_from(["erp", "wms", "payments"]), st.text(max_size=12))
    return st.builds(
        TraceRequest, st.lists(st.tuples(service, st.lists(spans, min_size=1, max_size=2)), max_size=3)
    )


@dataclass
class SpanLedger:
    """What ``otel_traces`` must hold: each accepted span once, as first sent."""

    client: TestClient
    services: Services
    stored: dict[tuple[str, str], tuple[str, str, int, int]] = field(default_factory=dict)

    def post(self, request: TraceRequest, encoding: Encoding) -> Any:
        message = request.message()
        response = self.client.post("/v1/traces", content=encoding.body(message), headers=encoding.headers())
        assert response.status_code == 200, response.text
        answer = encoding.answer(response, ExportTraceServiceResponse)
        flawed = [case.flaw for _, case in request.cases() if case.flaw is not None]
        assert answer.partial_success.rejected_spans == len(flawed)
        if flawed:
            text = answer.partial_success.error_message
            assert text.startswith(f"{len(flawed)} span(s) rejected: "), text
            assert SPAN_FLAWS[flawed[0]] in text, (flawed[0], text)
        else:
            assert not answer.partial_success.error_message
        for service, case in request.cases():
            if case.flaw is None and case.key not in self.stored:
                span = case.span
                duration = max(span.end_time_unix_nano - span.start_time_unix_nano, 0)
                self.stored[case.key] = (span.name, service, span.start_time_unix_nano, duration)
        self.check_store()
        return answer

    def check_store(self) -> None:
        assert self.services.writer.wait_idle()
        table = self.services.schema.table("otel_traces")
        [(count, distinct)] = self.services.store.rows(
            f"SELECT count(), uniqExact(TraceId, SpanId) FROM {table}"
        )
        assert count == distinct == len(self.stored)
        rows = self.services.store.rows(
            "SELECT TraceId, SpanId, SpanName, ServiceName, toUnixTimestamp64Nano(Timestamp), Duration "
            f"FROM {table}"
        )
        assert {(r[0], r[1]): (r[2], r[3], r[4], r[5]) for r in rows} == self.stored


def test_fuzzed_trace_exports_store_every_accepted_span_once(otlp: TestClient, services: Services) -> None:
    ledger = SpanLedger(otlp, services)
    rejected = 0

    @settings(FUZZ, max_examples=50)
    @given(request=trace_requests(services.settings.correlation_keys), encoding=encodings())
    def fuzz(request: TraceRequest, encoding: Encoding) -> None:
        nonlocal rejected
        rejected += ledger.post(request, encoding).partial_success.rejected_spans

    fuzz()
    assert ledger.stored and rejected


# -- log records ---------------------------------------------------------------------------------

LOG_FLAWS = {
    # flaw: the field its rejection names
    "a stage of no such name": "stage",
    "an unknown workflow": "workflow",
    "a workflow given as a number": "workflow",
    "no stage": "stage",
    "no workflow": "workflow",
    "a correlation ID over the limit": "correlation_id",
    "an upper-case system": "system",
    "no time at all": "occurred_at",
    "a time far ahead": "occurred_at",
    "an unknown status": "status",
    "a channel over the limit": "channel",
    "a short trace id": "trace_id",
    "a short span id": "span_id",
    "an event id over the limit": "event_id",
    "an attribute value over the limit": "attributes",
}
EVENT_IDS = ["wms-1", "wms-2", "shipping-9"]
TIMES = [T0_NS - DAY_NS, T0_NS - 3_600_000_000_000]


@dataclass(frozen=True)
class LogCase:
    record: LogRecord
    lifecycle: bool
    flaw: str | None
    event_id: str | None
    """The id of the event a valid lifecycle record becomes."""


@st.composite
def log_cases(draw: st.DrawFn, limits: Any) -> LogCase:
    """A log record: an ordinary one (not kept), or a lifecycle record, valid or with one flaw."""
    keys: tuple[str, ...] = limits.correlation_keys
    time = draw(st.one_of(st.integers(OLDEST_NS, T0_NS), st.sampled_from(TIMES)))
    record = LogRecord(
        severity_number=draw(st.integers(0, 24)),  # type: ignore[arg-type]
        body=draw(any_values),
        trace_id=draw(st.one_of(st.just(b""), st.just(bytes(16)), st.sampled_from(TRACE_POOL))),
        span_id=draw(st.one_of(st.just(b""), st.sampled_from(SPAN_POOL))),
    )
    if draw(st.booleans()):
        record.time_unix_nano = time
    else:
        record.observed_time_unix_nano = time
    others = draw(
        st.dictionaries(
            st.text(min_size=1, max_size=12).filter(
                lambda k: not k.startswith("flowsight.") and k not in keys
            ),
            st.one_of(
                st.text(max_size=20).map(text_value), st.integers(-5, 5).map(lambda i: AnyValue(int_value=i))
            ),
            max_size=3,
        )
    )
    if not draw(st.integers(0, 3)):
        record.attributes.extend(key_values(others))
        return LogCase(record, lifecycle=False, flaw=None, event_id=None)
    workflow, stage = draw(st.sampled_from(PAIRS))
    attributes: dict[str, AnyValue] = {
        "flowsight.workflow": text_value(workflow),
        "flowsight.stage": text_value(stage),
        draw(st.sampled_from(keys)): text_value(draw(st.text(min_size=1, max_size=limits.max_id_chars))),
        **others,
    }
    if draw(st.booleans()):
        attributes["flowsight.system"] = text_value(draw(st.from_regex(r"[a-z0-9_.-]{1,64}", fullmatch=True)))
    if draw(st.booleans()):
        attributes["flowsight.status"] = text_value(draw(st.sampled_from(["ok", "failed"])))
    if draw(st.booleans()):
        attributes["flowsight.channel"] = text_value(draw(st.text(max_size=limits.max_channel_chars)))
    explicit = draw(
        st.one_of(st.none(), st.sampled_from(EVENT_IDS), st.text(min_size=1, max_size=limits.max_id_chars))
    )
    if explicit is not None:
        attributes["flowsight.event_id"] = text_value(explicit)
    flaw = draw(st.one_of(st.none(), st.none(), st.sampled_from(sorted(LOG_FLAWS))))
    if flaw == "a stage of no such name":
        attributes["flowsight.stage"] = text_value("teleported")
    elif flaw == "an unknown workflow":
        attributes["flowsight.workflow"] = text_value("unknown_flow")
    elif flaw == "a workflow given as a number":
        attributes["flowsight.workflow"] = AnyValue(int_value=7)
    elif flaw == "no stage":
        del attributes["flowsight.stage"]
    elif flaw == "no workflow":
        del attributes["flowsight.workflow"]
    elif flaw == "a correlation ID over the limit":
        attributes = {k: v for k, v in attributes.items() if k not in keys}
        attributes[keys[0]] = text_value("c" * (limits.max_id_chars + 1))
    elif flaw == "an upper-case system":
        attributes["flowsight.system"] = text_value("ERP")
    elif flaw == "no time at all":
        record.time_unix_nano = record.observed_time_unix_nano = 0
    elif flaw == "a time far ahead":
        record.time_unix_nano = T0_NS + (limits.max_future_seconds + 86_400) * 1_000_000_000
    elif flaw == "an unknown status":
        attributes["flowsight.status"] = text_value("done")
    elif flaw == "a channel over the limit":
        attributes["flowsight.channel"] = text_value("c" * (limits.max_channel_chars + 1))
    elif flaw == "a short trace id":
        record.trace_id = b"\x01" * 5
    elif flaw == "a short span id":
        record.span_id = b"\x01" * 3
    elif flaw == "an event id over the limit":
        attributes["flowsight.event_id"] = text_value("e" * (limits.max_id_chars + 1))
    elif flaw == "an attribute value over the limit":
        attributes["note"] = text_value("v" * (limits.max_attribute_value_chars + 1))
    record.attributes.extend(key_values(attributes))
    event_id = explicit or derived_event_id(
        record.trace_id.hex(),
        record.span_id.hex(),
        workflow,
        stage,
        record.time_unix_nano or record.observed_time_unix_nano,
    )
    return LogCase(record, lifecycle=True, flaw=flaw, event_id=event_id)


@dataclass(frozen=True)
class LogRequest:
    resources: list[tuple[str, list[LogCase]]]
    """Per resource: its service.name (a valid system name), and its records."""

    def message(self) -> ExportLogsServiceRequest:
        request = ExportLogsServiceRequest()
        for service, cases in self.resources:
            resource_logs = request.resource_logs.add()
            resource_logs.resource.attributes.extend(key_values({"service.name": text_value(service)}))
            resource_logs.scope_logs.add().log_records.extend(case.record for case in cases)
        return request

    def cases(self) -> list[LogCase]:
        return [case for _, cases in self.resources for case in cases]


def log_requests(limits: Any) -> st.SearchStrategy[LogRequest]:
    service = st.one_of(
        st.sampled_from(["wms", "shipping"]), st.from_regex(r"[a-z0-9_.-]{1,20}", fullmatch=True)
    )
    return st.builds(
        LogRequest, st.lists(st.tuples(service, st.lists(log_cases(limits), max_size=8)), max_size=3)
    )


@dataclass
class EventLedger:
    """What the events and dead-letter tables must hold after lifecycle log records."""

    client: TestClient
    services: Services
    stored: set[str] = field(default_factory=set)
    dead_letters: int = 0

    def post(self, request: LogRequest, encoding: Encoding) -> Any:
        response = self.client.post(
            "/v1/logs", content=encoding.body(request.message()), headers=encoding.headers()
        )
        assert response.status_code == 200, response.text
        answer = encoding.answer(response, ExportLogsServiceResponse)
        flawed = [case.flaw for case in request.cases() if case.flaw is not None]
        assert answer.partial_success.rejected_log_records == len(flawed)
        if flawed:
            text = answer.partial_success.error_message
            assert text.startswith(f"{len(flawed)} log record(s) rejected as lifecycle events: "), text
            assert f"{LOG_FLAWS[flawed[0]]}" in text, (flawed[0], text)
            assert any(f"{name}:" in text or "attributes." in text for name in CONTRACT_FIELDS), text
        for case in request.cases():
            if case.lifecycle and case.flaw is None:
                assert case.event_id is not None
                self.stored.add(case.event_id)
        self.dead_letters += len(flawed)
        self.check_store()
        return answer

    def check_store(self) -> None:
        assert self.services.writer.wait_idle()
        rows = stored_once(self.services, self.stored, "source")
        assert {r[1] for r in rows} <= {"otlp"}
        letters = self.client.get("/api/dead-letters", params={"source": "otlp_logs", "limit": 1}).json()
        assert letters["total"] == self.dead_letters


def test_fuzzed_log_exports_store_lifecycle_records_once_and_keep_rejects(
    otlp: TestClient, services: Services
) -> None:
    ledger = EventLedger(otlp, services)
    rejected = 0

    @settings(FUZZ, max_examples=50)
    @given(request=log_requests(services.settings), encoding=encodings())
    def fuzz(request: LogRequest, encoding: Encoding) -> None:
        nonlocal rejected
        rejected += ledger.post(request, encoding).partial_success.rejected_log_records

    fuzz()
    assert ledger.stored and rejected


# -- bodies that are not export requests -------------------------------------------------------


def assert_refused_clearly(response: Any, media: str) -> None:
    """A 400 whose body is a google.rpc.Status, in the request's encoding, with a message."""
    assert response.status_code == 400, response.text
    if media == PROTOBUF:
        message = status_pb2.Status.FromString(response.content).message
    else:
        message = response.json()["message"]
    assert message


@st.composite
def damaged_protobuf(draw: st.DrawFn, correlation_keys: tuple[str, ...]) -> bytes:
    """A serialized export request cut short or with bytes changed, or bytes of no kind."""
    whole = draw(trace_requests(correlation_keys)).message().SerializeToString()
    kind = draw(st.sampled_from(["cut", "changed", "random"]))
    if kind == "cut" and whole:
        return whole[: draw(st.integers(0, len(whole) - 1))]
    if kind == "changed" and whole:
        data = bytearray(whole)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    return draw(st.binary(max_size=64))


@pytest.mark.parametrize("path", ["/v1/traces", "/v1/logs"])
def test_damaged_protobuf_is_refused_clearly_or_read_like_the_protobuf_library_reads_it(
    otlp: TestClient, services: Services, path: str
) -> None:
    kind = ExportTraceServiceRequest if path == "/v1/traces" else ExportLogsServiceRequest
    table = services.schema.table("otel_traces" if path == "/v1/traces" else "events")
    outcomes: set[int] = set()

    @settings(FUZZ, max_examples=40)
    @given(body=damaged_protobuf(services.settings.correlation_keys))
    def fuzz(body: bytes) -> None:
        try:
            request = kind.FromString(body)
        except DecodeError:
            request = None
        assert services.writer.wait_idle()
        before = services.store.rows(f"SELECT count() FROM {table}")[0][0]
        response = otlp.post(path, content=body, headers={"content-type": PROTOBUF})
        outcomes.add(response.status_code)
        if request is None:
            assert_refused_clearly(response, PROTOBUF)
            return
        assert response.status_code == 200, response.content
        assert services.writer.wait_idle()
        after = services.store.rows(f"SELECT count() FROM {table}")[0][0]
        if isinstance(request, ExportTraceServiceRequest):
            sent = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
            rejected = ExportTraceServiceResponse.FromString(response.content).partial_success.rejected_spans
        else:
            sent = sum(len(s.log_records) for r in request.resource_logs for s in r.scope_logs)
            rejected = ExportLogsServiceResponse.FromString(
                response.content
            ).partial_success.rejected_log_records
        assert 0 <= after - before <= sent - rejected

    fuzz()
    assert outcomes == {200, 400}


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        st.floats(allow_nan=False),
        st.text(max_size=12),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.one_of(
                st.sampled_from(
                    [
                        "resourceSpans",
                        "resourceLogs",
                        "scopeSpans",
                        "scopeLogs",
                        "spans",
                        "logRecords",
                        "traceId",
                        "spanId",
                        "attributes",
                        "startTimeUnixNano",
                        "timeUnixNano",
                        "kind",
                    ]
                ),
                st.text(max_size=6),
            ),
            inner,
            max_size=3,
        ),
    ),
    max_leaves=12,
)


@pytest.mark.parametrize("path", ["/v1/traces", "/v1/logs"])
def test_json_that_is_not_an_export_request_never_gets_a_server_error(otlp: TestClient, path: str) -> None:
    statuses: set[int] = set()

    @settings(FUZZ, max_examples=60)
    @given(document=json_values)
    def fuzz(document: Any) -> None:
        response = otlp.post(path, content=orjson.dumps(document), headers={"content-type": JSON})
        statuses.add(response.status_code)
        if response.status_code != 200:
            assert_refused_clearly(response, JSON)

    fuzz()
    assert statuses <= {200, 400} and 400 in statuses


def field_bytes(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def nested_body(path: str, media: str, depth: int) -> bytes:
    """An export request whose one attribute (span) or body (log record) is an array in an
    array ... ``depth`` deep; built by hand, since the protobuf library refuses to copy it."""
    if media == JSON:  # spelled out: orjson refuses to write nesting this deep
        value = b'{"arrayValue": {"values": [' * depth + b'{"stringValue": "deep"}' + b"]}}" * depth
        if path == "/v1/traces":
            span = orjson.dumps(
                {
                    "traceId": TRACE_POOL[0].hex(),
                    "spanId": SPAN_POOL[0].hex(),
                    "name": "deep",
                    "startTimeUnixNano": str(T0_NS),
                }
            )
            span = span[:-1] + b', "attributes": [{"key": "nested", "value": ' + value + b"}]}"
            return b'{"resourceSpans": [{"scopeSpans": [{"spans": [' + span + b"]}]}]}"
        record = b'{"timeUnixNano": "' + str(T0_NS).encode() + b'", "body": ' + value + b"}"
        return b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [' + record + b"]}]}]}"
    any_value = AnyValue(string_value="deep").SerializeToString()
    for _ in range(depth):  # AnyValue.array_value = 5, ArrayValue.values = 1
        any_value = field_bytes(5, field_bytes(1, any_value))
    if path == "/v1/traces":
        span = Span(trace_id=TRACE_POOL[0], span_id=SPAN_POOL[0], name="deep", start_time_unix_nano=T0_NS)
        attribute = field_bytes(1, b"nested") + field_bytes(2, any_value)  # KeyValue key, value
        span_bytes = span.SerializeToString() + field_bytes(9, attribute)  # Span.attributes = 9
        return field_bytes(1, field_bytes(2, field_bytes(2, span_bytes)))  # resource, scope, span
    record = LogRecord(time_unix_nano=T0_NS).SerializeToString() + field_bytes(5, any_value)  # body = 5
    return field_bytes(1, field_bytes(2, field_bytes(2, record)))


@pytest.mark.parametrize("media", [PROTOBUF, JSON])
@pytest.mark.parametrize("path", ["/v1/traces", "/v1/logs"])
def test_nested_values_are_read_up_to_protobufs_depth_and_refused_clearly_beyond(
    otlp: TestClient, path: str, media: str
) -> None:
    read = otlp.post(path, content=nested_body(path, media, 40), headers={"content-type": media})
    assert read.status_code == 200, read.content
    refused = otlp.post(path, content=nested_body(path, media, 300), headers={"content-type": media})
    assert_refused_clearly(refused, media)


@pytest.mark.parametrize("depth", [100, 490, 1000])
@pytest.mark.parametrize("path", ["/v1/traces", "/v1/logs"])
def test_deeply_nested_unknown_fields_are_ignored(otlp: TestClient, path: str, depth: int) -> None:
    body = b'{"unknownField": ' + b"[" * depth + b"]" * depth + b"}"
    response = otlp.post(path, content=body, headers={"content-type": JSON})
    assert response.status_code == 200, response.text
    assert response.json() == {}


@pytest.mark.parametrize(
    ("start", "end", "event_time", "named"),
    [
        pytest.param(BEYOND_NS, 0, None, "start_time_unix_nano", id="a span starting after 2262"),
        pytest.param(
            2**64 - 1, 2**64 - 1, None, "start_time_unix_nano", id="a span starting at the last uint64"
        ),
        pytest.param(T0_NS, BEYOND_NS, None, "end_time_unix_nano", id="a span ending after 2262"),
        pytest.param(T0_NS, 0, 2**64 - 1, "time_unix_nano", id="a span with an event after 2262"),
    ],
)
@pytest.mark.parametrize("media", [PROTOBUF, JSON])
def test_times_past_2262_are_rejected_in_partial_success_and_the_rest_stored(
    otlp: TestClient, services: Services, start: int, end: int, event_time: int | None, named: str, media: str
) -> None:
    late = Span(trace_id=TRACE_POOL[0], span_id=SPAN_POOL[0], name="late", start_time_unix_nano=start)
    late.end_time_unix_nano = end
    if event_time is not None:
        late.events.add(name="e", time_unix_nano=event_time)
    fine = Span(trace_id=TRACE_POOL[0], span_id=SPAN_POOL[1], name="fine", start_time_unix_nano=T0_NS)
    request = TraceRequest([("erp", [[SpanCase(late, "late"), SpanCase(fine, None)]])])
    encoding = Encoding(media)
    response = otlp.post("/v1/traces", content=encoding.body(request.message()), headers=encoding.headers())
    assert response.status_code == 200, response.content
    partial = encoding.answer(response, ExportTraceServiceResponse).partial_success
    assert partial.rejected_spans == 1
    assert named in partial.error_message
    assert services.writer.wait_idle()
    names = services.store.rows(f"SELECT SpanName FROM {services.schema.table('otel_traces')}")
    assert names == [("fine",)]


def test_spans_spanning_more_than_100_days_are_stored(otlp: TestClient, services: Services) -> None:
    spans = [
        SpanCase(
            Span(
                trace_id=TRACE_POOL[0],
                span_id=(n + 1).to_bytes(8, "big"),
                name="replayed",
                start_time_unix_nano=T0_NS - n * DAY_NS,
            ),
            None,
        )
        for n in range(101)
    ]
    encoding = Encoding(PROTOBUF)
    message = TraceRequest([("erp", [spans])]).message()
    response = otlp.post("/v1/traces", content=encoding.body(message), headers=encoding.headers())
    assert response.status_code == 200
    assert services.writer.wait_idle()
    [(count,)] = services.store.rows(f"SELECT count() FROM {services.schema.table('otel_traces')}")
    assert count == 101
