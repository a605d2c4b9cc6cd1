#!/usr/bin/env python3
"""Timeline latency benchmark: how fast an order's timeline (events, stages and every span of
its traces) is assembled with millions of events and tens of millions of spans stored.

Loads ``--orders`` orders (7 lifecycle events each) and ``--spans`` spans (``--spans-per-trace``
per trace; one trace per order carries ``order.id`` on its root span only, so the rest of each
trace joins through the trace), straight into ``events`` and ``otel_traces`` on the embedded
engine, lets merges settle, then times ``GET /api/orders/{id}/timeline``'s work
(:class:`TimelineReader`) for ``--lookups`` random orders. Progress to stderr, a markdown
table to stdout, JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flowsight import migrations  # noqa: E402
from flowsight.app import MIGRATIONS  # noqa: E402
from flowsight.collector.events import EVENT_SCHEMA  # noqa: E402
from flowsight.collector.otlp import SPAN_SCHEMA  # noqa: E402
from flowsight.collector.timeline import TimelineReader  # noqa: E402
from flowsight.collector.writer import INSERT_SETTINGS  # noqa: E402
from flowsight.ddl import Schema  # noqa: E402
from flowsight.store import Store  # noqa: E402
from flowsight.workflows import DEFAULT_WORKFLOWS, ORDER_TO_CASH  # noqa: E402

START_MS = 1_795_046_400_000  # 2026-11-19T00:00:00Z
WEEK_MS = 7 * 86_400_000
SERVICES = np.array(["oms", "payments", "erp", "middleware", "wms", "shipping", "tax", "crm"])
NAMES = np.array(
    ["POST /orders", "authorize", "reserve", "create sales order", "release", "ship", "invoice", "sync"]
)


def log(message: str) -> None:
    print(f"[timeline {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def rss_mib() -> float:
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def order_ids(orders: np.ndarray) -> np.ndarray:
    return np.char.add("ORD-", orders.astype(str))


def event_chunk(orders: np.ndarray) -> pa.Table:
    stages = np.array([s.name for s in ORDER_TO_CASH.sequence])
    owners = np.array([s.owner for s in ORDER_TO_CASH.sequence])
    k = stages.size
    order_idx = np.repeat(orders, k)
    stage_idx = np.tile(np.arange(k), orders.size)
    ts = START_MS + (order_idx * 7919) % WEEK_MS + stage_idx * 600_000
    ids = order_ids(order_idx)
    n = order_idx.size
    return pa.table(
        {
            "event_id": pa.array(np.char.add(np.char.add(ids, "-"), stage_idx.astype(str))),
            "correlation_id": pa.array(ids),
            "workflow": pa.array(np.full(n, "order_to_cash")),
            "stage": pa.array(stages[stage_idx]),
            "system": pa.array(owners[stage_idx]),
            "occurred_at": pa.array(ts, pa.timestamp("ms", tz="UTC")),
            "status": pa.array(np.full(n, "ok")),
            "channel": pa.array(np.full(n, "web")),
            "trace_id": pa.array(np.full(n, "")),
            "span_id": pa.array(np.full(n, "")),
            "attributes": pa.array([[]] * n, pa.map_(pa.string(), pa.string())),
            "source": pa.array(np.full(n, "bench")),
            "ingested_at": pa.array(np.full(n, START_MS + WEEK_MS), pa.timestamp("ms", tz="UTC")),
        },
        schema=EVENT_SCHEMA,
    )


def span_chunk(traces: np.ndarray, per_trace: int, orders: int) -> pa.Table:
    trace_idx = np.repeat(traces, per_trace)
    span_idx = np.tile(np.arange(per_trace), traces.size)
    n = trace_idx.size
    trace_ids = np.char.zfill(np.char.mod("%x", trace_idx), 32)
    span_ids = np.char.zfill(np.char.mod("%x", trace_idx * per_trace + span_idx + 1), 16)
    parents = np.where(span_idx == 0, "", np.char.zfill(np.char.mod("%x", trace_idx * per_trace + 1), 16))
    order_of_trace = trace_idx % orders  # each order's traces; trace < orders is its main one
    start_ns = (START_MS + (order_of_trace * 7919) % WEEK_MS + (trace_idx // orders) * 60_000) * 1_000_000
    start_ns = start_ns + span_idx * 1_000_000
    correlated = (span_idx == 0) & (trace_idx < orders)
    correlation = np.where(correlated, order_ids(order_of_trace), "")
    empty_lists = pa.array([[]] * n, pa.list_(pa.string()))
    columns: dict[str, Any] = {
        "Timestamp": pa.array(start_ns, pa.timestamp("ns", tz="UTC")),
        "TraceId": pa.array(trace_ids),
        "SpanId": pa.array(span_ids),
        "ParentSpanId": pa.array(parents),
        "TraceState": pa.array(np.full(n, "")),
        "SpanName": pa.array(NAMES[span_idx % NAMES.size]),
        "SpanKind": pa.array(np.full(n, "Server")),
        "ServiceName": pa.array(SERVICES[span_idx % SERVICES.size]),
        "ResourceAttributes": pa.array([[]] * n, pa.map_(pa.string(), pa.string())),
        "ScopeName": pa.array(np.full(n, "bench")),
        "ScopeVersion": pa.array(np.full(n, "")),
        "SpanAttributes": pa.array(
            [[("order.id", c)] if c else [] for c in correlation.tolist()], pa.map_(pa.string(), pa.string())
        ),
        "Duration": pa.array(np.full(n, 2_000_000, dtype=np.uint64)),
        "StatusCode": pa.array(np.full(n, "Ok")),
        "StatusMessage": pa.array(np.full(n, "")),
        "Events.Timestamp": pa.array([[]] * n, pa.list_(pa.timestamp("ns", tz="UTC"))),
        "Events.Name": empty_lists,
        "Events.Attributes": pa.array([[]] * n, pa.list_(pa.map_(pa.string(), pa.string()))),
        "Links.TraceId": empty_lists,
        "Links.SpanId": empty_lists,
        "Links.TraceState": empty_lists,
        "Links.Attributes": pa.array([[]] * n, pa.list_(pa.map_(pa.string(), pa.string()))),
        "CorrelationId": pa.array(correlation),
    }
    return pa.table(columns, schema=SPAN_SCHEMA)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--spans", type=int, default=10_000_000)
    parser.add_argument("--spans-per-trace", type=int, default=8)
    parser.add_argument("--lookups", type=int, default=300)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "timeline.json")
    args = parser.parse_args(argv)
    traces = args.spans // args.spans_per_trace
    with tempfile.TemporaryDirectory(prefix="flowsight-bench-timeline-") as tmp:
        store = Store.connect(f"chdb://{tmp}", "flowsight")
        schema = Schema("flowsight")
        migrations.migrate(store, schema, MIGRATIONS)
        load_started = time.perf_counter()
        step = 100_000
        for start in range(0, args.orders, step):
            chunk = np.arange(start, min(start + step, args.orders))
            store.insert_arrow(schema.table("events"), event_chunk(chunk), settings=INSERT_SETTINGS)
        log(f"loaded {args.orders * 7:,} events")
        step = max(1, 400_000 // args.spans_per_trace)
        for start in range(0, traces, step):
            chunk = np.arange(start, min(start + step, traces))
            store.insert_arrow(
                schema.table("otel_traces"),
                span_chunk(chunk, args.spans_per_trace, args.orders),
                settings=INSERT_SETTINGS,
            )
            done = min(start + step, traces) * args.spans_per_trace
            if (start // step) % 5 == 0:
                log(f"loaded {done:,}/{traces * args.spans_per_trace:,} spans")
        load_s = time.perf_counter() - load_started
        settle_started = time.perf_counter()
        for table in ("events", "otel_traces", "trace_correlations", "trace_spans"):
            store.command(f"OPTIMIZE TABLE {schema.table(table)} FINAL")
        settle_s = time.perf_counter() - settle_started
        spans_stored = store.rows(f"SELECT count() FROM {schema.table('otel_traces')}")[0][0]
        events_stored = store.rows(f"SELECT count() FROM {schema.table('events')}")[0][0]
        log(f"stored {events_stored:,} events and {spans_stored:,} spans; timing {args.lookups} timelines")
        reader = TimelineReader(store, schema)
        now = datetime(2026, 11, 26, tzinfo=UTC)
        rng = random.Random(args.seed)
        latencies = []
        span_counts = []
        for _ in range(args.lookups):
            order = f"ORD-{rng.randrange(args.orders)}"
            begin = time.perf_counter()
            doc = reader.timeline(order, DEFAULT_WORKFLOWS, now)
            latencies.append(time.perf_counter() - begin)
            span_counts.append(len(doc["spans"]))
        store.close()
    latencies.sort()
    expected = args.spans_per_trace * (traces // args.orders + (1 if traces % args.orders else 0))
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    print(
        f"| Timeline of a random order, {events_stored:,} events and {spans_stored:,} spans stored | value |"
    )
    print("|---|---:|")
    print(f"| p50 | {p50:.1f} ms |")
    print(f"| p99 | {p99:.1f} ms |")
    print(f"| spans per timeline (min / max) | {min(span_counts)} / {max(span_counts)} |")
    print(
        f"| load (events and spans, views included) | {(events_stored + spans_stored) / load_s:,.0f} rows/s |"
    )
    print(f"| peak RSS of this process | {rss_mib():,.0f} MiB |")
    print(f"\nCommand: `python bench/timeline.py --orders {args.orders} --spans {args.spans}`")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "orders": args.orders,
                "events": events_stored,
                "spans": spans_stored,
                "lookups": args.lookups,
                "p50_ms": p50,
                "p99_ms": p99,
                "spans_per_timeline": [min(span_counts), max(span_counts)],
                "expected_spans_per_order_at_most": expected,
                "load_s": load_s,
                "settle_s": settle_s,
                "command": " ".join(sys.argv),
            },
            indent=2,
        )
    )
    if min(span_counts) < args.spans_per_trace:
        log(f"FAILED: a timeline had {min(span_counts)} spans, fewer than one whole trace")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
