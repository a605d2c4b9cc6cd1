"""The wire scanner reads an OTLP protobuf export request into the same ``otel_traces`` columns as
the protobuf library's path, or declines it; it never accepts what the library refuses."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, StatusCode

from flowsight.collector.otlp import PROTOBUF, SpanBatch, decode_traces
from flowsight.collector.otlp_wire import span_table
from tests.test_fuzz_otlp import FUZZ, T0_NS, damaged_protobuf, trace_requests

KEYS = ("correlation_id", "order.id")
TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")


def library_table(body: bytes) -> pa.Table:
    batch = SpanBatch(KEYS)
    batch.add_request(decode_traces(body, PROTOBUF))
    return batch.to_arrow()


def assert_same_as_library(body: bytes) -> pa.Table | None:
    """The scanner's table equals the library's, or the scanner declined; returns the former."""
    table = span_table(body, KEYS)
    if table is not None:
        expected = library_table(body)
        assert table.schema == expected.schema
        for name in expected.column_names:
            assert table.column(name).to_pylist() == expected.column(name).to_pylist(), name
    return table


def kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def text(value: str) -> AnyValue:
    return AnyValue(string_value=value)


def span(n: int = 1, **fields: object) -> Span:
    defaults: dict[str, object] = {
        "trace_id": TRACE,
        "span_id": n.to_bytes(8, "big"),
        "name": "post order",
        "start_time_unix_nano": T0_NS,
        "end_time_unix_nano": T0_NS + 5_000_000,
    }
    return Span(**(defaults | fields))  # type: ignore[arg-type]


def request(*spans: Span, resource: list[KeyValue] | None = None) -> bytes:
    message = ExportTraceServiceRequest()
    rs = message.resource_spans.add()
    rs.resource.attributes.extend(resource if resource is not None else [kv("service.name", text("erp"))])
    rs.scope_spans.add().spans.extend(spans)
    return message.SerializeToString()


# -- requests the scanner reads ----------------------------------------------------------------------

plain_values = st.one_of(
    st.text(max_size=16).map(text),
    st.booleans().map(lambda b: AnyValue(bool_value=b)),
    st.integers(-(2**63), 2**63 - 1).map(lambda i: AnyValue(int_value=i)),
    st.floats().map(lambda f: AnyValue(double_value=f)),
    st.just(AnyValue()),
)


@st.composite
def plain_spans(draw: st.DrawFn) -> Span:
    """A span the receiver accepts, with every kind of value the scanner reads."""
    start = draw(st.integers(1, 2**63 - 1))
    attributes = draw(st.lists(st.tuples(st.text(max_size=10), plain_values), max_size=5))
    if draw(st.booleans()):
        attributes.append((draw(st.sampled_from(KEYS)), text(draw(st.text(max_size=12)))))
    result = Span(
        trace_id=draw(st.binary(min_size=16, max_size=16).filter(any)),
        span_id=draw(st.binary(min_size=8, max_size=8).filter(any)),
        parent_span_id=draw(st.one_of(st.just(b""), st.binary(min_size=8, max_size=8))),
        trace_state=draw(st.text(max_size=8)),
        name=draw(st.text(max_size=20)),
        kind=draw(st.integers(-3, 9)),  # type: ignore[arg-type]  # outside 0-5: unspecified
        start_time_unix_nano=start,
        end_time_unix_nano=draw(st.one_of(st.just(0), st.integers(start, 2**63 - 1))),
        attributes=[kv(k, v) for k, v in attributes],
        status=Status(code=draw(st.integers(-1, 4)), message=draw(st.text(max_size=8))),  # type: ignore[arg-type]
    )
    for _ in range(draw(st.integers(0, 2))):
        event = result.events.add(
            time_unix_nano=draw(st.integers(0, 2**63 - 1)), name=draw(st.text(max_size=8))
        )
        keys = draw(st.lists(st.text(max_size=6), unique=True, max_size=3))
        event.attributes.extend(kv(k, draw(plain_values)) for k in keys)
    return result


@st.composite
def plain_requests(draw: st.DrawFn) -> bytes:
    message = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 3))):
        rs = message.resource_spans.add()
        if draw(st.booleans()):
            pairs = draw(
                st.lists(st.tuples(st.sampled_from(["host", *KEYS]), st.text(max_size=8)), max_size=3)
            )
            service = draw(st.one_of(st.none(), st.text(max_size=8)))
            attributes = [kv(k, text(v)) for k, v in pairs]
            if service is not None:
                attributes.insert(draw(st.integers(0, len(attributes))), kv("service.name", text(service)))
            rs.resource.attributes.extend(attributes)
        for _ in range(draw(st.integers(0, 2))):
            ss = rs.scope_spans.add()
            if draw(st.booleans()):
                ss.scope.name, ss.scope.version = draw(st.text(max_size=8)), draw(st.text(max_size=4))
            ss.spans.extend(draw(st.lists(plain_spans(), max_size=4)))
    return message.SerializeToString()


@settings(FUZZ, max_examples=300)
@given(body=plain_requests())
def test_a_request_of_accepted_spans_and_plain_values_is_read_as_the_protobuf_library_reads_it(
    body: bytes,
) -> None:
    assert assert_same_as_library(body) is not None


def test_a_request_the_opentelemetry_sdk_exports_is_read_as_the_protobuf_library_reads_it() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout", "order.id": "R-1"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop", "2.1")
    with tracer.start_as_current_span("place order", kind=SpanKind.SERVER) as parent:
        parent.set_attributes({"order.id": "ORD-7", "items": 3, "amount": 19.99, "gift": True})
        parent.add_event("payment authorised", {"psp": "adyen", "attempt": 2})
        with tracer.start_as_current_span("reserve stock") as child:
            child.set_status(StatusCode.ERROR, "no stock")
    body = encode_spans(exporter.get_finished_spans()).SerializeToString()
    table = assert_same_as_library(body)
    assert table is not None
    rows = {row["SpanName"]: row for row in table.to_pylist()}
    assert rows["place order"]["CorrelationId"] == "ORD-7"
    assert rows["reserve stock"]["CorrelationId"] == "R-1"  # from the resource
    assert dict(rows["place order"]["SpanAttributes"]) == {
        "order.id": "ORD-7",
        "items": "3",
        "amount": "19.99",
        "gift": "true",
    }
    assert rows["place order"]["Events.Attributes"] == [[("psp", "adyen"), ("attempt", "2")]]
    assert rows["reserve stock"]["StatusCode"] == "Error"
    assert rows["reserve stock"]["StatusMessage"] == "no stock"
    assert rows["reserve stock"]["ParentSpanId"] == rows["place order"]["SpanId"]
    assert rows["place order"]["SpanKind"] == "Server"
    assert {row["ServiceName"] for row in rows.values()} == {"checkout"}
    assert {row["ScopeName"] for row in rows.values()} == {"shop"}

    with tracer.start_as_current_span("linked", links=[Link(parent.get_span_context())]):
        pass
    linked = encode_spans(exporter.get_finished_spans()[-1:]).SerializeToString()
    assert span_table(linked, KEYS) is None  # links: the library's path


def test_numbers_become_the_text_the_protobuf_path_writes() -> None:
    values = {
        "int": AnyValue(int_value=-(2**63)),
        "big": AnyValue(int_value=2**63 - 1),
        "double": AnyValue(double_value=1e21),
        "nan": AnyValue(double_value=math.nan),
        "small": AnyValue(double_value=0.1),
        "yes": AnyValue(bool_value=True),
        "no": AnyValue(bool_value=False),
        "none": AnyValue(),
        "empty": text(""),
    }
    table = assert_same_as_library(request(span(attributes=[kv(k, v) for k, v in values.items()])))
    assert table is not None
    assert dict(table.column("SpanAttributes")[0].as_py()) == {
        "int": str(-(2**63)),
        "big": str(2**63 - 1),
        "double": "1e+21",
        "nan": "nan",
        "small": "0.1",
        "yes": "true",
        "no": "false",
        "none": "",
        "empty": "",
    }


def test_the_span_correlation_is_the_first_key_with_a_value_in_the_span_then_in_its_resource() -> None:
    body = request(
        span(1, attributes=[kv("order.id", text("ORD-1")), kv("correlation_id", text(""))]),
        span(2, attributes=[kv("order.id", text("ORD-2")), kv("correlation_id", text("C-2"))]),
        span(3, attributes=[kv("order.id", text("old")), kv("order.id", text("ORD-3"))]),
        span(4),
        resource=[kv("service.name", text("erp")), kv("order.id", text("ORD-R"))],
    )
    table = assert_same_as_library(body)
    assert table is not None
    assert table.column("CorrelationId").to_pylist() == ["ORD-1", "C-2", "ORD-3", "ORD-R"]


# -- requests the scanner leaves to the protobuf library ------------------------------------------


DECLINED = {
    "a span the receiver rejects": lambda: request(span(trace_id=bytes(16))),
    "a span that ends before it starts": lambda: request(span(end_time_unix_nano=T0_NS - 1)),
    "a link": lambda: request(span(links=[Span.Link(trace_id=TRACE, span_id=b"\x01" * 8)])),
    "an array value": lambda: request(
        span(attributes=[kv("tags", AnyValue(array_value=ArrayValue(values=[text("a")])))])
    ),
    "a map value": lambda: request(
        span(attributes=[kv("m", AnyValue(kvlist_value=KeyValueList(values=[kv("a", text("b"))])))])
    ),
    "a bytes value": lambda: request(span(attributes=[kv("raw", AnyValue(bytes_value=b"\x00\x01"))])),
    "a correlation value that is not text": lambda: request(
        span(attributes=[kv("order.id", AnyValue(int_value=7))])
    ),
    "a service.name that is not text": lambda: request(
        span(), resource=[kv("service.name", AnyValue(int_value=7))]
    ),
    "an event with a key given twice": lambda: request(
        span(events=[Span.Event(time_unix_nano=T0_NS, attributes=[kv("a", text("1")), kv("a", text("2"))])])
    ),
    "a status given twice (the library merges them)": lambda: _status_twice(),
}


def _status_twice() -> bytes:
    one = span(status=Status(code=2, message="down")).SerializeToString()  # type: ignore[arg-type]
    status = Status(message="again").SerializeToString()
    with_two = one + b"\x7a" + bytes([len(status)]) + status  # field 15, length-delimited
    scope_spans = b"\x12" + bytes([len(with_two)]) + with_two
    resource_spans = b"\x12" + bytes([len(scope_spans)]) + scope_spans
    return b"\x0a" + bytes([len(resource_spans)]) + resource_spans


@pytest.mark.parametrize("case", sorted(DECLINED))
def test_what_the_scanner_is_not_sure_of_goes_to_the_protobuf_library(case: str) -> None:
    body = DECLINED[case]()
    library_table(body)  # the library reads it
    assert span_table(body, KEYS) is None


def test_a_string_that_is_not_utf8_is_declined_and_the_library_refuses_it() -> None:
    body = bytearray(request(span(name="ab")))
    at = body.index(b"ab")
    body[at] = 0xFF
    with pytest.raises(DecodeError):
        ExportTraceServiceRequest.FromString(bytes(body))
    assert span_table(bytes(body), KEYS) is None


@settings(FUZZ, max_examples=400)
@given(
    body=st.one_of(
        damaged_protobuf(KEYS), trace_requests(KEYS).map(lambda r: r.message().SerializeToString())
    )
)
def test_damaged_or_unusual_bodies_are_declined_or_read_as_the_library_reads_them(body: bytes) -> None:
    try:
        ExportTraceServiceRequest.FromString(body)
    except DecodeError:
        assert span_table(body, KEYS) is None  # never accept what the library refuses
        return
    assert_same_as_library(body)
