#!/usr/bin/env python3
"""Load test: one ``flowsight serve`` process under a bounded, mixed load for a fixed time.

While the load runs, four kinds of client threads share the machine with the server, each
thread with its own keep-alive ``http.client`` connection:

* event senders POST NDJSON bodies of 10, 100 and 1000 lifecycle events to ``/v1/events`` at a
  paced rate (``--events-per-second``); one request in twenty (``--resend-every``) resends an
  earlier body, which the server must answer as duplicates;
* OTLP senders POST protobuf ``ExportTraceServiceRequest`` bodies to ``/v1/traces`` at a paced
  rate (``--otlp-spans-per-second``); every span carries ``order.id`` = a correlation ID the
  event senders use, and the resource's ``service.name`` is oms, payments, erp, wms or shipping;
* readers GET timelines of orders already accepted, ``/api/slos``, ``/api/alerts``,
  ``/api/flow/health``, the ``/`` page and ``/metrics`` at a steady rate;
* a sampler reads the server's RSS (VmRSS) and CPU time every ``--sample-every`` seconds.

Every body is generated before the server starts, so the client only sends. Senders keep to
their schedule while the server keeps up; when it does not, each sender waits for its answer
before the next request (at most ``--event-senders`` + ``--otlp-senders`` requests in flight) and
the report says how far behind schedule they fell. At the end the server is stopped with
SIGTERM and its chDB directory is opened here to check that every accepted event and span is
stored exactly once.

Progress goes to stderr every 10 s, a markdown table to stdout, the details to a JSON file.
Run ``python bench/load.py --help`` for the options and bench/README.md for how to read it.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import itertools
import math
import os
import random
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.ingest import (  # noqa: E402
    DATABASE,
    WINDOW_MS,
    WINDOW_START_MS,
    Aborted,
    Run,
    free_port,
    get,
    iter_events,
    machine_info,
    metric,
    percentile,
    proc_cpu_seconds,
    proc_status,
    server_log_tail,
    start_server,
    write_json,
)
from flowsight.collector.seen_ids import hash_ids  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "results" / "load.json"
MiB = 1024 * 1024
PROGRESS_EVERY_S = 10.0
REQUEST_TIMEOUT_S = 60.0
IDLE_RECONNECT_S = 4.0
TARGET_HELD = 0.95
"""A target rate counts as held when at least this share of it was sent on (or near) schedule."""

# Events per body, in the order the senders cycle through them: by events, 1000-event bodies
# carry 77% of the load, 100-event bodies 15%, 10-event bodies 8%; by requests, most are small.
EVENT_BODY_SIZES = (10, 10, 100, 10, 10, 1000, 10, 10, 100, 10, 10, 10, 10)
# Spans per body (multiples of the five spans of one trace).
SPAN_BODY_SIZES = (10, 100, 10, 500, 10, 100, 10, 100, 10)

SERVICES = ("oms", "payments", "erp", "wms", "shipping")
SPAN_NAMES = ("POST /orders", "authorize payment", "create sales order", "pick and pack", "create label")
SPANS_PER_TRACE = len(SERVICES)
STAGES_PER_ORDER = 7  # iter_events: order_to_cash's seven in-sequence stages

# What the readers ask for, in the order each reader cycles through (timelines are half).
READS = ("timeline", "slos", "timeline", "alerts", "timeline", "page", "timeline", "metrics", "flow")
READ_PATHS = {
    "slos": "/api/slos",
    "alerts": "/api/alerts",
    "flow": "/api/flow/health",
    "page": "/",
    "metrics": "/metrics",
}
KINDS = ("events", "traces", "timeline", "slos", "alerts", "flow", "page", "metrics")
KIND_LABELS = {
    "events": "POST /v1/events",
    "traces": "POST /v1/traces",
    "timeline": "GET /api/orders/{id}/timeline",
    "slos": "GET /api/slos",
    "alerts": "GET /api/alerts",
    "flow": "GET /api/flow/health",
    "page": "GET /",
    "metrics": "GET /metrics",
}
BACKPRESSURE = frozenset({429, 503})


def log(message: str) -> None:
    print(f"[load {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the load, generated before the server starts ------------------------------------------------


@dataclass
class Body:
    """One request body and what it carries."""

    data: bytes
    items: int
    hashes: np.ndarray  # xxHash64 of each item's identity (event_id; trace_id + span_id)
    orders: tuple[str, ...] = ()  # a few correlation IDs it carries (for the readers)


@dataclass
class Stream:
    """The requests one kind of sender makes, in order, with the time each is due."""

    kind: str
    path: str
    content_type: str
    bodies: list[Body]
    entries: list[int]  # body index per request; a body listed twice is a resend
    due_s: list[float]  # seconds after the start of the load
    resend: list[bool]
    status: list[int] = field(default_factory=list)  # per request: HTTP status, -1 no answer, 0 not sent
    accepted: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    next_entry: Any = field(default_factory=itertools.count)
    lag_s: list[float] = field(default_factory=list)  # how late each request left (>= 0)

    def __post_init__(self) -> None:
        n = len(self.entries)
        self.status = [0] * n
        self.accepted = [0] * n
        self.duplicates = [0] * n
        self.rejected = [0] * n


def paced(
    bodies: list[Body], rate: float, resend_every: int, seed: int
) -> tuple[list[int], list[float], list[bool]]:
    """Requests for ``bodies`` at ``rate`` items per second: each body is due when the items
    before it have had their time. One request in ``resend_every`` (0: none) resends a body sent
    20 to 200 requests earlier, due with the next new body and not counted in the rate."""
    rng = random.Random(seed)
    entries: list[int] = []
    due: list[float] = []
    resend: list[bool] = []
    sent_items = 0
    for index, body in enumerate(bodies):
        at = sent_items / rate
        if resend_every and index >= 20 and len(entries) % resend_every == resend_every - 1:
            entries.append(rng.randrange(max(0, index - 200), index - 19))
            due.append(at)
            resend.append(True)
        entries.append(index)
        due.append(at)
        resend.append(False)
        sent_items += body.items
    return entries, due, resend


def event_stream(total: int, rate: float, resend_every: int, seed: int) -> Stream:
    """``total`` order_to_cash events (bench/ingest.py's generator) as NDJSON bodies."""
    import orjson

    bodies: list[Body] = []
    sizes = itertools.cycle(EVENT_BODY_SIZES)
    size = next(sizes)
    lines: list[bytes] = []
    ids: list[str] = []
    orders: list[str] = []

    def flush() -> None:
        bodies.append(
            Body(b"\n".join(lines) + b"\n", len(lines), hash_ids(ids), (orders[0], orders[len(orders) // 2]))
        )

    for event in iter_events(total, seed):
        lines.append(orjson.dumps(event))
        ids.append(event["event_id"])
        orders.append(event["correlation_id"])
        if len(lines) == size:
            flush()
            lines, ids, orders = [], [], []
            size = next(sizes)
    if lines:
        flush()
    entries, due, resend = paced(bodies, rate, resend_every, seed)
    return Stream("events", "/v1/events", "application/x-ndjson", bodies, entries, due, resend)


def span_stream(total: int, rate: float, event_total: int, resend_every: int, seed: int) -> Stream:
    """About ``total`` spans as protobuf ``ExportTraceServiceRequest`` bodies of five-span traces
    (one span per service), each span with ``order.id`` of an order the event senders send about
    the same time, and timestamps near that order's first event."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    orders = max(1, -(-event_total // STAGES_PER_ORDER))
    step_ms = WINDOW_MS / orders
    rng = random.Random(seed + 1)
    bodies: list[Body] = []
    made = 0
    for number, size in enumerate(itertools.cycle(SPAN_BODY_SIZES)):
        if made >= total:
            break
        # The events are sent in time order, and orders start evenly over the window: an order
        # a little behind the event senders' position has its first events stored already.
        position = int(orders * made / total)
        request = ExportTraceServiceRequest()
        per_service = []
        for service in SERVICES:
            resource_spans = request.resource_spans.add()
            resource_spans.resource.attributes.add(key="service.name", value=AnyValue(string_value=service))
            scope_spans = resource_spans.scope_spans.add()
            scope_spans.scope.name = "flowsight.bench.load"
            per_service.append(scope_spans.spans)
        keys: list[str] = []
        cids: list[str] = []
        for trace in range(size // SPANS_PER_TRACE):
            order = max(0, position - rng.randrange(0, 2000))
            cid = f"ORD-{10_000_000 + order}"
            cids.append(cid)
            # 16 bytes trace id, 1 start jitter, 5 x 8 span ids, 5 for status and duration.
            h = hashlib.blake2b(b"%d:t:%d:%d" % (seed, number, trace), digest_size=64).digest()
            trace_id = h[:16]
            start_ns = (WINDOW_START_MS + int(order * step_ms) + h[16] * 4) * 1_000_000
            root_id = h[17:25]
            for s, (spans, name) in enumerate(zip(per_service, SPAN_NAMES, strict=True)):
                span_id = h[17 + 8 * s : 25 + 8 * s]
                span = spans.add(
                    trace_id=trace_id,
                    span_id=span_id,
                    name=name,
                    kind=Span.SPAN_KIND_SERVER if s == 0 else Span.SPAN_KIND_INTERNAL,
                    start_time_unix_nano=start_ns + s * 20_000_000,
                    end_time_unix_nano=start_ns + s * 20_000_000 + (5 + h[57 + s] * 2) * 1_000_000,
                )
                if s:
                    span.parent_span_id = root_id
                span.attributes.add(key="order.id", value=AnyValue(string_value=cid))
                if h[57 + s] < 5:  # ~2% of spans fail
                    span.status.code = Status.STATUS_CODE_ERROR
                    span.status.message = "upstream timeout"
                keys.append(trace_id.hex() + span_id.hex())
        bodies.append(Body(request.SerializeToString(), len(keys), hash_ids(keys), tuple(cids[:2])))
        made += len(keys)
    entries, due, resend = paced(bodies, rate, resend_every, seed + 2)
    return Stream("traces", "/v1/traces", "application/x-protobuf", bodies, entries, due, resend)


# -- clients -------------------------------------------------------------------------------------


@dataclass
class KindStats:
    """What one thread saw of one kind of request."""

    latencies: list[float] = field(default_factory=list)  # seconds, answered requests
    statuses: Counter[int] = field(default_factory=Counter)
    connection_errors: int = 0
    samples: list[str] = field(default_factory=list)  # the first few failures, for the report

    def failure(self, text: str) -> None:
        if len(self.samples) < 5:
            self.samples.append(text)


class Client:
    """One thread's keep-alive connection to the server."""

    def __init__(self, port: int, headers: dict[str, str]):
        self.port = port
        self.headers = headers
        self.conn: http.client.HTTPConnection | None = None
        self.last_used = 0.0

    def request(
        self, stats: KindStats, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> tuple[int, bytes]:
        """One request; (status, body), status -1 when it got no answer."""
        # The server closes connections idle for 5 s (uvicorn's default); a request sent just
        # as it does so fails without being an error of the server, so reconnect first.
        if self.conn is None or time.monotonic() - self.last_used > IDLE_RECONNECT_S:
            self.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_S)
        headers = {**self.headers, "Content-Type": content_type} if content_type else self.headers
        started = time.perf_counter()
        try:
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            stats.connection_errors += 1
            stats.failure(f"{method} {path[:80]}: {type(exc).__name__}: {exc}")
            self.close()
            return -1, b""
        finally:
            self.last_used = time.monotonic()
        stats.latencies.append(time.perf_counter() - started)
        stats.statuses[response.status] += 1
        if not 200 <= response.status < 300:
            stats.failure(f"{method} {path[:80]}: HTTP {response.status}: {data[:200]!r}")
        if response.will_close:
            self.close()
        return response.status, data

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Load:
    """Shared state of every client thread."""

    def __init__(self, port: int, token: str | None, duration: float, seed: int):
        self.port = port
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.duration = duration
        self.seed = seed
        self.stop = threading.Event()
        self.start = 0.0  # perf_counter at the start of the load
        self.lock = threading.Lock()
        self.stats: list[dict[str, KindStats]] = []
        self.known_orders: list[str] = []
        self.items_accepted = {"events": 0, "traces": 0}

    def thread_stats(self) -> dict[str, KindStats]:
        stats = {kind: KindStats() for kind in KINDS}
        with self.lock:
            self.stats.append(stats)
        return stats

    def wait_until(self, at: float) -> float:
        """Sleep until ``at`` seconds into the load; how late we are (0 if on time), or -1 when
        the load is over."""
        if at >= self.duration or self.stop.is_set():
            return -1.0
        delay = self.start + at - time.perf_counter()
        if delay > 0:
            if self.stop.wait(delay):
                return -1.0
            return 0.0
        return -delay

    def sender(self, stream: Stream) -> None:
        import orjson
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        stats = self.thread_stats()[stream.kind]
        client = Client(self.port, self.headers)
        try:
            while True:
                k = next(stream.next_entry)
                if k >= len(stream.entries):
                    return
                lag = self.wait_until(stream.due_s[k])
                if lag < 0:
                    return
                stream.lag_s.append(lag)
                body = stream.bodies[stream.entries[k]]
                status, data = client.request(stats, "POST", stream.path, body.data, stream.content_type)
                stream.status[k] = status
                if status != 200:
                    continue
                if stream.kind == "events":
                    answer = orjson.loads(data)
                    stream.accepted[k] = answer["accepted"]
                    stream.duplicates[k] = answer["duplicates"]
                    stream.rejected[k] = answer["rejected"]
                    if answer["rejected"]:
                        stats.failure(f"POST {stream.path}: rejected events: {data[:300]!r}")
                else:
                    # OTLP answers only what it rejected; resent spans are accepted silently.
                    answer_pb = ExportTraceServiceResponse()
                    answer_pb.ParseFromString(data)
                    stream.rejected[k] = answer_pb.partial_success.rejected_spans
                    stream.accepted[k] = body.items - stream.rejected[k]
                with self.lock:
                    self.items_accepted[stream.kind] += stream.accepted[k]
                if stream.kind == "events" and not stream.resend[k]:
                    self.known_orders.extend(body.orders)
        finally:
            client.close()

    def reader(self, number: int, interval: float, offset: float) -> None:
        """Reads every ``interval`` seconds from ``offset`` on, each reader from another place in
        the cycle of ``READS``."""
        rng = random.Random(self.seed * 1000 + number)
        all_stats = self.thread_stats()
        client = Client(self.port, self.headers)
        try:
            for tick in itertools.count():
                if self.wait_until(offset + tick * interval) < 0:
                    return
                kind = READS[(number * 2 + tick) % len(READS)]
                if kind == "timeline":
                    if not self.known_orders:
                        continue
                    path = f"/api/orders/{rng.choice(self.known_orders)}/timeline"
                else:
                    path = READ_PATHS[kind]
                client.request(all_stats[kind], "GET", path)
        finally:
            client.close()

    def totals(self) -> tuple[int, int, int]:
        """(answered or failed requests, errors, backpressure answers) so far, of every kind."""
        requests = errors = backpressure = 0
        for stats in list(self.stats):
            for s in stats.values():
                for status, n in list(s.statuses.items()):
                    requests += n
                    if status in BACKPRESSURE:
                        backpressure += n
                    elif not 200 <= status < 300:
                        errors += n
                requests += s.connection_errors
                errors += s.connection_errors
        return requests, errors, backpressure


# -- the server ----------------------------------------------------------------------------------


def stop_server(server: subprocess.Popen[bytes], server_log: Path) -> tuple[int | None, float]:
    """SIGTERM, then wait (at most 120 s); the exit code and how long it took."""
    started = time.monotonic()
    server.send_signal(signal.SIGTERM)
    try:
        code = server.wait(timeout=120)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
        raise Aborted(
            f"the server did not stop within 120 s of SIGTERM:\n{server_log_tail(server_log)}"
        ) from None
    return code, time.monotonic() - started


@dataclass
class Sample:
    """The server's RSS and CPU time, and the client's counts, at one moment of the load."""

    t_s: float  # seconds into the load
    rss_bytes: int
    server_cpu_s: float | None
    client_cpu_s: float
    events_accepted: int
    spans_accepted: int
    requests: int
    errors: int
    backpressure: int


def sampler(load: Load, pid: int, every: float, samples: list[Sample]) -> None:
    """Samples at 0, ``every``, 2 x ``every`` ... seconds into the load, and at its end."""
    for tick in itertools.count():
        at = min(tick * every, load.duration)
        delay = load.start + at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        rss = proc_status(pid, "VmRSS")
        if rss is None:  # the server is gone
            return
        requests, errors, backpressure = load.totals()
        samples.append(
            Sample(
                time.perf_counter() - load.start,
                rss,
                proc_cpu_seconds(pid),
                time.process_time(),
                load.items_accepted["events"],
                load.items_accepted["traces"],
                requests,
                errors,
                backpressure,
            )
        )
        if at >= load.duration:
            return


def verify(data_dir: Path) -> dict[str, Any]:
    """What the stopped server's chDB directory holds: counts and the hash of every item."""
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=f"chdb://{data_dir / 'clickhouse'}")
    try:
        events, events_unique = client.query(
            f"SELECT count(), uniqExact(event_id) FROM {DATABASE}.events"
        ).result_rows[0]
        spans, spans_unique = client.query(
            f"SELECT count(), uniqExact(TraceId, SpanId) FROM {DATABASE}.otel_traces"
        ).result_rows[0]
        event_hashes = client.query_arrow(f"SELECT xxHash64(event_id) AS h FROM {DATABASE}.events")
        span_hashes = client.query_arrow(
            f"SELECT xxHash64(concat(TraceId, SpanId)) AS h FROM {DATABASE}.otel_traces"
        )
        dead_letters = client.query(f"SELECT count() FROM {DATABASE}.dead_letters").result_rows[0][0]
    finally:
        client.close()
    return {
        "events": int(events),
        "events_unique": int(events_unique),
        "spans": int(spans),
        "spans_unique": int(spans_unique),
        "dead_letters": int(dead_letters),
        "event_hashes": event_hashes.column("h").to_numpy(),
        "span_hashes": span_hashes.column("h").to_numpy(),
    }


# -- results -------------------------------------------------------------------------------------


def kind_summary(stats: list[dict[str, KindStats]], kind: str, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    connection_errors = 0
    samples: list[str] = []
    for per_thread in stats:
        s = per_thread[kind]
        latencies += s.latencies
        statuses.update(s.statuses)
        connection_errors += s.connection_errors
        samples += s.samples
    latencies.sort()
    count = sum(statuses.values()) + connection_errors
    backpressure = sum(n for status, n in statuses.items() if status in BACKPRESSURE)
    errors = connection_errors + sum(
        n for status, n in statuses.items() if status not in BACKPRESSURE and not 200 <= status < 300
    )

    def ms(q: float) -> float | None:
        return round(percentile(latencies, q) * 1000, 2) if latencies else None

    return {
        "count": count,
        "per_s": round(count / seconds, 2),
        "errors": errors,
        "error_rate": round(errors / count, 5) if count else 0.0,
        "backpressure": backpressure,
        "connection_errors": connection_errors,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "p50_ms": ms(50),
        "p95_ms": ms(95),
        "p99_ms": ms(99),
        "max_ms": round(latencies[-1] * 1000, 2) if latencies else None,
        "failures": samples[:5],
    }


def stream_summary(stream: Stream, seconds: float, stored_hashes: np.ndarray) -> dict[str, Any]:
    """Sent, accepted and stored items of one stream, and the exactly-once checks."""
    sent = [k for k, status in enumerate(stream.status) if status != 0]
    answered = [k for k in sent if stream.status[k] == 200]
    unknown = [k for k in sent if stream.status[k] == -1]
    new_items = sum(stream.bodies[stream.entries[k]].items for k in sent if not stream.resend[k])
    resent_items = sum(stream.bodies[stream.entries[k]].items for k in sent if stream.resend[k])

    def hashes(requests: list[int]) -> np.ndarray:
        bodies = {stream.entries[k] for k in requests}
        if not bodies:
            return np.empty(0, np.uint64)
        return np.unique(np.concatenate([stream.bodies[b].hashes for b in bodies]))

    must_be_stored = hashes(answered)
    may_be_stored = hashes(sent)
    accepted = sum(stream.accepted[k] for k in answered)
    stored = int(stored_hashes.size)
    missing = int(np.count_nonzero(~np.isin(must_be_stored, stored_hashes)))
    foreign = int(np.count_nonzero(~np.isin(stored_hashes, may_be_stored)))
    unknown_items = sum(stream.bodies[stream.entries[k]].items for k in unknown)
    lags = sorted(stream.lag_s)
    return {
        "sent": new_items,
        "sent_per_s": round(new_items / seconds, 1),
        "resent": resent_items,
        "requests": len(sent),
        "requests_unsent": len(stream.entries) - len(sent),
        "accepted": accepted,
        "duplicates": sum(stream.duplicates[k] for k in answered),
        "rejected": sum(stream.rejected[k] for k in answered),
        "not_accepted_requests": len(sent) - len(answered),
        "unknown_outcome_items": unknown_items,
        "distinct_in_accepted_requests": int(must_be_stored.size),
        "stored": stored,
        "missing": missing,
        "foreign": foreign,
        "lag_p99_s": round(percentile(lags, 99), 3) if lags else None,
        "lag_max_s": round(lags[-1], 3) if lags else None,
    }


def memory_summary(samples: list[Sample], duration: float, limit: float) -> dict[str, Any]:
    """RSS in the middle and last thirds of the load; "flat" when the mean of the last third is
    less than ``limit`` above the mean of the middle third."""
    points = [(s.t_s, s.rss_bytes / MiB) for s in samples]
    middle = [r for t, r in points if duration / 3 <= t < 2 * duration / 3]
    last = [r for t, r in points if t >= 2 * duration / 3]

    def slope(selected: list[tuple[float, float]]) -> float | None:
        """Least-squares slope in MiB per minute."""
        if len(selected) < 2:
            return None
        ts = np.array([t for t, _ in selected])
        rs = np.array([r for _, r in selected])
        return float(np.polyfit(ts, rs, 1)[0] * 60)

    later = [(t, r) for t, r in points if t >= duration / 3]
    out: dict[str, Any] = {
        "rss_start_mib": round(points[0][1], 1) if points else None,
        "rss_end_mib": round(points[-1][1], 1) if points else None,
        "rss_max_mib": round(max(r for _, r in points), 1) if points else None,
        "middle_third_mean_mib": round(sum(middle) / len(middle), 1) if middle else None,
        "last_third_mean_mib": round(sum(last) / len(last), 1) if last else None,
        "slope_mib_per_min": None,
        "slope_last_third_mib_per_min": None,
        "growth": None,
        "limit": limit,
        "verdict": "n/a",
    }
    s = slope(later)
    s_last = slope([(t, r) for t, r in points if t >= 2 * duration / 3])
    out["slope_mib_per_min"] = round(s, 2) if s is not None else None
    out["slope_last_third_mib_per_min"] = round(s_last, 2) if s_last is not None else None
    if middle and last:
        growth = (sum(last) / len(last)) / (sum(middle) / len(middle)) - 1
        out["growth"] = round(growth, 4)
        out["verdict"] = "flat" if growth < limit else "growing"
    return out


def behind(stream: Stream) -> float:
    """How late the latest request of ``stream`` left, in seconds."""
    return stream.lag_s[-1] if stream.lag_s else 0.0


def over_time(samples: list[Sample], step_s: float) -> list[dict[str, Any]]:
    """The samples about every ``step_s`` seconds (and the last), with rates since the one before."""
    rows: list[dict[str, Any]] = []
    if not samples:
        return rows
    previous = samples[0]
    for sample in samples[1:]:
        span = sample.t_s - previous.t_s
        if span <= 0 or (span < step_s - 0.5 and sample is not samples[-1]):
            continue
        cores = (
            round((sample.server_cpu_s - previous.server_cpu_s) / span, 2)
            if sample.server_cpu_s is not None and previous.server_cpu_s is not None
            else None
        )
        rows.append(
            {
                "t_s": round(sample.t_s, 1),
                "rss_mib": round(sample.rss_bytes / MiB, 1),
                "events_per_s": round((sample.events_accepted - previous.events_accepted) / span, 1),
                "spans_per_s": round((sample.spans_accepted - previous.spans_accepted) / span, 1),
                "requests_per_s": round((sample.requests - previous.requests) / span, 2),
                "errors": sample.errors - previous.errors,
                "backpressure": sample.backpressure - previous.backpressure,
                "server_cores": cores,
            }
        )
        previous = sample
    return rows


def cpu_cores(samples: list[Sample]) -> tuple[float | None, float | None]:
    """Cores used by the server and the client between the first and the last sample."""
    first, last = samples[0], samples[-1]
    span = last.t_s - first.t_s
    if span <= 0:
        return None, None
    server = (
        (last.server_cpu_s - first.server_cpu_s) / span
        if last.server_cpu_s is not None and first.server_cpu_s is not None
        else None
    )
    return server, (last.client_cpu_s - first.client_cpu_s) / span


def log_problems(path: Path) -> dict[str, Any]:
    """Tracebacks and ERROR/WARNING lines in the server's log."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return {"errors": 0, "warnings": 0, "tracebacks": 0, "first": []}
    errors = [line for line in lines if "ERROR" in line or "CRITICAL" in line]
    warnings = [line for line in lines if "WARNING" in line]
    tracebacks = sum(1 for line in lines if line.startswith("Traceback"))
    return {
        "errors": len(errors),
        "warnings": len(warnings),
        "tracebacks": tracebacks,
        "first": (errors + warnings)[:10],
    }


def fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


def fmt_s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f} s"


def markdown(result: dict[str, Any]) -> str:
    seconds = result["load_s"]
    out = [
        f"Load for {seconds:.0f} s: targets {result['config']['events_per_second']:,} events/s, "
        f"{result['config']['otlp_spans_per_second']:,} spans/s, {result['config']['readers']} readers "
        f"at {result['config']['reads_per_second']:g} reads/s in all.",
        "",
        "| Request | Count | Per s | Errors (rate) | 429/503 | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in KINDS:
        k = result["requests"][kind]
        if not k["count"]:
            continue
        out.append(
            f"| {KIND_LABELS[kind]} | {k['count']:,} | {k['per_s']:,.1f} | {k['errors']} "
            f"({k['error_rate']:.2%}) | {k['backpressure']} | {fmt_ms(k['p50_ms'])} | "
            f"{fmt_ms(k['p95_ms'])} | {fmt_ms(k['p99_ms'])} | {fmt_ms(k['max_ms'])} |"
        )
    e, s, m, w = result["events"], result["spans"], result["memory"], result["server_writer"]
    cfg = result["config"]
    server_cpu, client_cpu = result["cpu_cores"]["server"], result["cpu_cores"]["client"]
    checks = result["checks"]

    def ok(name: str) -> str:
        return "OK" if checks[name] else "FAIL"

    rows = [
        (
            "Events sent (+ resent) / accepted",
            f"{e['sent']:,} ({e['sent_per_s']:,.0f}/s) + {e['resent']:,} / {e['accepted']:,} "
            f"(duplicates {e['duplicates']:,}, rejected {e['rejected']:,})",
            "",
        ),
        (
            "Events stored (unique) / inserted by the server / missing / foreign",
            f"{result['stored']['events']:,} ({result['stored']['events_unique']:,}) / "
            f"{w.get('ingest_events_stored_total') or 0:,.0f} / {e['missing']} / {e['foreign']}",
            ok("events_exactly_once"),
        ),
        (
            "Spans sent (+ resent) / accepted (OTLP counts resent spans as accepted)",
            f"{s['sent']:,} ({s['sent_per_s']:,.0f}/s) + {s['resent']:,} / {s['accepted']:,} "
            f"(rejected {s['rejected']:,})",
            "",
        ),
        (
            "Spans stored (unique) / missing / foreign",
            f"{result['stored']['spans']:,} ({result['stored']['spans_unique']:,}) / {s['missing']} / "
            f"{s['foreign']}",
            ok("spans_exactly_once"),
        ),
        (
            "Target rates held (new items sent / target)",
            f"events {e['sent_per_s'] / cfg['events_per_second']:.0%}, "
            f"spans {s['sent_per_s'] / cfg['otlp_spans_per_second']:.0%}",
            "yes" if result["targets_held"] else "no",
        ),
        (
            "Senders behind schedule, p99 / max",
            f"events {fmt_s(e['lag_p99_s'])} / {fmt_s(e['lag_max_s'])}, "
            f"spans {fmt_s(s['lag_p99_s'])} / {fmt_s(s['lag_max_s'])}",
            "",
        ),
        (
            "Errors (non-2xx but 429/503, no answer)",
            f"{result['errors']:,} of {result['requests_total']:,} "
            f"(limit {result['config']['max_error_rate']:.2%})",
            ok("error_rate"),
        ),
        ("Backpressure (429/503)", f"{result['backpressure']:,}", ""),
        (
            "Server RSS: start / middle third / last third / max",
            f"{m['rss_start_mib']} / {m['middle_third_mean_mib']} / {m['last_third_mean_mib']} / "
            f"{m['rss_max_mib']} MiB",
            "",
        ),
        (
            "RSS growth, last third over middle third",
            f"{m['growth']:+.1%} (limit {m['limit']:.0%}): {m['verdict']}"
            if m["growth"] is not None
            else "n/a",
            ok("memory_flat"),
        ),
        (
            "RSS slope after the first third (last third)",
            f"{m['slope_mib_per_min']} ({m['slope_last_third_mib_per_min']}) MiB/min",
            "",
        ),
        ("Server peak RSS (VmHWM)", f"{result['server_peak_rss_mib']} MiB", ""),
        (
            "CPU: server / client",
            f"{server_cpu:.2f} / {client_cpu:.2f} cores of {result['machine']['nproc']}"
            if server_cpu is not None and client_cpu is not None
            else "n/a",
            "",
        ),
        (
            "Server writer: commits, busy share of the load (dedup, inserts)",
            f"{w['ingest_commits_total']:,.0f}, {w['writer_busy_share']:.0%} "
            f"({w['ingest_dedup_seconds_total']:.1f} s, {w['loader_insert_seconds_total']:.1f} s)"
            if w.get("writer_busy_share") is not None
            and w.get("ingest_dedup_seconds_total") is not None
            and w.get("loader_insert_seconds_total") is not None
            else "n/a",
            "",
        ),
        (
            "Last SLO and flow evaluation took",
            f"{w['evaluation_duration_seconds']:.2f} s"
            if w.get("evaluation_duration_seconds") is not None
            else "n/a",
            "",
        ),
        (
            "Server stopped (SIGTERM) / log",
            f"exit {result['server_exit_code']} in {result['server_stop_s']:.1f} s; "
            f"{result['server_log']['errors']} ERROR, {result['server_log']['warnings']} WARNING lines",
            ok("server_ran"),
        ),
    ]
    out += ["", "| Measure | Value | Check |", "|---|---|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    if result["over_time"]:
        out += [
            "",
            "| Seconds | Server RSS MiB | Events/s accepted | Spans/s accepted | Requests/s | Errors | "
            "429/503 | Server CPU cores |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        out += [
            f"| {r['t_s']:.0f} | {r['rss_mib']:,.0f} | {r['events_per_s']:,.0f} | {r['spans_per_s']:,.0f} | "
            f"{r['requests_per_s']:,.1f} | {r['errors']} | {r['backpressure']} | "
            f"{'n/a' if r['server_cores'] is None else format(r['server_cores'], '.2f')} |"
            for r in result["over_time"]
        ]
    mach = result["machine"]
    out += [
        "",
        f"Machine: {mach['nproc']} CPUs, Python {mach['python']}, chdb {mach['chdb']}, "
        f"clickhouse-connect {mach['clickhouse_connect']}, uvicorn {mach['uvicorn']}; 1-minute load "
        f"average {mach['loadavg_1min_start_end'][0]:.1f} at the start of the load, "
        f"{mach['loadavg_1min_start_end'][1]:.1f} at its end (the client and server alone make about 1-2).",
        f"Command: `{result['command']}`",
    ]
    return "\n".join(out)


# -- the run -------------------------------------------------------------------------------------


def load_test(args: argparse.Namespace) -> int:
    run = Run(args.keep)
    timeout = args.timeout if args.timeout is not None else args.duration + 600
    timer = run.watchdog(timeout)
    started = time.monotonic()
    try:
        return _load_test(args, run, started)
    except Aborted as exc:
        log(f"FAILED: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        timer.cancel()
        run.cleanup()


def generate(args: argparse.Namespace) -> tuple[Stream, Stream]:
    events_total = math.ceil(args.events_per_second * args.duration)
    spans_total = math.ceil(args.otlp_spans_per_second * args.duration)
    log(f"generating {events_total:,} events and {spans_total:,} spans")
    started = time.perf_counter()
    events = event_stream(events_total, args.events_per_second, args.resend_every, args.seed)
    spans = span_stream(spans_total, args.otlp_spans_per_second, events_total, args.resend_every, args.seed)
    sizes = [sum(len(b.data) for b in stream.bodies) / MiB for stream in (events, spans)]
    log(
        f"generated {len(events.bodies):,} event bodies ({sizes[0]:,.0f} MiB) and {len(spans.bodies):,} "
        f"span bodies ({sizes[1]:,.0f} MiB) in {time.perf_counter() - started:.1f} s"
    )
    return events, spans


@dataclass
class Drive:
    """How the load went, from the client's side."""

    samples: list[Sample]
    seconds: float
    loadavg: tuple[float, float]  # the machine's 1-minute load average at the start and at the end
    stuck: list[str]  # client threads still waiting for an answer after the load
    died: bool  # the server exited during the load


def drive(
    args: argparse.Namespace, load: Load, server: subprocess.Popen[bytes], events: Stream, spans: Stream
) -> Drive:
    """Run every client thread for ``--duration`` seconds, logging progress every 10 s."""
    threads = [
        threading.Thread(target=load.sender, args=(stream,), name=f"{stream.kind}-{n}", daemon=True)
        for stream, count in ((events, args.event_senders), (spans, args.otlp_senders))
        for n in range(count)
    ]
    interval = args.readers / args.reads_per_second
    threads += [
        threading.Thread(
            target=load.reader, args=(n, interval, n / args.reads_per_second), name=f"reader-{n}", daemon=True
        )
        for n in range(args.readers)
    ]
    samples: list[Sample] = []
    sampling = threading.Thread(
        target=sampler, args=(load, server.pid, args.sample_every, samples), name="sampler", daemon=True
    )
    log(
        f"load for {args.duration:g} s: {args.event_senders} event senders, {args.otlp_senders} OTLP "
        f"senders, {args.readers} readers"
    )
    loadavg_start = os.getloadavg()[0]
    load.start = time.perf_counter()
    for thread in [sampling, *threads]:
        thread.start()
    died = False
    previous = (0.0, dict(load.items_accepted))
    for tick in itertools.count(1):
        while not died and time.perf_counter() - load.start < min(tick * PROGRESS_EVERY_S, args.duration):
            time.sleep(0.2)
            died = server.poll() is not None
        if died:
            log(f"the server exited with {server.returncode} during the load")
            break
        elapsed = time.perf_counter() - load.start
        requests, errors, backpressure = load.totals()
        rss = proc_status(server.pid, "VmRSS")
        now = dict(load.items_accepted)
        window = max(elapsed - previous[0], 1e-9)
        log(
            f"{elapsed:5.0f} s: {requests:,} requests, {errors} errors, {backpressure} backpressure; "
            f"accepted {(now['events'] - previous[1]['events']) / window:,.0f} events/s, "
            f"{(now['traces'] - previous[1]['traces']) / window:,.0f} spans/s; "
            f"senders behind schedule {behind(events):.1f} s (events), {behind(spans):.1f} s (spans); "
            f"RSS {rss / MiB if rss else float('nan'):,.0f} MiB"
        )
        previous = (elapsed, now)
        if elapsed >= args.duration:
            break
    load.stop.set()
    loadavg_end = os.getloadavg()[0]
    drain_started = time.perf_counter()
    for thread in threads:
        thread.join(timeout=REQUEST_TIMEOUT_S + 10)
    sampling.join(timeout=args.sample_every + 5)
    seconds = min(time.perf_counter() - load.start, args.duration)
    log(f"load stopped; in-flight requests drained in {time.perf_counter() - drain_started:.1f} s")
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        log(f"WARNING: client threads still waiting for an answer: {', '.join(stuck)}")
    return Drive(samples, seconds, (loadavg_start, loadavg_end), stuck, died)


def writer_figures(port: int, headers: dict[str, str], seconds: float) -> dict[str, Any]:
    """The server's own ingest figures (``/metrics``) after the load: commits and writer time."""
    try:
        status, body = get(port, "/metrics", timeout=30, headers=headers)
    except OSError as exc:
        return {"error": str(exc)}
    if status != 200:
        return {"error": f"HTTP {status}"}
    text = body.decode()
    figures = {
        name: metric(text, f"flowsight_{name}")
        for name in (
            "ingest_commits_total",
            "ingest_events_stored_total",
            "ingest_duplicates_total",
            "ingest_commit_seconds_total",
            "loader_insert_seconds_total",
            "ingest_dedup_seconds_total",
            "evaluation_duration_seconds",
        )
    }
    commit_s = figures["ingest_commit_seconds_total"]
    figures["writer_busy_share"] = round(commit_s / seconds, 3) if commit_s is not None else None
    return figures


def exactly_once(summary: dict[str, Any], count: int, unique: int) -> bool:
    """Stored once each: every item of an accepted request, nothing else, no row twice.

    Items of requests that got no answer may or may not be stored; all others are known."""
    return (
        count == unique
        and summary["missing"] == 0
        and summary["foreign"] == 0
        and summary["rejected"] == 0
        and summary["distinct_in_accepted_requests"]
        <= count
        <= summary["distinct_in_accepted_requests"] + summary["unknown_outcome_items"]
    )


def _load_test(args: argparse.Namespace, run: Run, started: float) -> int:
    events, spans = generate(args)
    data_dir = run.tempdir("flowsight-load-")
    server_log = data_dir / "server.log"
    port = free_port()
    load = Load(port, args.token, args.duration, args.seed)
    server = start_server(run, data_dir, port, math.inf, load.headers, after_evaluation=False)
    done = drive(args, load, server, events, spans)
    if done.died:
        raise Aborted(f"the server died during the load:\n{server_log_tail(server_log)}")
    peak_rss = proc_status(server.pid, "VmHWM")
    writer = writer_figures(port, load.headers, done.seconds)
    log("stopping the server (SIGTERM)")
    code, stop_s = stop_server(server, server_log)
    log(f"server exited with {code} in {stop_s:.1f} s; opening its chDB directory")
    stored = verify(data_dir)

    seconds = done.seconds
    requests = {kind: kind_summary(load.stats, kind, seconds) for kind in KINDS}
    e = stream_summary(events, seconds, stored.pop("event_hashes"))
    s = stream_summary(spans, seconds, stored.pop("span_hashes"))
    total = sum(k["count"] for k in requests.values())
    errors = sum(k["errors"] for k in requests.values())
    memory = memory_summary(done.samples, args.duration, args.rss_growth_limit)
    server_cpu, client_cpu = cpu_cores(done.samples) if len(done.samples) > 1 else (None, None)
    checks = {
        "server_ran": not done.stuck and code in (0, -signal.SIGTERM),
        # events is a ReplacingMergeTree, whose merges would hide a row inserted twice: the
        # server's count of rows it inserted must match too.
        "events_exactly_once": exactly_once(e, stored["events"], stored["events_unique"])
        and (e["accepted"] == stored["events"] or e["unknown_outcome_items"] > 0)
        and writer.get("ingest_events_stored_total") == stored["events"],
        "spans_exactly_once": exactly_once(s, stored["spans"], stored["spans_unique"]),
        "error_rate": errors <= args.max_error_rate * total,
        "memory_flat": memory["verdict"] == "flat",
    }
    result: dict[str, Any] = {
        "config": {
            "duration_s": args.duration,
            "events_per_second": args.events_per_second,
            "otlp_spans_per_second": args.otlp_spans_per_second,
            "readers": args.readers,
            "reads_per_second": args.reads_per_second,
            "event_senders": args.event_senders,
            "otlp_senders": args.otlp_senders,
            "event_body_sizes": list(EVENT_BODY_SIZES),
            "span_body_sizes": list(SPAN_BODY_SIZES),
            "resend_every": args.resend_every,
            "sample_every_s": args.sample_every,
            "rss_growth_limit": args.rss_growth_limit,
            "max_error_rate": args.max_error_rate,
            "token": bool(args.token),
            "seed": args.seed,
        },
        "load_s": round(seconds, 1),
        "requests": requests,
        "requests_total": total,
        "errors": errors,
        "backpressure": sum(k["backpressure"] for k in requests.values()),
        "events": e,
        "spans": s,
        "stored": stored,
        "memory": memory,
        "over_time": over_time(done.samples, max(args.sample_every, args.duration / 10)),
        "samples": [asdict(x) for x in done.samples],
        "cpu_cores": {
            "server": round(server_cpu, 3) if server_cpu is not None else None,
            "client": round(client_cpu, 3) if client_cpu is not None else None,
        },
        "server_peak_rss_mib": round(peak_rss / MiB, 1) if peak_rss else None,
        "server_writer": writer,
        "server_exit_code": code,
        "server_stop_s": round(stop_s, 2),
        "server_log": log_problems(server_log),
        "checks": checks,
        "passed": all(checks.values()),
        # Not a check: on a shared machine the server may not get the CPU the targets need.
        "targets_held": e["sent_per_s"] >= TARGET_HELD * args.events_per_second
        and s["sent_per_s"] >= TARGET_HELD * args.otlp_spans_per_second,
        "machine": {**machine_info(), "loadavg_1min_start_end": done.loadavg},
        "command": shlex.join(sys.orig_argv),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "total_s": round(time.monotonic() - started, 1),
    }
    write_json(args.out, result)
    print(markdown(result))
    log(f"wrote {args.out}")
    failed = [name for name, held in checks.items() if not held]
    if failed:
        log(f"FAILED checks: {', '.join(failed)}")
        return 1
    log("all checks held")
    return 0


def positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError("must be positive")
        return value

    return parse


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Load test: one `flowsight serve` process under a bounded mix of event, OTLP and "
        "read requests for a fixed time, sampling its memory; then checks that every accepted "
        "event and span is stored exactly once. Prints a markdown table to stdout, progress to "
        "stderr, and writes a JSON result.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--duration", type=positive(float), default=300.0, help="seconds of load")
    p.add_argument(
        "--events-per-second",
        type=positive(float),
        default=5000.0,
        help="target rate of new lifecycle events (resends come on top)",
    )
    p.add_argument(
        "--otlp-spans-per-second", type=positive(float), default=2000.0, help="target rate of new spans"
    )
    p.add_argument(
        "--readers", type=int, choices=range(0, 65), default=4, metavar="N", help="reader threads (0 to 64)"
    )
    p.add_argument(
        "--reads-per-second",
        type=positive(float),
        default=4.0,
        help="reads per second of all readers together; each reader reads at an even pace",
    )
    p.add_argument(
        "--event-senders",
        type=positive(int),
        default=32,
        help="threads posting events: the most event requests in flight when the server falls behind "
        "(the server's writer merges what is waiting, so fewer in flight means smaller commits)",
    )
    p.add_argument("--otlp-senders", type=positive(int), default=16, help="threads posting spans")
    p.add_argument(
        "--resend-every",
        type=non_negative,
        default=20,
        help="one request in this many resends an earlier body, to exercise dedup (0: no resends)",
    )
    p.add_argument(
        "--sample-every", type=positive(float), default=5.0, help="seconds between RSS and CPU samples"
    )
    p.add_argument(
        "--rss-growth-limit",
        type=positive(float),
        default=0.10,
        help='memory is "flat" when the mean RSS of the last third of the load is less than this '
        "fraction above the mean of the middle third",
    )
    p.add_argument(
        "--max-error-rate",
        type=float,
        default=0.0,
        help="largest share of requests that may fail (non-2xx other than 429/503, or no answer)",
    )
    p.add_argument("--token", help="bearer token sent as `Authorization: Bearer <token>` on every request")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result file")
    p.add_argument("--keep", action="store_true", help="keep the temporary data directory (and server.log)")
    p.add_argument(
        "--timeout",
        type=positive(float),
        default=None,
        help="seconds after which everything is killed and the run exits with 124 (none: --duration + 600)",
    )
    p.add_argument("--seed", type=int, default=20261126, help="seed of the generated load")
    return p


def main(argv: list[str] | None = None) -> int:
    return load_test(parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
