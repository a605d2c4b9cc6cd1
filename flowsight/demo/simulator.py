"""The simulation: orders move through their workflows step by step in simulated time.

Each order waits in a queue for its next step. When simulated time reaches it, the step either
happens (a lifecycle event, ``ok``, and the spans of the call) or fails (a ``failed`` event and
error spans) and is retried later; a scenario taking a system down fails every step of that
system and of the systems that depend on it. Shipped orders sometimes come back as returns.
Output goes to a :class:`Sink`; nothing here does I/O.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field
from typing import Protocol

from flowsight.demo.estate import Estate, Step, arrivals, channel, gap
from flowsight.demo.scenarios import Conditions

MAX_RETRIES = 200


@dataclass(frozen=True)
class Emitted:
    """One step's outcome, as a sink sends it: the lifecycle event and the spans of the call."""

    workflow: str
    correlation_id: str
    stage: str
    system: str
    status: str
    at: float
    attempt: int
    channel: str
    operation: str
    calls: str | None
    cause: str | None
    """When the step failed because a system was down: that system."""


class Sink(Protocol):
    def emit(self, item: Emitted) -> None: ...

    def heartbeat(self, system: str, at: float, operation: str) -> None:
        """A system's periodic work that is no order's step (a batch import, say)."""


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    order: _Order = field(compare=False)


@dataclass
class _Order:
    id: str
    workflow: str
    steps: tuple[Step, ...]
    channel: str
    index: int = 0
    attempts: int = 0
    parent: str = ""


@dataclass
class Counters:
    orders: int = 0
    returns: int = 0
    events: int = 0
    failed: int = 0
    by_channel: dict[str, int] = field(default_factory=dict)


class Simulator:
    def __init__(self, estate: Estate, conditions: Conditions, sink: Sink, seed: int = 7):
        self.estate = estate
        self.conditions = conditions
        self.sink = sink
        self.rng = random.Random(seed)
        self.queue: list[_Due] = []
        self.seq = itertools.count()
        self.ids = itertools.count(10000)
        self.now = 0.0
        self.counters = Counters()

    def _schedule(self, order: _Order, at: float) -> None:
        heapq.heappush(self.queue, _Due(at, next(self.seq), order))

    def _marketplace_arrival(self, created: float) -> float:
        """When a marketplace order created at ``created`` reaches the OMS: the next batch."""
        batch = self.estate.marketplace_batch_s
        due = (created // batch + 1) * batch
        return self.conditions.marketplace_hold(due)

    def create_orders(self, start: float, end: float) -> None:
        for created in arrivals(self.rng, self.estate.orders_per_minute, start, end):
            chosen = channel(self.rng)
            order = _Order(f"SO-{next(self.ids)}", "order_to_cash", self.estate.orders, chosen)
            self.counters.orders += 1
            self.counters.by_channel[chosen] = self.counters.by_channel.get(chosen, 0) + 1
            if chosen == "marketplace":
                # Created on the marketplace now, known to the estate when its batch arrives.
                self._schedule(order, self._marketplace_arrival(created))
                order.parent = f"created:{created}"
            else:
                self._schedule(order, created)

    def advance(self, until: float) -> None:
        """Create the orders of ``(now, until]`` and perform every step due by ``until``."""
        self.create_orders(self.now, until)
        batch = self.estate.marketplace_batch_s
        boundary = (self.now // batch + 1) * batch
        while boundary <= until:
            # The marketplace imports a batch every few minutes, orders in it or not, unless held.
            if self.conditions.marketplace_hold(boundary) == boundary:
                self.sink.heartbeat("marketplace", boundary, "import order batch")
            boundary += batch
        while self.queue and self.queue[0].at <= until:
            due = heapq.heappop(self.queue)
            self._step(due.order, due.at)
        self.now = until

    def _step(self, order: _Order, at: float) -> None:
        step = order.steps[order.index]
        held = self.conditions.held_until(step.stage, at)
        if held is not None:
            # Queued until the hold ends, then worked off over the following hour or two.
            self._schedule(order, held + self.rng.uniform(0, 2 * 3600))
            return
        occurred = at
        if order.index == 0 and order.parent.startswith("created:"):
            occurred = float(order.parent.split(":", 1)[1])  # a marketplace order's own time
        cause = self.conditions.down(step.system, at)
        fail = cause is not None or self.rng.random() < max(
            step.fail, self.conditions.failing(step.system, at)
        )
        if fail and order.attempts < MAX_RETRIES and order.index > 0:
            order.attempts += 1
            self._emit(order, step, "failed", at, cause)
            if order.index == 1 and order.attempts >= 3 and self.rng.random() < self.estate.cancel_share * 30:
                self._emit_cancel(order, at + 60)
                return
            self._schedule(order, at + step.retry_s * (0.5 + self.rng.random()))
            return
        self._emit(order, step, "ok", occurred, None, "marketplace" if occurred != at else None)
        order.attempts = 0
        order.index += 1
        if order.index < len(order.steps):
            nxt = order.steps[order.index]
            self._schedule(order, at + gap(nxt, self.rng, self.conditions.slower(nxt.system, at, nxt.stage)))
        elif order.workflow == "order_to_cash" and self.rng.random() < self.estate.return_share:
            ret = _Order(
                f"RT-{order.id[3:]}", "return_to_refund", self.estate.returns, order.channel, parent=order.id
            )
            self.counters.returns += 1
            after = self.estate.return_after_s * (0.5 + self.rng.random())
            self._schedule(ret, at + after)

    def _emit(
        self, order: _Order, step: Step, status: str, at: float, cause: str | None, system: str | None = None
    ) -> None:
        self.counters.events += 1
        if status == "failed":
            self.counters.failed += 1
        self.sink.emit(
            Emitted(
                order.workflow,
                order.id,
                step.stage,
                system or step.system,
                status,
                at,
                order.attempts,
                order.channel,
                step.operation,
                step.calls,
                cause,
            )
        )

    def _emit_cancel(self, order: _Order, at: float) -> None:
        self.counters.events += 1
        self.sink.emit(
            Emitted(
                order.workflow,
                order.id,
                "cancelled",
                "oms",
                "ok",
                at,
                0,
                order.channel,
                "POST /orders/cancel",
                None,
                None,
            )
        )
