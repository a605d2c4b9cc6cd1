"""Runs the demo: the service on the embedded database, in this process, and the simulated
retailer sending it traffic over HTTP and OTLP, in simulated time.

The service's clock is the simulation's: a :class:`~flowsight.clock.FixedClock` the runner moves
one tick (a simulated minute) at a time, so a day plays in minutes (``speed`` simulated seconds
per wall second) and the backfill plays as fast as it can. The runner evaluates SLOs and alerts
itself, every few simulated minutes, with the simulated time.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from flowsight.clock import FixedClock
from flowsight.demo.estate import Estate
from flowsight.demo.scenarios import SCENARIOS, Active, Conditions
from flowsight.demo.simulator import Simulator
from flowsight.demo.sink import HttpSink

TICK_S = 60.0


@dataclass
class DemoOptions:
    speed: float = 60.0
    """Simulated seconds per wall second in live mode (60: an hour a minute)."""
    orders_per_minute: float = 6.0
    backfill_s: float = 86400.0
    duration_s: float | None = None
    """Simulated time to run live; None runs until stopped."""
    max_orders: int | None = None
    scenarios: tuple[str, ...] = (
        "erp-outage",
        "shipping-degraded",
        "marketplace-batch-delay",
        "refund-backlog",
    )
    first_scenario_after_s: float = 5 * 60.0
    scenario_every_s: float = 3 * 3600.0
    evaluate_every_s: float = 300.0
    backfill_evaluate_every_s: float = 3600.0
    seed: int = 7
    spans: bool = True
    estate: Estate = field(default_factory=Estate)


def _fmt(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")


class Demo:
    """The simulation wired to a running service (``services``, reachable at ``base_url``)."""

    def __init__(
        self,
        services: Any,
        base_url: str,
        clock: FixedClock,
        options: DemoOptions,
        out: TextIO = sys.stderr,
    ):
        self.services = services
        self.clock = clock
        self.options = options
        self.out = out
        self.conditions = Conditions(services.topology)
        self.sink = HttpSink(base_url, spans=options.spans, seed=options.seed + 1)
        self.sim = Simulator(options.estate, self.conditions, self.sink, options.seed)
        self.live_start = clock.now.timestamp()
        self.sim.now = self.live_start
        self.next_scenario = self.live_start + options.first_scenario_after_s
        self.scenario_turn = 0
        self.evaluations = 0
        self._lock = threading.RLock()
        self._last_progress = 0.0

    # -- time ---------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.clock.now.timestamp()

    def _move(self, t: float) -> None:
        self.clock.now = datetime.fromtimestamp(t, UTC)

    def evaluate(self) -> dict[str, Any]:
        self.evaluations += 1
        return dict(self.services.evaluator.evaluate(self.clock.now))

    # -- scenarios ----------------------------------------------------------------------------

    def trigger(self, name: str) -> Active:
        """Start a scenario now (``KeyError`` if there is no such scenario)."""
        with self._lock:
            if name not in SCENARIOS:
                raise KeyError(name)
            entry = self.conditions.start(name, self.now)
            # The schedule waits for it to end before the next one.
            self.next_scenario = max(self.next_scenario, entry.end + self.options.scenario_every_s)
            self.say(f"scenario {name} starts: {SCENARIOS[name].description}")
            return entry

    def _scheduled_scenarios(self) -> None:
        if not self.options.scenarios or self.now < self.next_scenario:
            return
        name = self.options.scenarios[self.scenario_turn % len(self.options.scenarios)]
        self.scenario_turn += 1
        self.trigger(name)

    # -- running ------------------------------------------------------------------------------

    def backfill(self, stop: threading.Event | None = None) -> None:
        """Play ``backfill_s`` of history before now, as fast as it goes, evaluating on the way
        (until ``stop``, when given, is set)."""
        span = self.options.backfill_s
        if span <= 0:
            return
        end = self.live_start
        t = end - span
        self.sim.now = t
        next_eval = t + self.options.backfill_evaluate_every_s
        self.say(f"backfilling {span / 86400:g} days of history ({_fmt(t)} to {_fmt(end)})")
        ticks = 0
        while t < end and not (stop is not None and stop.is_set()):
            t = min(end, t + TICK_S)
            with self._lock:
                self._move(t)
                self.sim.advance(t)
                ticks += 1
                if ticks % 30 == 0 or t >= end:
                    self.sink.flush_events()
                if t >= next_eval or t >= end:
                    self.sink.flush()
                    self.evaluate()
                    # Hourly over the last day (the 24h trend), every 4 hours before it.
                    step = self.options.backfill_evaluate_every_s
                    next_eval += step if end - t <= 86400 else 4 * step
            self.progress(f"backfill {100 * (1 - (end - t) / span):.0f}%")
        self.sink.flush()

    def step(self) -> None:
        """One live tick: a simulated minute of traffic, then an evaluation when one is due."""
        with self._lock:
            t = self.now + TICK_S
            self._move(t)
            self._scheduled_scenarios()
            self.sim.advance(t)
            self.sink.flush_events()
            if int(t - self.live_start) % int(self.options.evaluate_every_s) < TICK_S:
                self.sink.flush_telemetry()  # what an evaluation reads is all in
                self.evaluate()

    def done(self) -> bool:
        o = self.options
        if o.duration_s is not None and self.now >= self.live_start + o.duration_s:
            return True
        return o.max_orders is not None and self.sim.counters.orders >= o.max_orders

    def run(self, stop: threading.Event, paced: bool = True) -> None:
        """Live: tick until ``stop``, the duration or the order count; ``paced`` keeps to
        ``speed`` in wall time, otherwise it runs as fast as it goes."""
        wall_per_tick = TICK_S / self.options.speed if self.options.speed > 0 else 0.0
        next_wall = time.monotonic()
        while not stop.is_set() and not self.done():
            self.step()
            self.progress("live")
            if paced and wall_per_tick:
                next_wall += wall_per_tick
                delay = next_wall - time.monotonic()
                if delay > 0:
                    stop.wait(delay)
                else:
                    next_wall = time.monotonic()

    def close(self) -> None:
        with self._lock:
            self.sink.close()

    # -- reporting ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        c, s = self.sim.counters, self.sink.counters
        return {
            "simulated_time": datetime.fromtimestamp(self.now, UTC).isoformat().replace("+00:00", "Z"),
            "speed": self.options.speed,
            "orders": c.orders,
            "returns": c.returns,
            "orders_by_channel": dict(sorted(c.by_channel.items())),
            "events_sent": s.events,
            "spans_sent": s.spans,
            "log_records_sent": s.logs,
            "evaluations": self.evaluations,
            "scenarios": {
                name: {"description": sc.description, "duration_s": sc.duration_s}
                for name, sc in SCENARIOS.items()
            },
            "active": [
                {"name": a.scenario.name, "ends_in_s": max(0.0, a.end - self.now)}
                for a in self.conditions.current(self.now)
            ],
        }

    def say(self, line: str) -> None:
        print(f"[demo {_fmt(self.now)}] {line}", file=self.out, flush=True)

    def progress(self, phase: str, every_s: float = 3.0) -> None:
        wall = time.monotonic()
        if wall - self._last_progress < every_s:
            return
        self._last_progress = wall
        c, s = self.sim.counters, self.sink.counters
        active = ", ".join(
            f"{a.scenario.name} ({(a.end - self.now) / 60:.0f}m left)"
            for a in self.conditions.current(self.now)
        )
        alerts_now = self.services.alerts.list()
        firing = [a for a in alerts_now if a["state"] == "firing"]
        roots = [f"{a['name']}{{{a['labels'].get('system', '')}}}" for a in firing if a["root_cause"]]
        suppressed = sum(1 for a in alerts_now if a["state"] == "suppressed")
        alerts = f"{len(firing)} firing" + (
            f", root cause {' '.join(roots)}, {suppressed} suppressed" if roots else ""
        )
        self.say(
            f"{phase}: {c.orders:,} orders, {c.returns:,} returns, {s.events + s.logs:,} events, "
            f"{s.spans:,} spans; alerts: {alerts}" + (f"; scenario {active}" if active else "")
        )


def until(predicate: Callable[[], bool], demo: Demo, limit_s: float) -> bool:
    """Step ``demo`` (unpaced) until ``predicate`` holds or ``limit_s`` of simulated time passes."""
    end = demo.now + limit_s
    while demo.now < end:
        if predicate():
            return True
        demo.step()
    return predicate()
