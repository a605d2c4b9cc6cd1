"""OTLP/HTTP decoding: protobuf or JSON export requests into span rows and log records.

JSON follows the OTLP/HTTP encoding rules: trace and span IDs are hex (not base64), enums may
be integers, 64-bit integers may be strings, unknown fields are ignored. Attribute values
become strings (arrays and maps as JSON), as in the OpenTelemetry Collector's ClickHouse
exporter, whose ``otel_traces`` layout the rows follow.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})
_KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
_STATUS = ("Unset", "Ok", "Error")
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
_LAST_NANO = 2**63 - 1
"""The last time otel_traces holds: DateTime64(9) counts nanoseconds in a signed 64-bit integer
(2262-04-11T23:47:16Z); OTLP's unsigned times go on to the year 2554."""

_ATTR_MAP = pa.map_(pa.string(), pa.string())
SPAN_SCHEMA = pa.schema(
    [
        pa.field("Timestamp", pa.timestamp("ns", tz="UTC"), nullable=False),
        pa.field("TraceId", pa.string(), nullable=False),
        pa.field("SpanId", pa.string(), nullable=False),
        pa.field("ParentSpanId", pa.string(), nullable=False),
        pa.field("TraceState", pa.string(), nullable=False),
        pa.field("SpanName", pa.string(), nullable=False),
        pa.field("SpanKind", pa.string(), nullable=False),
        pa.field("ServiceName", pa.string(), nullable=False),
        pa.field("ResourceAttributes", _ATTR_MAP, nullable=False),
        pa.field("ScopeName", pa.string(), nullable=False),
        pa.field("ScopeVersion", pa.string(), nullable=False),
        pa.field("SpanAttributes", _ATTR_MAP, nullable=False),
        pa.field("Duration", pa.uint64(), nullable=False),
        pa.field("StatusCode", pa.string(), nullable=False),
        pa.field("StatusMessage", pa.string(), nullable=False),
        pa.field("Events.Timestamp", pa.list_(pa.timestamp("ns", tz="UTC")), nullable=False),
        pa.field("Events.Name", pa.list_(pa.string()), nullable=False),
        pa.field("Events.Attributes", pa.list_(_ATTR_MAP), nullable=False),
        pa.field("Links.TraceId", pa.list_(pa.string()), nullable=False),
        pa.field("Links.SpanId", pa.list_(pa.string()), nullable=False),
        pa.field("Links.TraceState", pa.list_(pa.string()), nullable=False),
        pa.field("Links.Attributes", pa.list_(_ATTR_MAP), nullable=False),
        pa.field("CorrelationId", pa.string(), nullable=False),
    ]
)
"""Columns of ``otel_traces`` as the ClickHouse exporter writes them, plus ``CorrelationId``."""


class OtlpDecodeError(ValueError):
    """The body is not a decodable OTLP export request (answered with 400)."""


class UnsupportedMediaType(ValueError):
    """Neither protobuf nor JSON (answered with 415)."""


def media_type(content_type: str | None) -> str:
    """``application/x-protobuf`` or ``application/json`` for a Content-Type header."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media in (PROTOBUF, "application/protobuf"):
        return PROTOBUF
    if media == JSON:
        return JSON
    raise UnsupportedMediaType(f"unsupported Content-Type {media or '(none)'!r}: use {PROTOBUF} or {JSON}")


def _hex_ids_to_base64(node: Any) -> Any:
    """OTLP JSON carries IDs as hex; protobuf's JSON mapping expects base64 for bytes.

    Rewrites the decoded document in place, walking it with a stack rather than recursion: a
    body nested deeper than Python's recursion limit (in a field the receiver ignores, say) must
    not fail the request.
    """
    pending = [node]
    while pending:
        current = pending.pop()
        if isinstance(current, dict):
            for key, value in current.items():
                if key in _ID_KEYS and isinstance(value, str):
                    try:
                        current[key] = base64.b64encode(bytes.fromhex(value)).decode()
                    except ValueError:
                        raise OtlpDecodeError(f"{key}: {value[:40]!r} is not hex") from None
                elif isinstance(value, dict | list):
                    pending.append(value)
        elif isinstance(current, list):
            pending.extend(item for item in current if isinstance(item, dict | list))
    return node


def _decode(message: Message, body: bytes, media: str) -> None:
    if media == PROTOBUF:
        try:
            message.ParseFromString(body)
        except (DecodeError, RuntimeError) as exc:
            raise OtlpDecodeError(f"body is not a valid protobuf {type(message).__name__}: {exc}") from None
        return
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OtlpDecodeError(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise OtlpDecodeError(f"body must be a JSON object ({type(message).__name__})")
    try:
        json_format.ParseDict(_hex_ids_to_base64(data), message, ignore_unknown_fields=True)
    except (json_format.ParseError, binascii.Error, TypeError, ValueError) as exc:
        raise OtlpDecodeError(f"invalid OTLP JSON: {exc}") from None


def decode_traces(body: bytes, media: str) -> ExportTraceServiceRequest:
    """Decode an ``ExportTraceServiceRequest``.

    Raises:
        OtlpDecodeError: the body does not decode.
    """
    request = ExportTraceServiceRequest()
    _decode(request, body, media)
    return request


def decode_logs(body: bytes, media: str) -> ExportLogsServiceRequest:
    """Decode an ``ExportLogsServiceRequest``.

    Raises:
        OtlpDecodeError: the body does not decode.
    """
    request = ExportLogsServiceRequest()
    _decode(request, body, media)
    return request


def any_value_text(value: AnyValue) -> str:
    """An attribute value as text (arrays and maps as JSON)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind is None:
        return ""
    return (
        orjson.dumps(_plain(value)).decode()
        if kind in ("array_value", "kvlist_value")
        else str(_plain(value))
    )


def _plain(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if kind == "array_value":
        return [_plain(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    return value.string_value


def attributes(pairs: Iterable[KeyValue]) -> dict[str, str]:
    """OTLP key-values as a string map."""
    return {kv.key: any_value_text(kv.value) for kv in pairs}


def correlation_of(keys: Sequence[str], *maps: dict[str, str]) -> str:
    """The first configured correlation key found, looking through ``maps`` in order."""
    for attrs in maps:
        for key in keys:
            found = attrs.get(key)
            if found:
                return found
    return ""


class _Maps:
    """A column of string maps kept flat (keys, values, offsets) until it becomes Arrow."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.values: list[str] = []
        self.offsets: list[int] = [0]

    def add(self, keys: list[str], values: list[str]) -> None:
        self.keys += keys
        self.values += values
        self.offsets.append(len(self.keys))

    def to_arrow(self) -> pa.Array:
        return pa.MapArray.from_arrays(
            pa.array(self.offsets, pa.int32()),
            pa.array(self.keys, pa.string()),
            pa.array(self.values, pa.string()),
        )


def _flat(pairs: Iterable[KeyValue]) -> tuple[list[str], list[str]]:
    """OTLP key-values as parallel key and text lists (strings taken as they are)."""
    keys, values = [], []
    for kv in pairs:
        keys.append(kv.key)
        value = kv.value
        text = value.string_value  # "" for any other kind: only then ask which kind it is
        if not text and value.WhichOneof("value") != "string_value":
            text = any_value_text(value)
        values.append(text)
    return keys, values


_NOT_PER_SPAN = ("ServiceName", "ResourceAttributes", "ScopeName", "ScopeVersion", "SpanAttributes")
"""Columns not kept as one list per span: spread from their resource or scope, or a flat map."""
_NESTED = ("Events.Timestamp", "Events.Name", "Events.Attributes", "Links.TraceId", "Links.SpanId",
           "Links.TraceState", "Links.Attributes")  # fmt: skip


@dataclass
class SpanBatch:
    """Decoded spans as ``otel_traces`` columns, with what was rejected and why.

    Scalars go to one list per column, span attribute maps to flat key and value lists with
    offsets. What a resource or a scope gives its spans (service, resource attributes, scope
    name and version) is kept once per resource or scope, with each span's index into them,
    and spread to the spans by Arrow: per span only a few list appends, so a batch of
    thousands costs little Python and leaves little for the collector.
    """

    correlation_keys: Sequence[str]
    columns: dict[str, list[Any]] = field(
        default_factory=lambda: {name: [] for name in SPAN_SCHEMA.names if name not in _NOT_PER_SPAN}
    )
    span_attributes: _Maps = field(default_factory=_Maps)
    resources: _Maps = field(default_factory=_Maps)
    services: list[str] = field(default_factory=list)
    scopes: tuple[list[str], list[str]] = field(default_factory=lambda: ([], []))
    resource_of: list[int] = field(default_factory=list)
    scope_of: list[int] = field(default_factory=list)
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.columns["SpanId"])

    def add_request(self, request: ExportTraceServiceRequest) -> None:
        cols = self.columns
        timestamps, trace_ids, span_ids = cols["Timestamp"], cols["TraceId"], cols["SpanId"]
        parents, states, names, kinds = (
            cols["ParentSpanId"],
            cols["TraceState"],
            cols["SpanName"],
            cols["SpanKind"],
        )
        durations, codes, messages = cols["Duration"], cols["StatusCode"], cols["StatusMessage"]
        correlations = cols["CorrelationId"]
        nested = [cols[name] for name in _NESTED]
        span_maps, resource_of, scope_of = self.span_attributes, self.resource_of, self.scope_of
        scope_names, scope_versions = self.scopes
        keys = self.correlation_keys
        wanted = frozenset(keys)
        for resource_spans in request.resource_spans:
            resource_keys, resource_values = _flat(resource_spans.resource.attributes)
            resource = dict(zip(resource_keys, resource_values, strict=True))
            resource_correlation = correlation_of(keys, resource)
            resource_index = len(self.services)
            self.services.append(resource.get("service.name", ""))
            self.resources.add(resource_keys, resource_values)
            for scope_spans in resource_spans.scope_spans:
                scope = scope_spans.scope
                scope_index = len(scope_names)
                scope_names.append(scope.name)
                scope_versions.append(scope.version)
                for span in scope_spans.spans:
                    problem = _span_problem(span)
                    if problem:
                        self.rejected += 1
                        if len(self.errors) < 10:
                            self.errors.append(problem)
                        continue
                    span_keys, span_values = _flat(span.attributes)
                    start, end = span.start_time_unix_nano, span.end_time_unix_nano
                    timestamps.append(start)
                    trace_ids.append(span.trace_id.hex())
                    span_ids.append(span.span_id.hex())
                    parents.append(span.parent_span_id.hex())
                    states.append(span.trace_state)
                    names.append(span.name)
                    kinds.append(_KINDS[span.kind] if 0 <= span.kind < len(_KINDS) else "Unspecified")
                    resource_of.append(resource_index)
                    scope_of.append(scope_index)
                    span_maps.add(span_keys, span_values)
                    durations.append(max(end - start, 0))
                    code = span.status.code
                    codes.append(_STATUS[code] if 0 <= code < len(_STATUS) else "Unset")
                    messages.append(span.status.message)
                    if span.events or span.links:
                        self._nested(span, nested)
                    else:
                        for column in nested:
                            column.append(())
                    found = resource_correlation
                    if wanted.intersection(span_keys):
                        found = correlation_of(keys, dict(zip(span_keys, span_values, strict=True))) or found
                    correlations.append(found)

    @staticmethod
    def _nested(span: Any, columns: list[list[Any]]) -> None:
        events, links = span.events, span.links
        values = (
            [e.time_unix_nano for e in events],
            [e.name for e in events],
            [list(attributes(e.attributes).items()) for e in events],
            [link.trace_id.hex() for link in links],
            [link.span_id.hex() for link in links],
            [link.trace_state for link in links],
            [list(attributes(link.attributes).items()) for link in links],
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)

    def to_arrow(self) -> pa.Table:
        resource_of = pa.array(self.resource_of, pa.int32())
        scope_of = pa.array(self.scope_of, pa.int32())
        spread = {
            "ServiceName": pa.array(self.services, pa.string()).take(resource_of),
            "ResourceAttributes": self.resources.to_arrow().take(resource_of),
            "ScopeName": pa.array(self.scopes[0], pa.string()).take(scope_of),
            "ScopeVersion": pa.array(self.scopes[1], pa.string()).take(scope_of),
            "SpanAttributes": self.span_attributes.to_arrow(),
        }
        arrays = [
            spread[f.name] if f.name in spread else pa.array(self.columns[f.name], type=f.type)
            for f in SPAN_SCHEMA
        ]
        return pa.Table.from_arrays(arrays, schema=SPAN_SCHEMA)

    def message(self) -> str:
        if not self.rejected:
            return ""
        return f"{self.rejected} span(s) rejected: " + "; ".join(self.errors)


def _span_problem(span: Any) -> str:
    if len(span.trace_id) != 16 or span.trace_id == _ZERO_TRACE:
        return f"span {span.name[:64]!r}: trace_id must be 16 bytes and not all zero"
    if len(span.span_id) != 8 or span.span_id == _ZERO_SPAN:
        return f"span {span.name[:64]!r}: span_id must be 8 bytes and not all zero"
    if span.parent_span_id and len(span.parent_span_id) != 8:
        return f"span {span.name[:64]!r}: parent_span_id must be 8 bytes"
    if span.end_time_unix_nano and span.end_time_unix_nano < span.start_time_unix_nano:
        return f"span {span.name[:64]!r}: ends before it starts"
    if not span.start_time_unix_nano:
        return f"span {span.name[:64]!r}: start_time_unix_nano is required"
    if span.start_time_unix_nano > _LAST_NANO:
        return f"span {span.name[:64]!r}: start_time_unix_nano is after 2262-04-11, past what can be stored"
    if span.end_time_unix_nano > _LAST_NANO:
        return f"span {span.name[:64]!r}: end_time_unix_nano is after 2262-04-11, past what can be stored"
    for event in span.events:
        if event.time_unix_nano > _LAST_NANO:
            return (
                f"span {span.name[:64]!r}: event {event.name[:64]!r} time_unix_nano is after 2262-04-11, "
                "past what can be stored"
            )
    return ""


def span_keys(spans: pa.Table) -> pa.ChunkedArray:
    """``trace_id + span_id`` of each span: its identity."""
    if not spans.num_rows:
        return pa.chunked_array([], pa.string())
    return pc.binary_join_element_wise(spans.column("TraceId"), spans.column("SpanId"), "")
