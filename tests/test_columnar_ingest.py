"""The columnar ingest path accepts exactly what the row path accepts, with the same values and
the same per-event errors; through the API, large NDJSON bodies take it."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowsight.app import build_services, create_app
from flowsight.clock import FixedClock
from flowsight.collector.columnar import TooMany, validate_ndjson
from flowsight.collector.events import EventBatch
from flowsight.collector.ingest import COLUMNAR_MIN_BYTES, decode_events
from flowsight.settings import Settings
from flowsight.store import Store
from flowsight.workflows import DEFAULT_WORKFLOWS
from tests.conftest import event

NOW_MS = 1_795_600_000_000


def filler(n: int) -> list[dict[str, Any]]:
    """Valid events of every optional shape, around the case under test."""
    out = []
    for i in range(n):
        extra: dict[str, Any] = {}
        if i % 3 == 0:
            extra["attributes"] = {"region": "de", "tier": "gold"} if i % 2 else {"carrier": "dhl"}
        if i % 4 == 1:
            extra["channel"] = "web"
        if i % 5 == 2:
            extra |= {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"}
        out.append(event(f"fill-{i}", **extra))
    return out


def ndjson(lines: list[Any]) -> bytes:
    return b"\n".join(line if isinstance(line, bytes) else orjson.dumps(line) for line in lines) + b"\n"


def row_path(body: bytes) -> EventBatch:
    batch = EventBatch(DEFAULT_WORKFLOWS, "api", NOW_MS)
    for index, item in enumerate(decode_events(body, "application/x-ndjson")):
        if hasattr(item, "error"):
            batch.reject(index, "", item.data, f"line {index + 1}: not valid JSON: {item.error}")
        else:
            batch.add(index, item)
    return batch


def rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows with each map's entries sorted: a JSON object's keys have no order."""
    return [{**r, "attributes": sorted(r["attributes"])} for r in table.to_pylist()]


def assert_same_as_row_path(body: bytes) -> Any:
    columnar = validate_ndjson(body, DEFAULT_WORKFLOWS, "api", NOW_MS, 100_000)
    expected = row_path(body)
    if columnar is None:  # Arrow could not read it: the row path takes the whole body
        return None
    assert columnar.table.schema == expected.to_arrow().schema
    assert rows(columnar.table) == rows(expected.to_arrow())
    assert columnar.errors == expected.errors
    assert columnar.rejected_payloads == expected.rejected_payloads
    return columnar


def with_case(case: Any, position: int = 7) -> bytes:
    lines: list[Any] = list(filler(12))
    lines.insert(position, case)
    return ndjson(lines)


def changed(**fields: Any) -> dict[str, Any]:
    e = event("case")
    for key, value in fields.items():
        if value is ...:
            e.pop(key)
        else:
            e[key] = value
    return e


CASES = {
    "a valid event": changed(),
    "an explicit null status is an error, as in the row path": changed(status=None),
    "an explicit null channel means no channel": changed(channel=None),
    "a status of ok": changed(status="ok"),
    "a failed status": changed(status="failed"),
    "a missing event_id": changed(event_id=...),
    "an empty event_id": changed(event_id=""),
    "an event_id of 129 characters": changed(event_id="x" * 129),
    "an event_id of 128 non-ASCII characters": changed(event_id="é" * 128),
    "an unknown workflow": changed(workflow="unknown_flow"),
    "a stage of another workflow": changed(stage="refund_issued"),
    "an upper-case system": changed(system="ERP"),
    "microseconds and an offset": changed(occurred_at="2026-11-26T10:00:00.123456+01:00"),
    "nanoseconds": changed(occurred_at="2026-11-26T10:00:00.123456789Z"),
    "a compact offset": changed(occurred_at="2026-11-26T10:00:00+0100"),
    "a space for T": changed(occurred_at="2026-11-26 10:00:00Z"),
    "a lower-case t and z": changed(occurred_at="2026-11-26t10:00:00z"),
    "no offset": changed(occurred_at="2026-11-26T10:00:00"),
    "30 February": changed(occurred_at="2026-02-30T10:00:00Z"),
    "year 1": changed(occurred_at="0001-01-01T00:00:00Z"),
    "a leap second": changed(occurred_at="2026-12-31T23:59:60Z"),
    "a date alone": changed(occurred_at="2026-11-26"),
    "an upper-case trace id": changed(
        trace_id="4BF92F3577B34DA6A3CE929D0E0E4736", span_id="00F067AA0BA902B7"
    ),
    "an empty trace id": changed(trace_id=""),
    "a short span id": changed(span_id="00f067aa0ba902"),
    "a numeric attribute": changed(attributes={"a": 1}),
    "a null attribute": changed(attributes={"a": None}),
    "a nested attribute": changed(attributes={"a": {"b": "c"}}),
    "an attribute that looks like a time": changed(attributes={"promised": "2026-11-26T10:00:00"}),
    "an empty attributes object": changed(attributes={}),
    "65 attributes": changed(attributes={f"k{i}": "v" for i in range(65)}),
    "64 attributes": changed(attributes={f"k{i}": "v" for i in range(64)}),
    "an attribute key of 129 characters": changed(attributes={"k" * 129: "v"}),
    "an attribute value of 4097 characters": changed(attributes={"k": "v" * 4097}),
    "a channel of 65 characters": changed(channel="c" * 65),
    "a misspelt field": changed(chanel="web"),
    "an unknown field set to null": changed(note=None),
    "a value containing the word null": changed(correlation_id="SO-annulled"),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_columnar_and_row_paths_agree_on_each_rule(case: dict[str, Any]) -> None:
    assert assert_same_as_row_path(with_case(case)) is not None


def raw(fields: str) -> bytes:
    """A line written by hand, around the required fields of a valid event."""
    return (
        '{"event_id":"evt-raw","correlation_id":"SO-raw","workflow":"order_to_cash",'
        '"stage":"order_created","system":"oms"' + fields + "}"
    ).encode()


RAW_CASES = {
    "spaces and tabs around every token": b' { "event_id" :\t"evt-raw" , "correlation_id":"SO-raw",'
    b'"workflow":"order_to_cash","stage":"order_created","system":"oms","occurred_at":"2026-11-26T09:00:00Z" } ',
    "fields in another order": b'{"occurred_at":"2026-11-26T09:00:00Z","system":"oms","stage":"order_created",'
    b'"workflow":"order_to_cash","correlation_id":"SO-raw","event_id":"evt-raw"}',
    "a field given twice": raw(',"occurred_at":"2026-11-26T09:00:00Z","system":"wms"'),
    "an attribute key given twice": raw(
        ',"occurred_at":"2026-11-26T09:00:00Z","attributes":{"a":"1","a":"2"}'
    ),
    "an escaped quote": raw(',"occurred_at":"2026-11-26T09:00:00Z","channel":"w\\"eb"'),
    "an escaped letter": raw(',"occurred_at":"2026-11-26T09:00:00Z","channel":"\\u0077eb"'),
    "a raw tab inside a string": raw(',"occurred_at":"2026-11-26T09:00:00Z","channel":"w\teb"'),
    "bytes that are not UTF-8": raw(',"occurred_at":"2026-11-26T09:00:00Z","channel":"w\xffeb"'),
    "a byte-order mark": b"\xef\xbb\xbf" + raw(',"occurred_at":"2026-11-26T09:00:00Z"'),
    "something after the object": raw(',"occurred_at":"2026-11-26T09:00:00Z"') + b" x",
    "a trailing comma": raw(',"occurred_at":"2026-11-26T09:00:00Z",'),
    "a number for a text field": raw(',"occurred_at":"2026-11-26T09:00:00Z","channel":7'),
    "an empty attribute key": raw(',"occurred_at":"2026-11-26T09:00:00Z","attributes":{"":"v"}'),
    "attributes that are not an object": raw(',"occurred_at":"2026-11-26T09:00:00Z","attributes":["a"]'),
    "non-ASCII in every text": raw(
        ',"occurred_at":"2026-11-26T09:00:00Z","channel":"caf\xc3\xa9",'
        '"attributes":{"st\xc3\xa4dt":"k\xc3\xb6ln"}'
    ),
    "year 1899": raw(',"occurred_at":"1899-12-31T23:59:59Z"'),
    "year 1900": raw(',"occurred_at":"1900-01-01T00:00:00Z"'),
    "year 3000": raw(',"occurred_at":"3000-01-01T00:00:00Z"'),
    "29 February of a leap year": raw(',"occurred_at":"2024-02-29T00:00:00Z"'),
    "29 February of another year": raw(',"occurred_at":"2100-02-29T00:00:00Z"'),
    "31 April": raw(',"occurred_at":"2026-04-31T00:00:00Z"'),
    "an offset of 24 hours": raw(',"occurred_at":"2026-11-26T09:00:00+24:00"'),
    "a negative offset with minutes": raw(',"occurred_at":"2026-11-26T09:00:00.9999-03:30"'),
    "ten fraction digits": raw(',"occurred_at":"2026-11-26T09:00:00.1234567891Z"'),
    "a fraction without digits": raw(',"occurred_at":"2026-11-26T09:00:00.Z"'),
    "a time before 1970 with a fraction": raw(',"occurred_at":"1969-12-31T23:59:59.999Z"'),
    "a mixed-case span id": raw(',"occurred_at":"2026-11-26T09:00:00Z","span_id":"00F067aa0BA902b7"'),
    "a span id that is not hex": raw(',"occurred_at":"2026-11-26T09:00:00Z","span_id":"00f067aa0ba902bg"'),
    "a system with a dot and a dash": raw(',"occurred_at":"2026-11-26T09:00:00Z"').replace(
        b'"oms"', b'"erp.eu-1"'
    ),
    "a system of 65 characters": raw(',"occurred_at":"2026-11-26T09:00:00Z"').replace(
        b'"oms"', b'"' + b"s" * 65 + b'"'
    ),
}


@pytest.mark.parametrize("line", list(RAW_CASES.values()), ids=list(RAW_CASES))
def test_columnar_and_row_paths_agree_on_lines_written_by_hand(line: bytes) -> None:
    assert assert_same_as_row_path(with_case(line)) is not None


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(ndjson([*filler(5), b'{"event_id": 42}', *filler(5)]), id="a field of another type"),
        pytest.param(ndjson([*filler(5), b"not json", *filler(5)]), id="a line that is not JSON"),
        pytest.param(
            ndjson([*filler(5), orjson.dumps(event("a")) + b" " + orjson.dumps(event("b"))]),
            id="two objects on one line",
        ),
        pytest.param(ndjson([*filler(5), b"[1, 2]"]), id="a line that is an array"),
    ],
)
def test_a_line_the_scanner_cannot_read_is_checked_alone_by_the_row_path(body: bytes) -> None:
    batch = assert_same_as_row_path(body)
    assert batch is not None and batch.rows_checked_one_by_one == 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"not json\n{]\n", id="no line is JSON"),
        pytest.param(
            ndjson([changed(event_id="caf\u00e9 \\ bar"), b'{"event_id": 42}']), id="escapes and numbers"
        ),
    ],
)
def test_a_body_the_scanner_can_read_no_line_of_goes_to_the_row_path_whole(body: bytes) -> None:
    assert validate_ndjson(body, DEFAULT_WORKFLOWS, "api", NOW_MS, 100_000) is None


def test_blank_lines_and_crlf_are_read_like_the_row_path() -> None:
    lines = [orjson.dumps(e) for e in filler(6)]
    body = b"\r\n".join(lines[:3]) + b"\r\n\r\n  \n" + b"\n".join(lines[3:])
    batch = assert_same_as_row_path(body)
    assert batch is not None and len(batch) == 6


def test_rows_checked_one_by_one_keep_their_place_in_the_request() -> None:
    body = ndjson([event("a"), changed(status="bogus"), event("b", channel=None), event("c")])
    batch = assert_same_as_row_path(body)
    assert batch.table.column("event_id").to_pylist() == ["evt-a", "evt-b", "evt-c"]
    assert [(i, error.split(":")[0]) for i, _, error in batch.errors] == [(1, "status")]
    assert batch.rows_checked_one_by_one == 2


def test_more_events_than_allowed_is_refused_with_their_exact_count() -> None:
    with pytest.raises(TooMany) as refused:
        validate_ndjson(ndjson(filler(11)), DEFAULT_WORKFLOWS, "api", NOW_MS, 10)
    assert refused.value.count == 11
    lines = b"\n\n".join([b"{}", b"not json", *map(orjson.dumps, filler(2))] * 1000)
    with pytest.raises(TooMany) as refused:  # counted, not read: no row is held for them
        validate_ndjson(lines, DEFAULT_WORKFLOWS, "api", NOW_MS, 10)
    assert refused.value.count == 4000


texts = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["", "x" * 129, "ok", "failed", "oms", "ERP", "web", "null"]),
)
values = st.one_of(st.none(), st.integers(-3, 3), st.booleans(), texts, st.lists(texts, max_size=2))
recent = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1))
timestamps = st.one_of(
    *[recent.map(lambda d: d.isoformat(timespec="milliseconds") + "Z")] * 6,
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(["2026-11-26 10:00:00.5+0100", "2026-02-29T00:00:00Z", "2026-11-26t10:00:00z"]),
    texts,
)
hex_ids = st.sampled_from(["4BF92F3577B34DA6A3CE929D0E0E4736", "00f067aa0ba902b7", ""])


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """Events near the contract: valid ones of every optional shape, and some with one field
    absent, null, of another type or out of bounds."""
    e = event(draw(st.integers(0, 30)))
    e["stage"] = draw(
        st.sampled_from(["order_created", "payment_authorized", "cancelled"] * 3 + ["refund_issued"])
    )
    e["occurred_at"] = draw(timestamps)
    if draw(st.booleans()):
        e["attributes"] = draw(
            st.dictionaries(
                st.sampled_from(["region", "tier", "", "k" * 129]), st.text(max_size=4), max_size=3
            )
        )
    if draw(st.booleans()):
        e["status"] = draw(st.sampled_from(["ok", "failed", "ok", "done"]))
    if draw(st.booleans()):
        e["channel"] = draw(st.sampled_from(["web", "", "app", "c" * 65]))
    if draw(st.booleans()):
        e["trace_id"], e["span_id"] = draw(hex_ids), draw(hex_ids)
    if draw(st.integers(0, 7)) == 0:  # one field wrong in kind: most of these make Arrow give up
        name = draw(st.sampled_from(["event_id", "system", "workflow", "status", "attributes", "extra"]))
        if draw(st.booleans()) and name in e:
            e.pop(name)
        else:
            e[name] = draw(values) if name != "attributes" else draw(st.one_of(values, st.just({"a": None})))
    return e


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events(), min_size=1, max_size=25))
def test_generated_events_get_the_same_verdicts_and_values_on_both_paths(batch: list[dict[str, Any]]) -> None:
    assert_same_as_row_path(ndjson(batch))


def test_a_large_ndjson_request_is_validated_as_columns_and_stored_once(
    client: TestClient, services: Any
) -> None:
    good = filler(400)
    body = ndjson([*good[:200], changed(stage="teleported"), *good[200:], good[0]])
    assert len(body) >= COLUMNAR_MIN_BYTES
    response = client.post("/v1/events", content=body, headers={"content-type": "application/x-ndjson"})
    assert response.status_code == 200
    result = response.json()
    assert (result["accepted"], result["duplicates"], result["rejected"]) == (400, 1, 1)
    assert result["errors"][0]["index"] == 200
    assert "stage: 'teleported' is not a stage of workflow 'order_to_cash'" in result["errors"][0]["error"]
    again = client.post("/v1/events", content=body, headers={"content-type": "application/x-ndjson"}).json()
    assert (again["accepted"], again["duplicates"], again["rejected"]) == (0, 401, 1)
    table = services.schema.table("events")
    assert services.writer.wait_idle()
    [(count, distinct)] = services.store.rows(f"SELECT count(), uniqExact(event_id) FROM {table}")
    assert count == distinct == 400
    [(letters,)] = services.store.rows(f"SELECT count() FROM {services.schema.table('dead_letters')}")
    assert letters == 2


def test_large_bodies_are_validated_on_the_services_own_threads_as_many_as_configured(
    settings: Settings, engine: Store, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = build_services(
        settings.model_copy(update={"validation_threads": 2}), store=engine, clock=clock
    )
    threads: set[str] = set()
    validate = services.ingestor.validate_columns

    def recording(*args: Any) -> Any:
        threads.add(threading.current_thread().name)
        time.sleep(0.05)  # long enough for the requests to overlap
        return validate(*args)

    monkeypatch.setattr(services.ingestor, "validate_columns", recording)
    bodies = [ndjson([{**e, "event_id": f"r{n}-{e['event_id']}"} for e in filler(100)]) for n in range(6)]
    assert min(map(len, bodies)) >= COLUMNAR_MIN_BYTES
    with TestClient(create_app(services)) as client, ThreadPoolExecutor(6) as senders:
        answers = list(
            senders.map(
                lambda body: client.post(
                    "/v1/events", content=body, headers={"content-type": "application/x-ndjson"}
                ).json(),
                bodies,
            )
        )
    assert [a["accepted"] for a in answers] == [100] * 6
    assert threads and all(name.startswith("flowsight-validate") for name in threads)
    assert len(threads) <= 2
