#!/usr/bin/env python3
"""OTLP benchmark: spans over OTLP/HTTP (protobuf, or JSON for comparison) into one server.

One run, three steps:

1. generate: N spans as ``ExportTraceServiceRequest`` bodies of ``--batch`` spans, built with the
   opentelemetry-proto classes and serialized *before* timing. Each order is one trace of 3 to 8
   spans (7 on average) over five services (oms, payments, erp, wms, shipping: one resource each
   per body); every span has 4 to 8 attributes including ``order.id``, about one in six has
   events, 2% of the orders fail.
2. http: one ``flowsight serve`` process on a fresh data directory; client threads, each with
   its own keep-alive connection, POST the bodies to ``/v1/traces``. The CPU time of each server
   thread is read from /proc; when the rate at 10% of the run is below the goal, the server is
   also profiled with py-spy (with native frames, which show the garbage collector) for 10 s.
3. verify: the server is stopped (SIGTERM) and its chDB directory is opened here to check that
   ``otel_traces`` holds every span exactly once.

Results go to stdout (a markdown table) and to a JSON file; progress goes to stderr.
Run ``python bench/otlp.py --help`` for the options and bench/README.md for how to read it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.ingest import (  # noqa: E402
    DATABASE,
    WINDOW_MS,
    WINDOW_START_MS,
    WRITER_SECONDS,
    Aborted,
    Run,
    add_preload_options,
    free_port,
    get,
    log,
    machine_info,
    metric,
    percentile,
    positive,
    preload_store,
    proc_cpu_seconds,
    proc_status,
    run_preload,
    server_log_tail,
    start_server,
    verdict,
    version_of,
    write_json,
)
from bench.ingest import Load as EventLoad  # noqa: E402
from bench.threads import cores_by_name, py_spy, python_threads, thread_ticks  # noqa: E402

GOAL_SPANS_PER_S = 50_000
DEFAULT_OUT = ROOT / "bench" / "results" / "otlp.json"
MiB = 1024 * 1024
MEDIA = {"protobuf": "application/x-protobuf", "json": "application/json"}
PROFILE_SECONDS = 10.0
PRELOAD_SPANS_PER_TRACE = 8
PROFILE_RATE = 20  # samples a second: py-spy pauses the server for each (--native)

# -- span generation -----------------------------------------------------------------------------
# One trace per order, orders evenly over the ingest benchmark's week. Every value comes from a
# hash of (seed, order), so a run is reproducible.

SERVICES = ("oms", "payments", "erp", "wms", "shipping")
SERVICE_VERSIONS = {
    "oms": "4.12.0",
    "payments": "2.7.3",
    "erp": "11.0.2",
    "wms": "6.3.1",
    "shipping": "3.9.0",
}
SCOPES = {
    "oms": ("io.opentelemetry.spring-webmvc-6.0", "2.10.0"),
    "payments": ("opentelemetry.instrumentation.flask", "0.49b0"),
    "erp": ("io.opentelemetry.jdbc", "2.10.0"),
    "wms": ("OpenTelemetry.Instrumentation.AspNetCore", "1.9.0"),
    "shipping": ("@opentelemetry/instrumentation-http", "0.54.0"),
}
LANGUAGES = {"oms": "java", "payments": "python", "erp": "java", "wms": "dotnet", "shipping": "nodejs"}
CHANNELS = ("web", "app", "store", "marketplace")
TIERS = ("standard", "plus", "gold")
PAYMENT_METHODS = ("card", "paypal", "invoice", "klarna")
CARRIERS = ("dhl", "ups", "dpd", "gls", "postnl")
WAREHOUSES = ("DE-HAM-1", "DE-FRA-2", "NL-TIL-1", "PL-POZ-1")


def _requests(n: int, batch: int, seed: int) -> Iterator[tuple[Any, int]]:
    """``n`` spans as ``ExportTraceServiceRequest`` messages of ``batch`` spans (the last may hold
    fewer), with each body's span count."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

    def s(key: str, value: str) -> KeyValue:
        return KeyValue(key=key, value=AnyValue(string_value=value))

    def i(key: str, value: int) -> KeyValue:
        return KeyValue(key=key, value=AnyValue(int_value=value))

    def f(key: str, value: float) -> KeyValue:
        return KeyValue(key=key, value=AnyValue(double_value=value))

    def b(key: str, value: bool) -> KeyValue:
        return KeyValue(key=key, value=AnyValue(bool_value=value))

    resources = {
        service: Resource(
            attributes=[
                s("service.name", service),
                s("service.version", SERVICE_VERSIONS[service]),
                s("service.namespace", "retail"),
                s("deployment.environment.name", "production"),
                s("host.name", f"{service}-{number}.prod.internal"),
                s("telemetry.sdk.language", LANGUAGES[service]),
            ]
        )
        for number, service in enumerate(SERVICES, start=1)
    }
    scopes = {service: InstrumentationScope(name=n, version=v) for service, (n, v) in SCOPES.items()}
    server, client, internal = Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT, Span.SPAN_KIND_INTERNAL
    ok, error = Status(code=Status.STATUS_CODE_OK), Status.STATUS_CODE_ERROR

    def trace(order: int) -> list[tuple[str, Span]]:
        """The spans of one order's trace, as (service, span)."""
        # h: trace id (16 bytes), then the bytes the choices below read; ids: eight span ids.
        h = hashlib.blake2b(b"%d:t:%d" % (seed, order), digest_size=64).digest()
        trace_id = h[:16]
        span_ids = hashlib.blake2b(b"%d:s:%d" % (seed, order), digest_size=64).digest()
        ids = [span_ids[8 * k : 8 * k + 8] for k in range(8)]
        cid = f"ORD-{10_000_000 + order}"
        start = (WINDOW_START_MS + order * WINDOW_MS // max(orders, 1)) * 1_000_000 + h[63] * 1_000_000
        failed = h[62] < 5  # ~2% of orders fail in payments
        retried = h[61] < 40  # ~15% of payment authorizations are retried
        second_pick = h[60] < 128  # half the orders are picked from two zones
        ms = 1_000_000
        spans: list[tuple[str, Span]] = []

        def add(
            service: str, k: int, parent: int | None, name: str, kind: Any, at: int, dur: int, **kw: Any
        ) -> None:
            """One span: ``ids[k]``, child of ``ids[parent]``, ``at`` ms after the order, ``dur`` ms long."""
            span = Span(
                trace_id=trace_id,
                span_id=ids[k],
                parent_span_id=ids[parent] if parent is not None else b"",
                name=name,
                kind=kind,
                start_time_unix_nano=start + at * ms,
                end_time_unix_nano=start + (at + dur) * ms,
                **kw,
            )
            spans.append((service, span))

        amount = int.from_bytes(h[56:58], "big") / 100
        add(
            "oms",
            0,
            None,
            "POST /orders",
            server,
            0,
            120 + h[50],
            attributes=[
                s("order.id", cid),
                s("http.request.method", "POST"),
                s("http.route", "/orders"),
                i("http.response.status_code", 502 if failed else 201),
                s("sales.channel", CHANNELS[h[49] % len(CHANNELS)]),
                s("customer.tier", TIERS[h[48] % len(TIERS)]),
            ],
            status=Status(code=error, message="payment authorization failed") if failed else ok,
        )
        add(
            "oms",
            1,
            0,
            "INSERT orders",
            client,
            3,
            2 + h[47] % 8,
            attributes=[
                s("order.id", cid),
                s("db.system.name", "postgresql"),
                s("db.operation.name", "INSERT"),
                s("db.collection.name", "orders"),
            ],
        )
        payment_events = []
        if retried:
            payment_events.append(
                Span.Event(
                    time_unix_nano=start + 30 * ms,
                    name="retry",
                    attributes=[i("retry.attempt", 1), s("retry.reason", "psp timeout")],
                )
            )
        if failed:
            payment_events.append(
                Span.Event(
                    time_unix_nano=start + 90 * ms,
                    name="exception",
                    attributes=[
                        s("exception.type", "PaymentDeclined"),
                        s("exception.message", f"authorization declined for {cid}"),
                    ],
                )
            )
        add(
            "payments",
            2,
            0,
            "authorize payment",
            server,
            10,
            60 + h[46] // 2,
            attributes=[
                s("order.id", cid),
                s("payment.method", PAYMENT_METHODS[h[45] % len(PAYMENT_METHODS)]),
                f("payment.amount", amount),
                s("payment.currency", "EUR"),
                b("payment.3ds", h[44] < 100),
                i("payment.attempts", 2 if retried else 1),
            ],
            events=payment_events,
            status=Status(code=error, message="declined") if failed else Status(),
        )
        if failed:
            return spans  # the order stops here: 3 spans
        add(
            "erp",
            3,
            0,
            "create sales order",
            server,
            80,
            25 + h[43] % 30,
            attributes=[
                s("order.id", cid),
                s("erp.company_code", "1000"),
                s("erp.document_type", "OR"),
                i("order.items", 1 + h[42] % 9),
                s("erp.sales_org", "DE01"),
            ],
        )
        pick_events = [
            Span.Event(
                time_unix_nano=start + 115 * ms, name="stock reserved", attributes=[i("items", 1 + h[42] % 9)]
            )
        ]
        add(
            "wms",
            4,
            0,
            "pick and pack",
            internal,
            110,
            40 + h[41] % 50,
            attributes=[
                s("order.id", cid),
                s("warehouse.id", WAREHOUSES[h[40] % len(WAREHOUSES)]),
                s("pick.zone", "A" if h[39] < 128 else "B"),
                i("order.items", 1 + h[42] % 9),
            ],
            events=pick_events,
        )
        if second_pick:
            add(
                "wms",
                6,
                4,
                "pick zone B",
                internal,
                130,
                10 + h[38] % 20,
                attributes=[
                    s("order.id", cid),
                    s("warehouse.id", WAREHOUSES[h[40] % len(WAREHOUSES)]),
                    s("pick.zone", "B"),
                    i("pick.lines", 1 + h[37] % 4),
                ],
            )
        weight = 0.2 + h[36] / 10
        add(
            "shipping",
            5,
            4,
            "create label",
            server,
            170,
            30 + h[35] % 40,
            attributes=[
                s("order.id", cid),
                s("shipping.carrier", CARRIERS[h[34] % len(CARRIERS)]),
                s("shipping.method", "express" if h[33] < 40 else "standard"),
                f("parcel.weight_kg", round(weight, 1)),
                b("shipping.signature", h[32] < 60),
                s("shipping.country", "DE"),
                s("server.address", "api.carrier.example"),
                i("server.port", 443),
            ],
            status=ok,
        )
        if h[31] < 128:
            add(
                "shipping",
                7,
                5,
                "POST /labels",
                client,
                175,
                15 + h[30] % 30,
                attributes=[
                    s("order.id", cid),
                    s("http.request.method", "POST"),
                    i("http.response.status_code", 200),
                    s("url.full", "https://api.carrier.example/labels"),
                ],
            )
        return spans

    orders = -(-n // 6)  # an upper bound: traces hold 3 to 8 spans, about 7
    pending: list[tuple[str, Span]] = []
    made = 0

    def body(spans: list[tuple[str, Span]]) -> ExportTraceServiceRequest:
        by_service: dict[str, list[Span]] = {service: [] for service in SERVICES}
        for service, span in spans:
            by_service[service].append(span)
        return ExportTraceServiceRequest(
            resource_spans=[
                ResourceSpans(
                    resource=resources[service],
                    scope_spans=[ScopeSpans(scope=scopes[service], spans=items)],
                    schema_url="https://opentelemetry.io/schemas/1.27.0",
                )
                for service, items in by_service.items()
                if items
            ]
        )

    for order in itertools.count():
        if made >= n:
            break
        spans = trace(order)[: n - made]
        made += len(spans)
        pending += spans
        while len(pending) >= batch:
            yield body(pending[:batch]), batch
            del pending[:batch]
    if pending:
        yield body(pending), len(pending)


_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def _hex_ids(node: Any) -> Any:
    """OTLP/JSON carries trace and span IDs as hex, where protobuf's JSON mapping has base64."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS:
                node[key] = base64.b64decode(value).hex()
            else:
                _hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids(item)
    return node


def otlp_bodies(n: int, batch: int, seed: int, fmt: str) -> tuple[list[bytes], list[int]]:
    """The spans as serialized request bodies of ``batch`` spans, and each body's span count."""
    import orjson
    from google.protobuf import json_format

    bodies: list[bytes] = []
    counts: list[int] = []
    made = 0
    next_report = n / 5
    for request, count in _requests(n, batch, seed):
        if fmt == "protobuf":
            bodies.append(request.SerializeToString())
        else:
            # The OTLP/HTTP JSON encoding: protobuf's JSON mapping (lowerCamelCase names, 64-bit
            # integers as strings), enums as integers and IDs as hex.
            data = json_format.MessageToDict(request, use_integers_for_enums=True)
            bodies.append(orjson.dumps(_hex_ids(data)))
        counts.append(count)
        made += count
        if next_report <= made < n:
            log(f"generate: {made:,}/{n:,} spans")
            next_report += n / 5
    return bodies, counts


# -- HTTP phase ----------------------------------------------------------------------------------


class Load(EventLoad):
    """The client threads' shared state, POSTing export requests to ``/v1/traces``."""

    path = "/v1/traces"
    unit = "spans"

    def __init__(self, bodies: list[bytes], counts: list[int], port: int, fmt: str, timeout: float):
        super().__init__(bodies, counts, port, timeout, MEDIA[fmt])
        self.fmt = fmt

    def rejected_spans(self, data: bytes) -> tuple[int, str]:
        """``partial_success`` of an ``ExportTraceServiceResponse``."""
        if self.fmt == "protobuf":
            from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

            answer = ExportTraceServiceResponse.FromString(data)
            return answer.partial_success.rejected_spans, answer.partial_success.error_message
        import orjson

        partial = orjson.loads(data).get("partialSuccess", {})
        return int(partial.get("rejectedSpans", 0)), partial.get("errorMessage", "")

    def count(self, i: int, data: bytes) -> tuple[int, int, int, str]:
        rejected, message = self.rejected_spans(data)
        error = f"request {i}: {rejected} span(s) rejected: {message[:300]}" if rejected else ""
        return self.counts[i] - rejected, 0, rejected, error


class Profiler:
    """py-spy on the server for a few seconds, started once from the clients' progress."""

    def __init__(self, run: Run, pid: int, out: Path, seconds: float):
        self.run = run
        self.pid = pid
        self.out = out
        self.seconds = seconds
        self.started_at: float | None = None  # perf_counter
        self.child: subprocess.Popen[bytes] | None = None
        self.error = ""

    def start(self) -> None:
        exe = py_spy()
        if exe is None:
            self.error = "py-spy not found"
            return
        cmd = [exe, "record", "-p", str(self.pid), "-d", f"{self.seconds:g}", "-r", str(PROFILE_RATE)]
        # --native shows the time the garbage collector takes (a C frame under a Python one).
        cmd += ["--threads", "--native", "--format", "raw", "-o", str(self.out)]
        log(f"profile: {shlex.join(cmd[1:])}")
        self.started_at = time.perf_counter()
        with self.run.lock:
            self.child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            self.run.children.append(self.child)

    def finish(self) -> dict[str, Any] | None:
        if self.child is None:
            return {"error": self.error} if self.error else None
        try:
            output, _ = self.child.communicate(timeout=self.seconds + 30)
        except subprocess.TimeoutExpired:
            self.child.kill()
            return {"error": "py-spy did not finish"}
        if self.child.returncode != 0 or not self.out.exists():
            return {
                "error": f"py-spy exited with {self.child.returncode}: {output.decode(errors='replace')[-300:]}"
            }
        profile = analyse_profile(self.out.read_text(), self.seconds, PROFILE_RATE)
        counts = re.search(r"Samples: (\d+) Errors: (\d+)", output.decode(errors="replace"))
        if counts:
            profile["py_spy_samples"], profile["py_spy_errors"] = int(counts[1]), int(counts[2])
        return profile


def stop_server(server: subprocess.Popen[bytes], server_log: Path, deadline: float) -> int:
    """SIGTERM, then wait (at most 120 s); the exit code."""
    log("http: stopping the server (SIGTERM)")
    server.send_signal(signal.SIGTERM)
    try:
        code = server.wait(timeout=max(1.0, min(120.0, deadline - time.monotonic())))
    except subprocess.TimeoutExpired:
        server.kill()
        raise Aborted(
            f"the server did not stop within 120 s of SIGTERM:\n{server_log_tail(server_log)}"
        ) from None
    # uvicorn re-raises the signal after a graceful shutdown, so -SIGTERM is a clean exit too.
    if code not in (0, -signal.SIGTERM):
        log(f"WARNING: the server exited with {code}:\n{server_log_tail(server_log)}")
    return code


def http_phase(
    args: argparse.Namespace,
    run: Run,
    data_dir: Path,
    bodies: list[bytes],
    counts: list[int],
    deadline: float,
) -> dict[str, Any]:
    port = free_port()
    server_log = data_dir / "server.log"
    server = start_server(run, data_dir, port, deadline)
    profiler = Profiler(run, server.pid, data_dir / "profile.txt", PROFILE_SECONDS)
    try:
        load = Load(bodies, counts, port, args.format, timeout=max(30.0, deadline - time.monotonic()))

        def on_progress(accepted: int, rate: float) -> None:
            # Once, at the first report (10% of the spans): profile when the goal looks missed.
            load.on_progress = None
            if args.profile == "always" or (args.profile == "auto" and rate < GOAL_SPANS_PER_S):
                profiler.start()

        if args.profile != "never":
            load.on_progress = on_progress
        threads = [
            threading.Thread(target=load.worker, name=f"client-{n}", daemon=True)
            for n in range(args.concurrency)
        ]
        server_cpu_before = proc_cpu_seconds(server.pid)
        threads_before = thread_ticks(server.pid)
        client_cpu_before = time.process_time()
        load.first = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        client_cpu = time.process_time() - client_cpu_before
        server_cpu_after = proc_cpu_seconds(server.pid)
        threads_after = thread_ticks(server.pid)
        names = python_threads(server.pid)
        if load.errors:
            raise Aborted(
                "the HTTP phase failed:\n  "
                + "\n  ".join(load.errors[:10])
                + f"\nserver log:\n{server_log_tail(server_log)}"
            )
        total = sum(counts)
        if load.accepted != total:
            raise Aborted(f"the server accepted {load.accepted} spans, expected {total}")
        first = min(load.starts)
        last = max(load.ends)
        wall = last - first
        latencies = sorted(end - start for start, end in zip(load.starts, load.ends, strict=True))
        profile = profiler.finish()
        if profile is not None and profiler.started_at is not None:
            # The profiler pauses the server for each sample: show the rate while it ran.
            window_end = profiler.started_at + PROFILE_SECONDS
            during = sum(
                c for c, e in zip(counts, load.ends, strict=True) if profiler.started_at <= e < window_end
            )
            profile["window_s"] = [round(profiler.started_at - first, 2), round(window_end - first, 2)]
            profile["spans_per_s_during"] = round(
                during / min(PROFILE_SECONDS, last - profiler.started_at), 1
            )

        status, metrics_text = get(port, "/metrics")
        text = metrics_text.decode() if status == 200 else ""
        commits = metric(text, "flowsight_ingest_commits_total")
        writer_seconds = {step: metric(text, name) for step, name in WRITER_SECONDS.items()}
        peak_rss = proc_status(server.pid, "VmHWM")
        stop_started = time.monotonic()
        code = stop_server(server, server_log, deadline)
        stop_s = time.monotonic() - stop_started
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

    cpu = (
        server_cpu_after - server_cpu_before
        if server_cpu_after is not None and server_cpu_before is not None
        else None
    )
    thread_cores = cores_by_name(threads_before, threads_after, names, wall)
    return {
        "wall_s": wall,
        "spans_per_s": total / wall,
        "requests": len(bodies),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": latencies[-1] * 1000,
        "accepted": load.accepted,
        "rejected": load.rejected,
        "server_commits": int(commits) if commits is not None else None,
        "server_mean_commit_spans": total / commits if commits else None,
        "server_writer_seconds": writer_seconds,
        "server_peak_rss_bytes": peak_rss,
        "server_cpu_s": cpu,
        "client_cpu_s": client_cpu,
        "thread_cpu_cores": thread_cores,
        "server_stop_s": stop_s,
        "server_exit_code": code,
        "profile": profile,
    }


# -- profile -------------------------------------------------------------------------------------
# py-spy's raw format: one line per distinct stack, "thread (TID): NAME;outer (file:line);...;leaf
# (file:line) COUNT". Each sample goes to the innermost frame that names a known step.

STEPS: tuple[tuple[str, str, str], ...] = (
    # (step, pattern of the function's qualified name, pattern of its file)
    ("JSON to message (json_format.ParseDict)", r".", r"protobuf/json_format\.py"),
    ("hex IDs to base64 (_hex_ids_to_base64)", r"^_hex_ids_to_base64", r"collector/otlp\.py"),
    ("decode body (ParseFromString / orjson.loads)", r"^_decode$", r"collector/otlp\.py"),
    (
        "attribute values to text (attributes, any_value_text)",
        r"^(attributes|any_value_text|_plain)(\.|$)",
        r"otlp\.py",
    ),
    ("span checks (_span_problem)", r"^_span_problem$", r"collector/otlp\.py"),
    ("correlation lookup (correlation_of)", r"^correlation_of$", r"collector/otlp\.py"),
    ("per-span column lists (SpanBatch.add_request)", r"^SpanBatch\.add_request", r"collector/otlp\.py"),
    ("lists to Arrow (SpanBatch.to_arrow)", r"^SpanBatch\.to_arrow", r"collector/otlp\.py"),
    ("empty events batch (EventBatch)", r".", r"collector/events\.py"),
    ("span id keys and hashes (span_keys, hash_ids)", r".", r"collector/seen_ids\.py"),
    (
        "span id keys and hashes (span_keys, hash_ids)",
        r"^(span_keys|EventWriter\.submit)$",
        r"collector/writer\.py",
    ),
    ("ClickHouse insert (Store.insert_arrow)", r"^Store\.insert_arrow$", r"flowsight/store\.py"),
    ("dedup (EventWriter._fresh)", r"^EventWriter\._fresh", r"collector/writer\.py"),
    ("response encode", r"^router\.<locals>\.(encode|trace_response)|^encode$", r"collector/otlp_api\.py"),
    ("request body read", r".", r"collector/body\.py"),
    ("uvloop (C: sockets, HTTP parsing)", r"^Runner\.run$", r"asyncio/runners\.py"),
)
WAITS = re.compile(
    r"^(Condition\.wait|Event\.wait|Queue\.get|_worker|BaseSelector\.select|EpollSelector\.select)$"
)
"""Leaf functions of a thread that waits (py-spy does not always tell those from busy ones)."""
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*):(?P<line>\d+)\)$")
_THREAD = re.compile(r"^thread \((?P<tid>\w+)\): (?P<name>.*)$")


def thread_role(name: str) -> str:
    if name == "MainThread":
        return "event loop thread"
    if name == "flowsight-writer":
        return "writer thread"
    return "other threads"


def analyse_profile(raw: str, seconds: float, rate: int) -> dict[str, Any]:
    """Busy share of each thread and time by step, from py-spy's raw (collapsed stacks) output."""
    steps: dict[str, Counter[str]] = {}
    leaves: Counter[str] = Counter()
    waiting = 0  # samples of threads waiting for work
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        head, *frames = stack.split(";")
        m = _THREAD.match(head)
        role = thread_role(m["name"] if m else "")
        # Python frames, outermost first; native ones (no line number) follow the frame calling them.
        python = [i for i, fr in enumerate(frames) if ".py:" in fr or fr.endswith(">)")]
        parsed = [f for f in (_FRAME.match(frames[i]) for i in python) if f is not None]
        below = frames[python[-1] + 1 :] if python else []
        if parsed and WAITS.match(parsed[-1]["func"]):
            waiting += count
            continue
        step = ""
        if "gc_collect_main" in stack:
            step = "Python garbage collector (gc_collect_main)"
        elif below and (below[0].startswith(("pthread_cond_", "take_gil")) or "take_gil" in stack):
            step = "waiting for the GIL"
        for frame in reversed(parsed if not step else []):
            step = next(
                (
                    s
                    for s, func, file in STEPS
                    if re.search(func, frame["func"]) and re.search(file, frame["file"])
                ),
                "",
            )
            if step:
                break
        if not step:
            step = {
                "event loop thread": "FastAPI, Starlette, uvicorn (Python)",
                "writer thread": "writer: other",
            }.get(role, "other threads (evaluator, scheduler)")
        steps.setdefault(role, Counter())[step] += count
        if frames:
            leaves[frames[-1]] += count
    ticks = seconds * rate
    total = sum(sum(c.values()) for c in steps.values())

    def shares(counter: Counter[str]) -> dict[str, float]:
        n = sum(counter.values())
        return {s: round(c / n, 3) for s, c in counter.most_common()} if n else {}

    roles = sorted(steps, key=("event loop thread", "writer thread", "other threads").index)
    return {
        "seconds": seconds,
        "rate_hz": rate,
        "samples": total,
        "waiting_samples": waiting,
        "thread_busy": {role: round(sum(steps[role].values()) / ticks, 3) for role in roles},
        "share_by_thread_and_step": {role: shares(steps[role]) for role in roles},
        "top_leaf_frames": {fr: round(c / total, 3) for fr, c in leaves.most_common(12)} if total else {},
    }


def explain(result: dict[str, Any]) -> str:
    """A short reading of the run: what bounds the rate and where the server's time goes."""
    h = result["http_detail"]
    cores = h["thread_cpu_cores"]
    loop = cores.get("MainThread", 0.0)
    writer = cores.get("flowsight-writer", 0.0)
    others = sum(cores.values()) - loop - writer
    text = (
        f"Server CPU per 1,000 spans: {result['server_cpu_ms_per_1000_spans']:.0f} ms, of which the event loop "
        f"thread (body read, decode, rows, Arrow, hashing, HTTP) {result['event_loop_cpu_ms_per_1000_spans']:.0f} ms; "
        f"during the run it used {loop:.2f} cores, the writer thread {writer:.2f}, other threads (chDB, "
        f"scheduler) {others:.2f}. Decoding runs on the event loop thread, so one core bounds the rate at "
        f"about {result['event_loop_bound_spans_per_s']:,.0f} spans/s. "
    )
    load = result["load_average"]["before"]
    cpus = result["machine"]["cpus_usable"]
    profile = h.get("profile") or {}
    busy = profile.get("thread_busy", {}).get("event loop thread")
    if loop < 0.8 and load > cpus:
        text += (
            f"That thread did not get a whole core: the machine was shared (load average {load:.1f} on "
            f"{cpus} CPUs)"
            + (f"; py-spy found it runnable {busy:.0%} of the time" if busy else "")
            + ", so the measured rate is also bounded by CPU contention. "
        )
    elif loop >= 0.8:
        text += "That thread was saturated. "
    by_thread = profile.get("share_by_thread_and_step", {})
    loop_steps = by_thread.get("event loop thread", {})
    if loop_steps:
        top = ", ".join(f"{s} {v:.0%}" for s, v in list(loop_steps.items())[:7] if v >= 0.01)
        text += f"py-spy, event loop thread by step: {top}."
    writer_steps = by_thread.get("writer thread", {})
    if writer_steps:
        top = ", ".join(f"{s} {v:.0%}" for s, v in list(writer_steps.items())[:2] if v >= 0.01)
        text += f" Writer thread: {top}."
    return text


# -- verify --------------------------------------------------------------------------------------


def verify(data_dir: Path) -> dict[str, int]:
    """Counts in the stopped server's chDB directory (opened in this process)."""
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=f"chdb://{data_dir / 'clickhouse'}")
    try:
        count, unique, correlated, services = client.query(
            "SELECT count(), uniqExact(TraceId, SpanId), countIf(CorrelationId != ''), "
            f"uniqExact(ServiceName) FROM {DATABASE}.otel_traces"
        ).result_rows[0]
    finally:
        client.close()
    return {
        "stored": int(count),
        "unique_ids": int(unique),
        "with_correlation_id": int(correlated),
        "services": int(services),
    }


# -- preload -------------------------------------------------------------------------------------


def preload_only(args: argparse.Namespace) -> int:
    """Store ``--preload`` spans in a fresh server data directory, straight into ``otel_traces``
    (its views fill the trace lookups), traces of 8 spans as bench/timeline.py makes them, each
    its own order's, before the server starts."""
    import numpy as np

    from bench.timeline import span_chunk

    traces = -(-args.preload // PRELOAD_SPANS_PER_TRACE)

    def chunks() -> Iterator[Any]:
        stored, step = 0, 50_000
        for first in range(0, traces, step):
            chunk = span_chunk(np.arange(first, min(first + step, traces)), PRELOAD_SPANS_PER_TRACE, traces)
            chunk = chunk.slice(0, args.preload - stored)
            stored += chunk.num_rows
            yield chunk

    return preload_store(Path(args.data_dir), "otel_traces", chunks(), args.preload, "spans")


def preload_phase(args: argparse.Namespace, data_dir: Path, deadline: float) -> int:
    """Run :func:`preload_only` in its own process (chDB opens one directory per process)."""
    return run_preload(Path(__file__), ["--preload", str(args.preload)], data_dir, deadline, "spans")


# -- report --------------------------------------------------------------------------------------


def markdown(result: dict[str, Any]) -> str:
    h = result["http_detail"]
    rss = result["server_peak_rss_mib"]
    fmt = result["format"]
    goal_label = f">= {GOAL_SPANS_PER_S:,}" + ("" if fmt == "protobuf" else " (set for protobuf)")
    rows = [
        (
            "Spans (format, batch, client connections)",
            f"{result['spans']:,} ({fmt}, {result['batch']:,}, {result['concurrency']})",
            "",
            "",
        ),
        ("Bodies", f"{h['requests']:,}, {result['body_bytes_per_span']:.0f} bytes/span", "", ""),
        (
            "OTLP/HTTP ingest",
            f"{result['spans_per_s']:,.0f} spans/s ({h['wall_s']:.2f} s)",
            goal_label,
            result["verdict"],
        ),
        ("Request latency p50 / p99", f"{result['p50_ms']:.1f} / {result['p99_ms']:.1f} ms", "", ""),
        (
            "Server commits (mean spans per commit)",
            f"{h['server_commits']} ({h['server_mean_commit_spans']:,.0f})" if h["server_commits"] else "n/a",
            "",
            "",
        ),
        (
            "Stored in otel_traces (unique TraceId, SpanId)",
            f"{result['stored_count']:,} ({result['verify']['unique_ids']:,})",
            f"= {result['spans'] + result['preloaded']:,}"
            + (f" ({result['preloaded']:,} preloaded)" if result["preloaded"] else ""),
            "OK" if result["stored_ok"] else "FAIL",
        ),
        ("Server peak RSS", f"{rss:,.0f} MiB" if rss is not None else "n/a", "", ""),
        (
            "CPU during the run: server / client",
            f"{result['server_cpu_cores']:.2f} / {result['client_cpu_cores']:.2f} cores"
            if result["server_cpu_cores"] is not None
            else "n/a",
            f"of {result['machine']['cpus_usable']}",
            "",
        ),
        (
            "Server CPU per 1,000 spans",
            f"{result['server_cpu_ms_per_1000_spans']:.1f} ms"
            if result["server_cpu_ms_per_1000_spans"] is not None
            else "n/a",
            "",
            "",
        ),
        (
            "Server threads (cores)",
            ", ".join(f"{name} {cores:.2f}" for name, cores in h["thread_cpu_cores"].items()) or "n/a",
            "",
            "",
        ),
    ]
    out = ["| Measure | Value | Goal | |", "|---|---:|---|---|"]
    out += [f"| {a} | {b} | {c} | {e} |" for a, b, c, e in rows]
    profile = h.get("profile")
    if profile and "share_by_thread_and_step" in profile:
        window = profile.get("window_s", [0, 0])
        out += [
            "",
            f"Server profile (py-spy, {profile['rate_hz']} Hz, {window[0]:.0f}-{window[1]:.0f} s into the run, "
            f"{profile.get('spans_per_s_during', 0):,.0f} spans/s meanwhile); busy: "
            + ", ".join(f"{t} {v:.0%}" for t, v in profile["thread_busy"].items()),
            "",
            "| Thread | Step | Share of the thread's samples |",
            "|---|---|---:|",
        ]
        for role, steps in profile["share_by_thread_and_step"].items():
            out += [f"| {role} | {s} | {v:.0%} |" for s, v in steps.items() if v >= 0.01]
    elif profile:
        out += ["", f"Profile: {profile.get('error')}"]
    if result["profile"]:
        out += ["", f"Where the time goes: {result['profile']}"]
    m = result["machine"]
    load_before, load_after = result["load_average"]["before"], result["load_average"]["after"]
    out += [
        "",
        f"Machine: {m['nproc']} CPUs, Python {m['python']}, protobuf {m['protobuf']} ({m['protobuf_backend']}), "
        f"chdb {m['chdb']}; load average {load_before:.1f} before, {load_after:.1f} after the run.",
        f"Command: `{result['command']}`",
    ]
    return "\n".join(out)


def benchmark(args: argparse.Namespace) -> int:
    run = Run(args.keep)
    started = time.monotonic()
    deadline = started + args.timeout
    timer = run.watchdog(args.timeout)
    load_before = os.getloadavg()[0]
    try:
        log(f"generate: {args.spans:,} spans as {args.format} bodies of {args.batch:,}")
        gen_started = time.perf_counter()
        bodies, counts = otlp_bodies(args.spans, args.batch, args.seed, args.format)
        size = sum(map(len, bodies))
        gen_s = time.perf_counter() - gen_started
        log(
            f"generate: {len(bodies):,} bodies, {size / MiB:,.1f} MiB ({size / args.spans:.0f} bytes/span) "
            f"in {gen_s:.1f} s"
        )
        http_dir = run.tempdir("flowsight-bench-otlp-")
        preloaded = preload_phase(args, http_dir, deadline) if args.preload else 0
        h = http_phase(args, run, http_dir, bodies, counts, deadline)
        del bodies
        log("verify: opening the server's chDB directory")
        stored = verify(http_dir)
    except Aborted as exc:
        log(f"FAILED: {exc}")
        run.cleanup()
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        run.cleanup()
        return 130
    finally:
        timer.cancel()

    stored_ok = stored["stored"] == args.spans + preloaded == stored["unique_ids"]
    loop_cpu_s = h["thread_cpu_cores"].get("MainThread", 0.0) * h["wall_s"]
    rss = h["server_peak_rss_bytes"]
    machine = machine_info()
    from google.protobuf.internal import api_implementation

    machine |= {
        "protobuf": version_of("protobuf"),
        "protobuf_backend": api_implementation.Type(),
        "opentelemetry_proto": version_of("opentelemetry-proto"),
    }
    result: dict[str, Any] = {
        "spans": args.spans,
        "preloaded": preloaded,
        "batch": args.batch,
        "concurrency": args.concurrency,
        "format": args.format,
        "spans_per_s": round(h["spans_per_s"], 1),
        "p50_ms": round(h["p50_ms"], 2),
        "p99_ms": round(h["p99_ms"], 2),
        "server_peak_rss_mib": round(rss / MiB, 1) if rss is not None else None,
        "server_cpu_cores": round(h["server_cpu_s"] / h["wall_s"], 2)
        if h["server_cpu_s"] is not None
        else None,
        "client_cpu_cores": round(h["client_cpu_s"] / h["wall_s"], 2),
        "server_cpu_ms_per_1000_spans": round(h["server_cpu_s"] * 1e6 / args.spans, 1)
        if h["server_cpu_s"] is not None
        else None,
        "event_loop_cpu_ms_per_1000_spans": round(loop_cpu_s * 1e6 / args.spans, 1),
        "event_loop_bound_spans_per_s": round(args.spans / loop_cpu_s) if loop_cpu_s else None,
        "stored_count": stored["stored"],
        "stored_ok": stored_ok,
        "goal": GOAL_SPANS_PER_S,
        "verdict": verdict(h["spans_per_s"] >= GOAL_SPANS_PER_S),
        "profile": None,
        "body_bytes_per_span": round(size / args.spans, 1),
        "generate_s": round(gen_s, 1),
        "http_detail": h,
        "verify": stored,
        "load_average": {"before": load_before, "after": os.getloadavg()[0]},
        "machine": machine,
        "command": shlex.join(sys.orig_argv),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "total_s": round(time.monotonic() - started, 1),
    }
    if result["verdict"] == "MISS" or h["profile"]:
        result["profile"] = explain(result)
    write_json(args.out, result)
    print(markdown(result))
    log(f"wrote {args.out}")
    run.cleanup()
    if not stored_ok:
        log(
            f"FAILED: stored counts {stored} do not match {args.spans:,} spans and {preloaded:,} preloaded, "
            "each stored exactly once"
        )
        return 1
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="OTLP benchmark: ExportTraceServiceRequest bodies over OTLP/HTTP to one `flowsight "
        "serve` process. Prints a markdown table to stdout, progress to stderr, and writes a JSON result.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--spans", type=positive, default=1_000_000, help="spans to send")
    p.add_argument("--batch", type=positive, default=1000, help="spans per request")
    p.add_argument(
        "--concurrency",
        type=positive,
        default=64,
        help="client threads, each with one keep-alive connection (as the ingest benchmark)",
    )
    p.add_argument(
        "--format",
        choices=sorted(MEDIA),
        default="protobuf",
        help="request encoding: protobuf (application/x-protobuf) or OTLP/JSON (application/json)",
    )
    p.add_argument(
        "--profile",
        choices=("auto", "always", "never"),
        default="auto",
        help=f"profile the server with py-spy for {PROFILE_SECONDS:g} s from 10%% of the run: auto does "
        "so when the rate there is below the goal",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result file")
    p.add_argument(
        "--keep", action="store_true", help="keep the temporary data directory (server log, profile)"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="seconds after which the whole run aborts and kills the server",
    )
    p.add_argument("--seed", type=int, default=20261126, help="seed of the generated spans")
    add_preload_options(p, "spans")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return preload_only(args) if args.preload_only else benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
