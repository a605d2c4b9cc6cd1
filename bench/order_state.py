#!/usr/bin/env python3
"""Flow-health benchmark: how fast the flow figures come out of ``order_state`` with millions of
orders, on the embedded engine.

Generates ``--orders`` order_to_cash orders (each stopped at a random stage, a share of them
complete, some with a failed stage), inserts their events straight into ``events`` (the view
builds ``order_state``), then times each read of :mod:`flowsight.slo.flow` and one whole
evaluation, through the service's own code, best and median of ``--repeat`` runs. Progress goes to stderr, a markdown table to stdout, JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flowsight import migrations  # noqa: E402
from flowsight.app import MIGRATIONS, build_services  # noqa: E402
from flowsight.collector.events import EVENT_SCHEMA  # noqa: E402
from flowsight.collector.loader import INSERT_SETTINGS  # noqa: E402
from flowsight.collector.order_figures import OrderFigures, SliCounts  # noqa: E402
from flowsight.ddl import Schema  # noqa: E402
from flowsight.settings import Settings  # noqa: E402
from flowsight.slo.engine import SloEngine  # noqa: E402
from flowsight.slo.flow import FlowHealth, lag_pairs  # noqa: E402
from flowsight.slo.loading import DEFAULT_SLOS  # noqa: E402
from flowsight.store import Store  # noqa: E402
from flowsight.workflows import DEFAULT_WORKFLOWS, ORDER_TO_CASH  # noqa: E402

NOW_MS = 1_795_651_200_000  # 2026-11-26T00:00:00Z, the "now" every read uses
NOW = datetime(2026, 11, 26, tzinfo=UTC)
CHUNK = 200_000
ORDERS_A_CHUNK = 1_000_000


def log(message: str) -> None:
    print(f"[order-state {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def generate(orders: int, seed: int, first: int = 0) -> tuple[pa.Table, int]:
    """Events of ``orders`` orders numbered from ``first``; returns the table and how many
    orders are complete."""
    rng = np.random.default_rng(seed)
    stages = [s.name for s in ORDER_TO_CASH.sequence]
    owners = [s.owner for s in ORDER_TO_CASH.sequence]
    # Most orders finished; the rest stopped somewhere along the way.
    reached = np.where(rng.random(orders) < 0.7, len(stages), rng.integers(1, len(stages), orders))
    start = NOW_MS - 8 * 3_600_000 - rng.integers(0, 7 * 86_400_000, orders)  # all before NOW
    gaps = rng.integers(1_000, 3_600_000, (orders, len(stages)))
    gaps[:, 0] = 0
    times = start[:, None] + np.cumsum(gaps, axis=1)
    mask = np.arange(len(stages))[None, :] < reached[:, None]
    order_idx, stage_idx = np.nonzero(mask)
    status = np.full(order_idx.size, "ok")
    # A fifth of the unfinished orders failed at the stage they wait for: open exceptions.
    failing = np.flatnonzero((reached < len(stages)) & (rng.random(orders) < 0.2))
    order_idx = np.concatenate([order_idx, failing])
    stage_idx = np.concatenate([stage_idx, reached[failing]])
    status = np.concatenate([status, np.full(failing.size, "failed")])
    times = np.concatenate([times, times[:, -1:]], axis=1)  # a failure's time: the next column
    n = order_idx.size
    ids = np.char.add("ORD-", (order_idx + first).astype(str))
    table = pa.table(
        {
            "event_id": pa.array(
                np.char.add(np.char.add(np.char.add(ids, "-"), stage_idx.astype(str)), status)
            ),
            "correlation_id": pa.array(ids),
            "workflow": pa.array(["order_to_cash"] * n),
            "stage": pa.array(np.array(stages)[stage_idx]),
            "system": pa.array(np.array(owners)[stage_idx]),
            "occurred_at": pa.array(times[order_idx, stage_idx], pa.timestamp("ms", tz="UTC")),
            "status": pa.array(status),
            "channel": pa.array(np.array(["web", "app", "store", "marketplace"])[order_idx % 4]),
            "trace_id": pa.array([""] * n),
            "span_id": pa.array([""] * n),
            "attributes": pa.array([[]] * n, pa.map_(pa.string(), pa.string())),
            "source": pa.array(["bench"] * n),
            "ingested_at": pa.array(np.full(n, NOW_MS), pa.timestamp("ms", tz="UTC")),
        },
        schema=EVENT_SCHEMA,
    )
    return table, int((reached == len(stages)).sum())


def load(store: Store, schema: Schema, orders: int, seed: int) -> tuple[int, int, float]:
    """Generate and insert ``orders`` orders a million at a time (memory stays that of one
    chunk, whatever the scale); returns the events inserted, the orders complete and the
    seconds the inserts took."""
    events = complete = 0
    insert_s = 0.0
    for first in range(0, orders, ORDERS_A_CHUNK):
        table, done = generate(min(ORDERS_A_CHUNK, orders - first), seed + first, first)
        started = time.perf_counter()
        for offset in range(0, table.num_rows, CHUNK):
            store.insert_arrow(schema.table("events"), table.slice(offset, CHUNK), settings=INSERT_SETTINGS)
        insert_s += time.perf_counter() - started
        events, complete = events + table.num_rows, complete + done
        log(
            f"inserted {min(first + ORDERS_A_CHUNK, orders):,}/{orders:,} orders ({events:,} events, {complete:,} complete)"
        )
    return events, complete, insert_s


def settle_merges(store: Store, timeout_s: float = 300.0, quiet_s: float = 0.0) -> None:
    """Wait until no background merge runs (of ``events``, after the bulk load) and none has for
    ``quiet_s``, so what is timed next runs on a settled service, not beside the merges."""
    started = time.perf_counter()
    quiet_since = None
    while time.perf_counter() - started < timeout_s:
        [(running,)] = store.rows("SELECT count() FROM system.merges")
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.perf_counter()
        if quiet_since is not None and time.perf_counter() - quiet_since >= quiet_s:
            break
        time.sleep(0.5)
    log(f"background merges settled in {time.perf_counter() - started:.1f} s")


def reads(figures: OrderFigures, at: datetime, services: Any) -> dict[str, Callable[[], Any]]:
    """The reads timed: the flow-health pieces for order_to_cash, and whole evaluations; the
    last is the service's own evaluation (SLOs, flow health and alerts in their shared reads,
    and the snapshot written), as the scheduler runs it."""
    engine = SloEngine(SliCounts(figures.store, figures.schema))
    return {
        "funnel, completion and stuck orders (one pass)": lambda: figures.summary(ORDER_TO_CASH, at),
        "open exceptions with aging": lambda: figures.open_exceptions(ORDER_TO_CASH, at),
        "stuck-order listing (first page of 100, longest waiting first)": lambda: figures.stuck_orders(
            ORDER_TO_CASH, at, stages=None, limit=100, offset=0
        )[0],
        "stage-to-stage lag percentiles": lambda: figures.lag_quantiles(
            ORDER_TO_CASH, lag_pairs(ORDER_TO_CASH), at
        ),
        "whole flow health (both workflows, ingest lag)": lambda: FlowHealth(figures).evaluate(
            DEFAULT_WORKFLOWS, at
        ),
        "default SLOs (8, every burn window)": lambda: engine.evaluate(DEFAULT_SLOS, DEFAULT_WORKFLOWS, at),
        "full evaluation (default SLOs, flow health and alerts, as the service runs it)": lambda: (
            services.evaluator.evaluate(at)["flow"]
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--orders", type=int, default=1_000_000, help="orders to generate (default 1,000,000)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs of each read (default 5)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "order_state.json")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="flowsight-bench-state-") as tmp:
        store = Store.connect(f"chdb://{tmp}", "flowsight")
        schema = Schema("flowsight")
        migrations.migrate(store, schema, MIGRATIONS)
        services = build_services(
            Settings(data_dir=Path(tmp), database="flowsight", evaluation_interval_seconds=0), store=store
        )
        events, complete, insert_s = load(store, schema, args.orders, args.seed)
        parts = store.rows(
            "SELECT count() FROM system.parts WHERE database = {db:String} AND table = 'order_state' AND active",
            {"db": schema.database},
        )[0][0]
        state_rows = store.rows(f"SELECT count() FROM {schema.table('order_state')}")[0][0]
        results: dict[str, Any] = {}
        for phase in ("as inserted", "merged"):
            if phase == "merged":
                store.command(f"OPTIMIZE TABLE {schema.table('order_state')} FINAL")
                settle_merges(store)
            for name, read in reads(OrderFigures(store, schema), NOW, services).items():
                timings = []
                answer: Any = None
                for _ in range(args.repeat):
                    begin = time.perf_counter()
                    answer = read()
                    timings.append(time.perf_counter() - begin)
                results[f"{name}, {phase}"] = {
                    "best_ms": min(timings) * 1000,
                    "median_ms": statistics.median(timings) * 1000,
                    "answer": answer
                    if isinstance(answer, dict) and all(isinstance(k, str) for k in answer)
                    else str(answer),
                }
                log(f"{name}, {phase}: median {statistics.median(timings) * 1000:.0f} ms")
        store.close()
    health = results["whole flow health (both workflows, ingest lag), merged"]["answer"]["workflows"][
        "order_to_cash"
    ]
    before = results["whole flow health (both workflows, ingest lag), as inserted"]["answer"]
    if before != results["whole flow health (both workflows, ingest lag), merged"]["answer"]:
        log("FAILED: the evaluation before merging disagrees with the one after")
        return 1
    if health["completed"] != complete or health["in_flight"] + health["completed"] != args.orders:
        log(
            f"FAILED: flow health says {health['completed']} complete, {health['in_flight']} in flight; generated {complete}"
        )
        return 1
    print(
        f"| Read over {args.orders:,} orders ({events:,} events; {state_rows:,} state rows"
        f" in {parts} parts as inserted) | best | median |"
    )
    print("|---|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['best_ms']:.0f} ms | {r['median_ms']:.0f} ms |")
    print(f"\nInsert of the events (view included): {events / insert_s:,.0f} events/s.")
    print(f"Command: `python bench/order_state.py --orders {args.orders}`")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "orders": args.orders,
                "events": events,
                "state_rows": state_rows,
                "insert_s": insert_s,
                "parts_as_inserted": parts,
                "reads": results,
                "command": " ".join(sys.argv),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
