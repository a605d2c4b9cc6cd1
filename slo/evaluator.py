"""One evaluation run: every SLO at an instant, stored as a snapshot. The scheduler calls it
periodically; ``POST /api/evaluate`` calls it on demand, optionally as of an earlier time."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from flowsight.slo.engine import SloEngine
from flowsight.slo.flow import FlowHealth
from flowsight.slo.model import SloCatalog
from flowsight.slo.snapshots import FlowHistory, SnapshotStore
from flowsight.timefmt import iso_utc
from flowsight.workflows import WorkflowCatalog

log = logging.getLogger(__name__)


Follower = Callable[[datetime, list[dict[str, Any]], dict[str, Any]], Any]
"""Runs after each evaluation with its ``at``, SLO results and flow health (the alert engine)."""


class Evaluator:
    """Evaluates and records; one run at a time."""

    def __init__(
        self,
        engine: SloEngine,
        flow: FlowHealth,
        snapshots: SnapshotStore,
        slos: Callable[[], SloCatalog],
        workflows: Callable[[], WorkflowCatalog],
        clock: Callable[[], datetime],
        followers: Mapping[str, Follower] | None = None,
        history: FlowHistory | None = None,
        caught_up: Callable[[], None] = lambda: None,
    ):
        self.engine = engine
        self.flow = flow
        self.last: dict[str, Any] | None = None
        self.snapshots = snapshots
        self.slos = slos
        self.workflows = workflows
        self.clock = clock
        self.followers = dict(followers or {})
        self.history = history
        self.caught_up = caught_up
        self._lock = threading.Lock()
        self.runs = 0
        self.last_seconds: float | None = None

    def evaluate(self, at: datetime | None = None) -> dict[str, Any]:
        """Evaluate every SLO as of ``at`` (default: now) and store the snapshot."""
        with self._lock:
            when = at or self.clock()
            started = time.perf_counter()
            slos, workflows = self.slos(), self.workflows()
            # Each workflow's orders, and the exceptions, are read once: flow health and the SLIs
            # those reads can carry.
            flow, prefetched = self.flow.evaluate_with(
                workflows,
                when,
                self.engine.order_batches(slos, workflows, when),
                self.engine.exception_ages(slos, workflows, when),
            )
            results = self.engine.evaluate(slos, workflows, when, prefetched)
            self.snapshots.write(when, results)
            if self.history is not None:
                self.history.write(when, flow)
            followed: dict[str, Any] = {}
            for key, follower in self.followers.items():
                try:
                    followed[key] = follower(when, results, flow)
                except Exception as exc:
                    # SLO figures stand on their own; a failing follower is reported, not fatal.
                    log.exception("%s evaluation failed", key)
                    followed[key] = {"error": f"{type(exc).__name__}: {exc}"}
            self.last_seconds = time.perf_counter() - started
            self.runs += 1
            self.last = {
                "evaluated_at": iso_utc(when),
                "duration_s": self.last_seconds,
                "slos": results,
                "flow": flow,
                **followed,
            }
            return self.last

    def run_scheduled(self) -> None:
        """The scheduler's job: evaluate now; a failure is logged and the next run tries again."""
        try:
            self.caught_up()  # what was acknowledged before this run counts in it
        except Exception as exc:
            log.warning("evaluating without every acknowledged event: %s", exc)
        try:
            self.evaluate()
        except Exception:
            log.exception("scheduled evaluation failed")
