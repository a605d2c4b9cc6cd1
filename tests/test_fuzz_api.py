"""Fuzzing the HTTP API on the real engine.

- Every operation of the app's own OpenAPI schema, with schemathesis: no answer is a server error,
  and answers conform to the schema where it declares them.
- ``at`` (evaluate as of) at any instant, and listing offsets past what the queries hold: answered,
  or refused naming the parameter.
- ``POST /v1/events`` with hypothesis-made lifecycle events (JSON arrays and NDJSON, some gzip,
  and NDJSON bodies large enough to take the columnar path): no server error, every rejected
  event has an error naming a field, every accepted event is stored exactly once, and every
  rejected one is kept as a dead letter.
"""

from __future__ import annotations

import gzip
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
)

from flowsight.alerts.silences import SilenceSpec
from flowsight.app import Services, build_services, create_app
from flowsight.clock import FixedClock
from flowsight.collector.columnar import validate_ndjson
from flowsight.collector.events import EVENT_SCHEMA, FIELDS
from flowsight.collector.ingest import COLUMNAR_MIN_BYTES
from flowsight.demo.api import router as demo_router
from flowsight.demo.runner import Demo, DemoOptions
from flowsight.settings import Settings
from flowsight.store import Store
from flowsight.workflows import DEFAULT_WORKFLOWS
from tests.conftest import T0, event, stored_once

FUZZ = settings(derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
"""Deterministic runs: the same examples every time, nothing remembered between runs."""

# -- the OpenAPI schema, with schemathesis -----------------------------------------------------

OPERATIONS = (
    "POST /v1/events",
    "POST /v1/traces",
    "POST /v1/logs",
    "POST /v1/metrics",
    "GET /api/orders/{correlation_id}/timeline",
    "GET /api/orders",
    "GET /api/dead-letters",
    "POST /api/dead-letters/replay",
    "GET /api/slos",
    "GET /api/slos/{name}",
    "POST /api/evaluate",
    "GET /api/flow/health",
    "GET /api/alerts",
    "GET /api/silences",
    "POST /api/silences",
    "GET /api/silences/{silence_id}",
    "DELETE /api/silences/{silence_id}",
    "GET /api/demo",
    "POST /api/demo/scenarios/{name}",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
)
NOT_FUZZED = {
    # Server-Sent Events: the stream ends only when the client goes away, so no request returns.
    "GET /api/feed",
}
CONSTRAINED = {
    # Operations with query parameters or a body, whose values the schema can forbid. The others
    # take nothing, or one path segment of any text: there is no request the schema forbids.
    "GET /api/orders",
    "GET /api/dead-letters",
    "POST /api/dead-letters/replay",
    "GET /api/slos",
    "GET /api/slos/{name}",
    "POST /api/evaluate",
    "GET /api/flow/health",
    "GET /api/alerts",
    "POST /api/silences",
}
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
API_EXAMPLES = 12


@pytest.fixture
def demo(services: Services) -> Iterator[Demo]:
    """A demo whose controls the API exposes; it never steps, so it sends nothing anywhere."""
    clock = services.clock
    assert isinstance(clock, FixedClock)
    current = Demo(
        services, "http://127.0.0.1:9", clock, DemoOptions(scenarios=(), spans=False), out=io.StringIO()
    )
    yield current
    current.close()


@pytest.fixture
def app(services: Services, demo: Demo) -> FastAPI:
    return create_app(services, extra_routers=[demo_router(lambda: demo)])


@pytest.fixture
def running(app: FastAPI) -> Iterator[TestClient]:
    """The app with its lifespan running; a server error is an answer here, not an exception."""
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def with_silence_body(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with the body of POST /api/silences declared: the route reads it by hand (so
    that its errors keep the API's shape), which leaves it out of the generated schema."""
    body = SilenceSpec.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.setdefault("components", {}).setdefault("schemas", {}).update(body.pop("$defs", {}))
    schema["components"]["schemas"]["SilenceSpec"] = body
    schema["paths"]["/api/silences"]["post"]["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SilenceSpec"}}},
    }
    return schema


def send(client: TestClient, case: Any) -> Any:
    """Send a schemathesis case through the test client (the app's lifespan is already running)."""
    kwargs = case.as_transport_kwargs(base_url=str(client.base_url))
    extra: dict[str, Any] = {}
    if "json" in kwargs:
        extra["json"] = kwargs["json"]
    elif kwargs.get("data") is not None:
        extra["content"] = kwargs["data"]
    return client.request(
        kwargs["method"], kwargs["url"], params=kwargs.get("params"), headers=kwargs.get("headers"), **extra
    )


def test_every_operation_of_the_schema_is_fuzzed(app: FastAPI) -> None:
    schema = app.openapi()
    declared = {f"{method.upper()} {path}" for path, item in schema["paths"].items() for method in item}
    constrained = {
        f"{method.upper()} {path}"
        for path, item in with_silence_body(schema)["paths"].items()
        for method, operation in item.items()
        if "requestBody" in operation or any(p["in"] == "query" for p in operation.get("parameters", []))
    }
    assert declared == set(OPERATIONS) | NOT_FUZZED
    assert constrained - NOT_FUZZED == CONSTRAINED


@pytest.mark.parametrize(
    ("operation", "mode"),
    [pytest.param(op, GenerationMode.POSITIVE, id=f"{op} with what the schema allows") for op in OPERATIONS]
    + [
        pytest.param(op, GenerationMode.NEGATIVE, id=f"{op} with what the schema forbids")
        for op in OPERATIONS
        if op in CONSTRAINED
    ],
)
def test_operation_never_answers_with_a_server_error(
    app: FastAPI, running: TestClient, operation: str, mode: GenerationMode
) -> None:
    method, path = operation.split(" ", 1)
    schema = schemathesis.openapi.from_dict(with_silence_body(app.openapi()))
    checks = list(CHECKS)
    if mode is GenerationMode.NEGATIVE:
        checks.append(negative_data_rejection)
    statuses: list[int] = []

    strategy = schema[path][method].as_strategy(generation_mode=mode)

    @settings(FUZZ, max_examples=API_EXAMPLES)
    @given(case=strategy)
    def fuzz(case: Any) -> None:
        response = send(running, case)
        statuses.append(response.status_code)
        case.validate_response(response, checks=checks)

    fuzz()
    assert statuses and max(statuses) < 500


def test_metrics_declares_the_content_type_it_answers_with(app: FastAPI, running: TestClient) -> None:
    declared = app.openapi()["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    answered = running.get("/metrics").headers["content-type"].split(";")[0]
    assert answered in declared


@pytest.mark.parametrize(
    "offset",
    [
        pytest.param(2**32, id="2 to the 32 does not wrap to the first page"),
        pytest.param(2**64, id="2 to the 64 is no server error"),
    ],
)
def test_a_dead_letter_offset_past_what_the_query_holds_is_refused(running: TestClient, offset: int) -> None:
    running.post("/v1/events", content=b"not json", headers={"content-type": "application/json"})
    response = running.get("/api/dead-letters", params={"offset": offset})
    assert response.status_code in (400, 422) or (response.status_code, response.json()["items"]) == (200, [])


@pytest.mark.parametrize("offset", [2**32, 2**64])
def test_a_stuck_order_offset_past_what_the_query_holds_is_refused(running: TestClient, offset: int) -> None:
    response = running.get("/api/orders", params={"offset": offset})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "offset"]


AS_OF = [
    ("GET", "/api/slos"),
    ("GET", "/api/slos/order_completion"),
    ("GET", "/api/flow/health"),
    ("GET", "/api/orders"),
    ("POST", "/api/evaluate"),
]
EARLIEST_AT, LATEST_AT = datetime(1970, 1, 1, tzinfo=UTC), datetime(2106, 2, 7, 6, 28, 15, tzinfo=UTC)
"""What ClickHouse's DateTime (unsigned 32-bit seconds) holds, which the SLIs read."""


@st.composite
def any_instants(draw: st.DrawFn) -> str:
    """RFC 3339 text for any instant Python can write, in any zone, often near the edges."""
    edges = [
        EARLIEST_AT,
        LATEST_AT,
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
    ]
    near = st.sampled_from(edges).flatmap(
        lambda edge: st.integers(-3, 3).map(
            lambda s: edge + timedelta(seconds=s) if 1 < edge.year < 9999 else edge
        )
    )
    instant = draw(st.one_of(near, st.datetimes(timezones=st.just(UTC))))
    minutes = draw(st.sampled_from([0, 60, -330, 840, -840]))
    try:
        return instant.astimezone(timezone(timedelta(minutes=minutes))).isoformat()
    except OverflowError:
        return instant.isoformat()


@pytest.mark.parametrize(("method", "path"), AS_OF, ids=[f"{m} {p}" for m, p in AS_OF])
def test_any_as_of_time_is_answered_or_refused_naming_at(running: TestClient, method: str, path: str) -> None:
    answered: list[int] = []

    @settings(FUZZ, max_examples=20)
    @given(at=any_instants())
    def fuzz(at: str) -> None:
        response = running.request(method, path, params={"at": at})
        answered.append(response.status_code)
        instant = datetime.fromisoformat(at)
        try:
            inside = EARLIEST_AT <= instant.astimezone(UTC) <= LATEST_AT
        except OverflowError:
            inside = False
        if inside:
            assert response.status_code == 200, (at, response.text)
        else:
            assert response.status_code == 400, (at, response.text)
            assert response.json()["error"].startswith("at: "), response.text

    fuzz()
    assert {200, 400} <= set(answered)


# -- lifecycle events: POST /v1/events ---------------------------------------------------------

CONTRACT_FIELDS = tuple(name for name in EVENT_SCHEMA.names if name in FIELDS)
PAIRS = [(wf.name, stage.name) for wf in DEFAULT_WORKFLOWS for stage in wf.stages]
FOREIGN_STAGES = {
    wf.name: sorted({s for _, s in PAIRS} - {stage.name for stage in wf.stages}) for wf in DEFAULT_WORKFLOWS
}
OLDEST = datetime(2021, 1, 1, tzinfo=UTC)
"""Valid events occur between here and the pinned clock: 71 months, so that a batch stays within
ClickHouse's 100 partitions per insert (see test_events_spanning_more_than_100_months_are_stored)."""
JSON_TYPES = ("application/json", "application/json; charset=utf-8", None)
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl", "Application/X-NDJSON")
DROP = object()
"""A mutation that removes the field."""


@dataclass(frozen=True)
class Item:
    """One element of a request: a decoded event (or other JSON value), or a raw NDJSON line.

    ``valid`` says what the contract makes of it: True accepted (or a duplicate), False rejected,
    None either (the contract leaves it open).
    """

    payload: Any
    valid: bool | None
    raw: bytes | None = None
    blank: bool = False

    def line(self) -> bytes:
        return self.raw if self.raw is not None else orjson.dumps(self.payload)


def id_pool(limit: int) -> list[str]:
    """Event ids that recur across requests (so resends happen), some awkward to quote."""
    return [
        "evt-1",
        "evt-2",
        "a'b",
        'a"b',
        "a\\b",
        "a\x00b",
        "a\tb",
        "a\nb",
        "{x}",
        "%s",
        "日本-1",
        "x" * limit,
        "é" * limit,
        " leading",
    ]


@st.composite
def timestamps(draw: st.DrawFn, oldest: datetime = OLDEST, newest: datetime = T0) -> str:
    """RFC 3339 text for an instant between ``oldest`` and ``newest`` (exclusive), with an offset,
    fraction digits and a separator of any allowed kind."""
    instant = draw(
        st.datetimes(
            min_value=oldest.replace(tzinfo=None),
            max_value=(newest - timedelta(seconds=1)).replace(tzinfo=None),
        )
    ).replace(microsecond=0, tzinfo=UTC)
    minutes = draw(st.sampled_from([0, 0, 60, -330, 345, 840, -720]))
    local = instant.astimezone(timezone(timedelta(minutes=minutes)))
    fraction = draw(st.text("0123456789", max_size=9))
    separator = draw(st.sampled_from("TT "))
    if minutes == 0 and draw(st.booleans()):
        offset = "Z"
    else:
        hours, rest = divmod(abs(minutes), 60)
        offset = f"{'-' if minutes < 0 else '+'}{hours:02d}:{rest:02d}"
    return (
        local.strftime("%Y-%m-%d")
        + separator
        + local.strftime("%H:%M:%S")
        + (f".{fraction}" if fraction else "")
        + offset
    )


def hex_text(n: int) -> st.SearchStrategy[str]:
    return st.text("0123456789abcdefABCDEF", min_size=n, max_size=n)


@st.composite
def valid_events(draw: st.DrawFn, limits: Settings) -> dict[str, Any]:
    """An event the contract accepts, with any of its optional fields."""
    workflow, stage = draw(st.sampled_from(PAIRS))
    longest = limits.max_id_chars
    ids = st.one_of(st.sampled_from(id_pool(longest)), st.text(min_size=1, max_size=longest))
    found: dict[str, Any] = {
        "event_id": draw(ids),
        "correlation_id": draw(st.one_of(st.sampled_from(["SO-1", "SO-2", "RT-1"]), ids)),
        "workflow": workflow,
        "stage": stage,
        "system": draw(
            st.one_of(
                st.sampled_from(["oms", "erp", "wms"]), st.from_regex(r"[a-z0-9_.-]{1,64}", fullmatch=True)
            )
        ),
        "occurred_at": draw(
            st.one_of(
                timestamps(),
                st.sampled_from(
                    [
                        "1970-01-01T00:00:00Z",
                        "1969-12-31T23:59:59.999Z",
                        "2000-02-29T23:59:59.999999999-12:00",
                    ]
                ),
            )
        ),
    }
    optional = {
        "status": st.sampled_from(["ok", "failed"]),
        "channel": st.text(max_size=limits.max_channel_chars),
        "trace_id": st.one_of(st.just(""), hex_text(32)),
        "span_id": st.one_of(st.just(""), hex_text(16)),
        "attributes": st.one_of(
            st.dictionaries(st.text(min_size=1, max_size=40), st.text(max_size=30), max_size=5),
            st.just({f"k{i}": "v" for i in range(limits.max_attributes_per_event)}),
            st.just({"k" * limits.max_attribute_key_chars: "v" * limits.max_attribute_value_chars}),
        ),
    }
    for name, values in optional.items():
        if draw(st.booleans()):
            found[name] = draw(values)
    return found


def invalid_values(limits: Settings, arrow_friendly: bool) -> dict[str, list[Any]]:
    """Per field, values the contract rejects; ``arrow_friendly`` keeps to strings and string maps,
    so that a body of them still reads as columns."""
    too_long_id = "x" * (limits.max_id_chars + 1)
    future = (T0 + timedelta(seconds=limits.max_future_seconds, days=1)).isoformat()
    values: dict[str, list[Any]] = {
        "event_id": [DROP, "", too_long_id],
        "correlation_id": [DROP, "", too_long_id],
        "workflow": [DROP, "unknown_flow", ""],
        "stage": [DROP, "teleported", ""],
        "system": [DROP, "ERP", "", "s" * 65, "a b"],
        "occurred_at": [
            DROP,
            "2026-11-26T10:00:00",
            "2026-11-26",
            "2026-02-30T10:00:00Z",
            "2026-11-26T24:00:01Z",
            "soon",
            future,
        ],
        "status": ["done", "OK", ""],
        "channel": ["c" * (limits.max_channel_chars + 1)],
        "trace_id": ["xyz", "0" * 31, "g" * 32],
        "span_id": ["00f067aa0ba902", "g" * 16],
        "attributes": [
            {"k" * (limits.max_attribute_key_chars + 1): "v"},
            {"k": "v" * (limits.max_attribute_value_chars + 1)},
            {f"k{i}": "v" for i in range(limits.max_attributes_per_event + 1)},
        ],
        "chanel": ["web"],  # an unknown field
    }
    if not arrow_friendly:
        for name in ("event_id", "correlation_id", "workflow", "stage", "system", "channel"):
            values[name] += [7, True, ["a"], {"a": "b"}]
        values["occurred_at"].append(1764151200)
        values["status"].append(1)
        values["trace_id"].append(5)
        values["attributes"] += [["a"], "a=b", {"a": 1}, {"a": None}, {"a": {"b": "c"}}]
        values[""] = ["x"]
    return values


UNDECIDED: dict[str, list[Any]] = {
    # Values whose fate the contract leaves open: explicit nulls for optional fields, and
    # timestamps that are not quite RFC 3339 or far in the past.
    "status": [None],
    "channel": [None],
    "trace_id": [None],
    "span_id": [None],
    "attributes": [None, {}, {"": "v"}],
    "occurred_at": [
        "2026-11-26T10:00:00+0100",
        "2026-11-26T10:00+01:00",
        "2026-11-26t10:00:00z",
        "2026-12-31T23:59:60Z",
        "1900-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "2026-W48-4T10:00:00Z",
    ],
    "note": [None],
}


@st.composite
def invalid_events(draw: st.DrawFn, limits: Settings, arrow_friendly: bool) -> dict[str, Any]:
    """A valid event with one to three fields made invalid."""
    found = draw(valid_events(limits))
    values = invalid_values(limits, arrow_friendly)
    for name in draw(st.lists(st.sampled_from(sorted(values)), min_size=1, max_size=3, unique=True)):
        value = draw(st.sampled_from(values[name]))
        if value is DROP:
            found.pop(name, None)
        else:
            found[name] = value
    if found.get("stage") == "teleported" and draw(st.booleans()):
        workflow = found.get("workflow")
        if workflow in FOREIGN_STAGES:
            found["stage"] = draw(st.sampled_from(FOREIGN_STAGES[workflow]))
    return found


@st.composite
def undecided_events(draw: st.DrawFn, limits: Settings) -> dict[str, Any]:
    found = draw(valid_events(limits))
    name = draw(st.sampled_from(sorted(UNDECIDED)))
    found[name] = draw(st.sampled_from(UNDECIDED[name]))
    return found


def items(limits: Settings, *, arrow_friendly: bool = False, ndjson: bool = False) -> st.SearchStrategy[Item]:
    """Elements of a request body, each with what the contract makes of it."""
    choices = [
        valid_events(limits).map(lambda e: Item(e, True)),
        valid_events(limits).map(lambda e: Item(e, True)),
        invalid_events(limits, arrow_friendly).map(lambda e: Item(e, False)),
        undecided_events(limits).map(lambda e: Item(e, None)),
    ]
    if not arrow_friendly:
        choices.append(st.sampled_from([1, "x", None, [], True, [event(1)]]).map(lambda v: Item(v, False)))
    if ndjson and not arrow_friendly:
        junk = [b"{not json", b'{"event_id": ', b"\xff\xfe", b"[1,", b"}", b'{"a": 1} {"b": 2}']
        choices.append(st.sampled_from(junk).map(lambda raw: Item(None, False, raw=raw)))
        choices.append(
            st.sampled_from([b"", b"  ", b"\t"]).map(lambda raw: Item(None, None, raw=raw, blank=True))
        )
    return st.one_of(*choices)


@dataclass(frozen=True)
class Request:
    items: list[Item]
    ndjson: bool
    content_type: str | None
    gzip: bool
    crlf: bool = False

    def body(self) -> bytes:
        if self.ndjson:
            newline = b"\r\n" if self.crlf else b"\n"
            data = newline.join(item.line() for item in self.items) + newline
        else:
            data = orjson.dumps([item.payload for item in self.items])
        return gzip.compress(data) if self.gzip else data

    def headers(self) -> dict[str, str]:
        headers = {"content-encoding": "gzip"} if self.gzip else {}
        if self.content_type is not None:
            headers["content-type"] = self.content_type
        return headers

    def events(self) -> list[Item]:
        """The elements the service counts (blank NDJSON lines are not events)."""
        return [item for item in self.items if not item.blank]


@st.composite
def requests(draw: st.DrawFn, limits: Settings) -> Request:
    ndjson = draw(st.booleans())
    return Request(
        items=draw(st.lists(items(limits, ndjson=ndjson), max_size=25)),
        ndjson=ndjson,
        content_type=draw(st.sampled_from(NDJSON_TYPES if ndjson else JSON_TYPES)),
        gzip=draw(st.booleans()),
        crlf=ndjson and draw(st.booleans()),
    )


@st.composite
def large_requests(draw: st.DrawFn, limits: Settings) -> Request:
    """An NDJSON body over the columnar threshold: a few hundred events grown from a few drawn
    ones, the copies with ids of their own (from a hundred or so, so that some repeat)."""
    templates = draw(st.lists(items(limits, arrow_friendly=True), min_size=5, max_size=30))
    period = max(100, 3 * len(templates))
    grown: list[Item] = []
    size = 0
    while len(grown) < 300 or size < 2 * COLUMNAR_MIN_BYTES:
        n = len(grown)
        template = templates[n % len(templates)]
        payload = dict(template.payload)
        event_id = payload.get("event_id")
        if isinstance(event_id, str) and 1 <= len(event_id) <= limits.max_id_chars and n >= len(templates):
            payload["event_id"] = f"{event_id[: limits.max_id_chars - 8]}#{n % period}"
        grown.append(Item(payload, template.valid))
        size += len(grown[-1].line()) + 1
    return Request(grown, ndjson=True, content_type="application/x-ndjson", gzip=draw(st.booleans()))


class Ledger:
    """What one database must hold after the requests so far: the ids of the accepted events, and
    how many dead letters."""

    def __init__(self, client: TestClient, services: Services):
        self.client = client
        self.services = services
        self.stored: set[str] = set()
        self.dead_letters = 0

    def post(self, request: Request) -> dict[str, Any]:
        """Post ``request``, check the answer against the contract and the store against the
        ledger; returns the answer."""
        response = self.client.post("/v1/events", content=request.body(), headers=request.headers())
        assert response.status_code < 500, response.text
        events = request.events()
        if events and all(item.raw is not None for item in events):
            assert response.status_code == 400
            assert "no line of the NDJSON body is valid JSON" in response.json()["error"]
            self.dead_letters += 1
            self.check_store()
            return dict(response.json())
        assert response.status_code == 200, response.text
        answer = dict(response.json())
        rejected = {error["index"]: error for error in answer["errors"]}
        assert answer["rejected"] == len(answer["errors"]) == len(rejected)
        fresh: set[str] = set()
        passed = 0
        for index, item in enumerate(events):
            if index in rejected:
                assert item.valid is not True, (item, rejected[index])
                assert_names_the_problem(item, rejected[index])
            else:
                assert item.valid is not False, item
                assert isinstance(item.payload, dict) and isinstance(item.payload["event_id"], str)
                passed += 1
                if item.payload["event_id"] not in self.stored:
                    fresh.add(item.payload["event_id"])
        assert set(rejected) <= set(range(len(events)))
        assert (answer["accepted"], answer["duplicates"]) == (len(fresh), passed - len(fresh))
        self.stored |= fresh
        self.dead_letters += answer["rejected"]
        self.check_store()
        return answer

    def check_store(self) -> None:
        stored_once(self.services, self.stored)
        assert self.client.get("/api/dead-letters", params={"limit": 1}).json()["total"] == self.dead_letters


FIELD_PROBLEM = re.compile(
    r"^(?:line \d+: not valid JSON|event: must be a JSON object|(?:attributes\.)?[^:]*: )"
)


def assert_names_the_problem(item: Item, error: dict[str, Any]) -> None:
    """A rejection's error starts by naming the faulty field (or says the line is not JSON, or
    not an object); the event_id is the event's own when it has a readable one."""
    text = error["error"]
    assert text and FIELD_PROBLEM.match(text), text
    if item.raw is not None:
        assert text.startswith("line "), text
        return
    if not isinstance(item.payload, dict):
        assert text.startswith("event: must be a JSON object"), text
        return
    unknown = {str(key)[:64] for key in item.payload} - set(CONTRACT_FIELDS)
    if not any(text.startswith(f"{key}: unknown field") for key in unknown):
        named = re.match(r"[a-z_]+", text)
        assert named is not None and named.group() in CONTRACT_FIELDS, text
    assert error["event_id"] in ("", item.payload.get("event_id")), error


@pytest.fixture
def events_client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def row_path_twin(settings: Settings, engine: Store, clock: FixedClock, tmp_path: Path) -> Iterator[Ledger]:
    """A second service on a database of its own, which is only sent JSON arrays (the row path)."""
    twin = build_services(
        settings.model_copy(update={"database": f"{settings.database}_rows", "data_dir": tmp_path / "rows"}),
        store=engine,
        clock=clock,
    )
    with TestClient(create_app(twin), raise_server_exceptions=False) as test_client:
        yield Ledger(test_client, twin)


def test_fuzzed_event_requests_are_answered_per_event_and_stored_exactly(
    events_client: TestClient, services: Services
) -> None:
    ledger = Ledger(events_client, services)
    answers: list[dict[str, Any]] = []

    @settings(FUZZ, max_examples=60)
    @given(request=requests(services.settings))
    def fuzz(request: Request) -> None:
        answers.append(ledger.post(request))

    fuzz()
    assert sum(a.get("accepted", 0) for a in answers) == len(ledger.stored) > 0
    assert sum(a.get("rejected", 0) for a in answers) > 0


def test_large_ndjson_bodies_take_the_columnar_path_and_answer_as_the_row_path_does(
    events_client: TestClient, services: Services, row_path_twin: Ledger
) -> None:
    ledger = Ledger(events_client, services)
    columnar = 0

    @settings(FUZZ, max_examples=15)
    @given(request=large_requests(services.settings))
    def fuzz(request: Request) -> None:
        nonlocal columnar
        plain = Request(request.items, ndjson=True, content_type="application/x-ndjson", gzip=False)
        if validate_ndjson(plain.body(), DEFAULT_WORKFLOWS, "api", 0, 100_000) is not None:
            columnar += 1
        answer = ledger.post(request)
        as_rows = Request(request.items, ndjson=False, content_type="application/json", gzip=False)
        assert row_path_twin.post(as_rows) == answer
        assert stored_events(services) == stored_events(row_path_twin.services)

    fuzz()
    assert columnar >= 10


def stored_events(services: Services) -> list[tuple[Any, ...]]:
    assert services.writer.wait_idle()
    rows = services.store.rows(
        "SELECT event_id, correlation_id, workflow, stage, system, toString(occurred_at), status, "
        f"channel, trace_id, span_id, attributes FROM {services.schema.table('events')} FINAL "
        "ORDER BY event_id"
    )
    return [(*row[:-1], sorted(row[-1].items())) for row in rows]


def test_events_spanning_more_than_100_months_are_stored(
    events_client: TestClient, services: Services
) -> None:
    backfill = [
        event(f"m{i}", occurred_at=f"{2010 + i // 12}-{i % 12 + 1:02d}-01T00:00:00Z") for i in range(101)
    ]
    response = events_client.post("/v1/events", content=orjson.dumps(backfill))
    assert response.status_code == 200
    assert response.json()["accepted"] == 101


def test_ndjson_lines_that_are_not_json_on_their_own_are_rejected(events_client: TestClient) -> None:
    whole = orjson.dumps(event(1))
    cut = whole.index(b',"correlation_id"')
    body = whole[:cut] + b"\n" + whole[cut + 1 :] + b"\n1,2\n"  # three lines, none of them JSON
    response = events_client.post(
        "/v1/events", content=body, headers={"content-type": "application/x-ndjson"}
    )
    assert response.status_code == 400
    assert "no line of the NDJSON body is valid JSON" in response.json()["error"]
