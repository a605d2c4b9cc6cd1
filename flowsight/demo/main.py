"""``flowsight demo``: the service on the embedded database and the simulated retailer, in one
process, until Ctrl-C (or the duration, or the order count)."""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import uvicorn

from flowsight.clock import FixedClock
from flowsight.demo.runner import Demo, DemoOptions
from flowsight.settings import Settings
from flowsight.store import Store

DEMO_DATABASE = "flowsight_demo"


class ServiceThread:
    """uvicorn serving ``app`` on a thread of this process."""

    def __init__(self, app: Any, host: str, port: int):
        self.server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        )
        self.thread = threading.Thread(target=self.server.run, name="service", daemon=True)

    def start(self, timeout: float = 120.0) -> ServiceThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the service did not start (is the port free?)")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@dataclass
class Running:
    demo: Demo
    service: ServiceThread
    store: Store
    url: str
    owns_store: bool = True

    def close(self) -> None:
        self.demo.close()
        self.service.stop()
        if self.owns_store:
            self.store.close()


def start(
    settings: Settings,
    options: DemoOptions,
    *,
    fresh: bool = True,
    out: TextIO = sys.stderr,
    store: Store | None = None,
    start_at: datetime | None = None,
) -> Running:
    """Start the service (database ``flowsight_demo``, emptied unless ``fresh`` is False) and the
    simulation; the caller backfills, runs it live (:meth:`Demo.run`) and closes it. ``store``
    may be given (an engine this process already holds); it is then left open. ``start_at`` is
    the simulated time the live run starts from (default: now)."""
    from flowsight.app import build_services, create_app, open_store
    from flowsight.demo.api import router

    settings = settings.model_copy(update={"database": DEMO_DATABASE, "evaluation_interval_seconds": 0})
    owned = store is None
    if store is None:
        store = open_store(settings)
    if fresh:
        store.command(f"DROP DATABASE IF EXISTS {DEMO_DATABASE} SYNC")
    clock = FixedClock(start_at or datetime.now(UTC).replace(microsecond=0))
    services = build_services(settings, store=store, clock=clock)
    holder: dict[str, Demo] = {}
    app = create_app(services, extra_routers=[router(lambda: holder.get("demo"))])
    service = ServiceThread(app, settings.host, settings.port).start()
    url = f"http://{settings.host}:{settings.port}"
    demo = Demo(services, url, clock, options, out)
    holder["demo"] = demo
    demo.say(f"flowsight is at {url} (overview /, alerts /alerts, demo /demo); Ctrl-C stops")
    return Running(demo, service, store, url, owned)


def run(
    settings: Settings, options: DemoOptions, scenario: str | None = None, out: TextIO = sys.stderr
) -> int:
    running = start(settings, options, out=out)
    demo = running.demo
    stop = threading.Event()

    def interrupted(signum: int, frame: Any) -> None:
        # The first Ctrl-C stops the loops between ticks, so no ClickHouse call is cut off
        # halfway (one cut off inside the engine's lock would hang the shutdown); a second is
        # the usual interrupt.
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, interrupted) if in_main else None
    try:
        demo.backfill(stop)
        if scenario and not stop.is_set():
            demo.trigger(scenario)
        if not stop.is_set():
            demo.say(f"live at {options.speed:g}x: a simulated hour every {3600 / options.speed:g} s")
            demo.run(stop)
        if stop.is_set():
            demo.say("stopping")
    except KeyboardInterrupt:
        demo.say("stopping")
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
        stop.set()
        demo.progress("stopped", every_s=0)
        running.close()
    return 0


def load(
    target: str,
    options: DemoOptions,
    out: TextIO = sys.stderr,
    *,
    pregenerate: bool = False,
    connections: int = 8,
) -> dict[str, float]:
    """The simulator as a load generator: send ``options.duration_s`` of simulated traffic to a
    service already running at ``target``, as fast as it takes it; returns what was sent.

    ``pregenerate`` simulates everything first and then sends the lifecycle events as NDJSON
    batches of 1,000 over ``connections`` keep-alive connections, so the generator's own Python
    does not compete with the service while it is measured (rates up to the collector's limit)."""
    if pregenerate:
        return _load_pregenerated(target, options, out, connections)

    sink, sim, end = _simulation(target, options, options.spans)
    started = time.monotonic()
    last = started
    while sim.now < end and (options.max_orders is None or sim.counters.orders < options.max_orders):
        sim.advance(min(end, sim.now + 15 * 60))
        sink.flush_events()
        if time.monotonic() - last > 3:
            last = time.monotonic()
            rate = sink.counters.events / (last - started)
            print(
                f"[load] {sink.counters.events:,} events, {sink.counters.spans:,} spans, {rate:,.0f} events/s",
                file=out,
                flush=True,
            )
    sink.close()
    seconds = time.monotonic() - started
    result = {
        "seconds": seconds,
        "orders": float(sim.counters.orders),
        "events": float(sink.counters.events + sink.counters.logs),
        "spans": float(sink.counters.spans),
        "events_per_s": (sink.counters.events + sink.counters.logs) / seconds,
        "spans_per_s": sink.counters.spans / seconds,
    }
    print(
        f"[load] sent {result['events']:,.0f} events and {result['spans']:,.0f} spans in {seconds:.1f} s: "
        f"{result['events_per_s']:,.0f} events/s, {result['spans_per_s']:,.0f} spans/s",
        file=out,
        flush=True,
    )
    return result


def _load_pregenerated(target: str, options: DemoOptions, out: TextIO, connections: int) -> dict[str, float]:
    from concurrent.futures import ThreadPoolExecutor

    import httpx
    import orjson

    sink, sim, end = _simulation(target, options, spans=False)
    while sim.now < end and (options.max_orders is None or sim.counters.orders < options.max_orders):
        sim.advance(min(end, sim.now + 15 * 60))
    events = sink.pending
    bodies = [b"\n".join(orjson.dumps(e) for e in events[i : i + 1000]) for i in range(0, len(events), 1000)]
    print(
        f"[load] generated {len(events):,} events in {len(bodies):,} batches; sending", file=out, flush=True
    )
    local = threading.local()

    def send(body: bytes) -> int:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=120)
        response = client.post(
            f"{target.rstrip('/')}/v1/events", content=body, headers={"content-type": "application/x-ndjson"}
        )
        response.raise_for_status()
        return int(response.json()["accepted"])

    started = time.monotonic()
    with ThreadPoolExecutor(connections) as pool:
        accepted = sum(pool.map(send, bodies))
    seconds = time.monotonic() - started
    sink.pending.clear()
    sink.close()
    result = {
        "seconds": seconds,
        "orders": float(sim.counters.orders),
        "events": float(accepted),
        "spans": 0.0,
        "events_per_s": accepted / seconds,
        "spans_per_s": 0.0,
    }
    print(
        f"[load] sent {accepted:,} events in {seconds:.1f} s: {accepted / seconds:,.0f} events/s "
        f"over {connections} connections",
        file=out,
        flush=True,
    )
    return result


def _simulation(target: str, options: DemoOptions, spans: bool) -> tuple[Any, Any, float]:
    """A sink to ``target`` and a simulator starting ``duration_s`` (default 1h) before now;
    returns them and the end time (now)."""
    from flowsight.demo.scenarios import Conditions
    from flowsight.demo.simulator import Simulator
    from flowsight.demo.sink import HttpSink
    from flowsight.topology import DEFAULT_TOPOLOGY

    sink = HttpSink(target, spans=spans, seed=options.seed + 1)
    sim = Simulator(options.estate, Conditions(DEFAULT_TOPOLOGY), sink, options.seed)
    end = time.time()
    sim.now = end - (options.duration_s or 3600.0)
    return sink, sim, end
