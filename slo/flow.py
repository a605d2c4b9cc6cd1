"""Flow health: the order-flow figures executives and SREs read first.

Per workflow: orders in flight and completed, the completion rate of the orders that are due,
the funnel, and stuck orders by the stage they wait for and its owner system. Across workflows:
open exceptions with aging buckets, the backlog of open exceptions per owner system,
stage-to-stage lag percentiles, and per-system ingest lag.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any, Protocol

from flowsight.timefmt import iso_utc
from flowsight.workflows import Workflow, WorkflowCatalog

AGING_BUCKETS = ("<1h", "1-4h", "4-24h", ">24h")
INGEST_WINDOW_S = 3600

SYNC_PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "order_to_cash": (("order_created", "erp_order_created"), ("shipped", "invoiced")),
    "return_to_refund": (("return_received", "refund_issued"),),
}
"""Stage pairs whose lag the retail defaults watch, besides every consecutive pair."""


class FlowFigures(Protocol):
    """What flow health reads; :class:`flowsight.collector.order_figures.OrderFigures` implements it."""

    def summary(self, workflow: Workflow, at: datetime) -> Any:
        """An object with ``funnel``, ``completion`` (in_flight, completed, due, on_time) and
        ``stuck_by_stage``."""

    def exception_scan(self, at: datetime, ages: Sequence[Any]) -> tuple[dict[str, list[Any]], list[Any]]:
        """Open exceptions per workflow as ``(stage, <1h, 1-4h, 4-24h, >24h, oldest_s)`` rows,
        and the counts of exception-age SLIs."""

    def lag_quantiles(
        self, workflow: Workflow, pairs: Sequence[tuple[str, str]], at: datetime
    ) -> dict[tuple[str, str], tuple[float, float, float, int]]: ...

    def system_ingest(self, at: datetime, window_s: int) -> dict[str, tuple[datetime, float, int]]: ...

    def scan(
        self,
        workflow: Workflow,
        at: datetime,
        *,
        pairs: Sequence[tuple[str, str]],
        slis: Sequence[Any] = (),
        windows: Sequence[int] = (),
    ) -> Any:
        """One pass: an object with ``summary``, ``lags`` (as :meth:`lag_quantiles`) and
        ``slis`` (order-SLI counts per spec)."""


def lag_pairs(workflow: Workflow) -> list[tuple[str, str]]:
    """Every consecutive pair of the sequence, then the watched pairs of :data:`SYNC_PAIRS`."""
    sequence = [s.name for s in workflow.sequence]
    pairs = list(pairwise(sequence))
    for pair in SYNC_PAIRS.get(workflow.name, ()):
        if pair not in pairs and all(workflow.has_stage(s) for s in pair):
            pairs.append(pair)
    return pairs


@dataclass
class FlowHealth:
    """Computes the flow-health document of ``GET /api/flow/health``."""

    figures: FlowFigures

    def evaluate(self, catalog: WorkflowCatalog, at: datetime) -> dict[str, Any]:
        return self.evaluate_with(catalog, at, {}, [])[0]

    def evaluate_with(
        self,
        catalog: WorkflowCatalog,
        at: datetime,
        orders: Mapping[str, Any],
        ages: Sequence[tuple[str, Any]],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The flow-health document, reading each workflow's orders once and the exceptions
        once. Those reads count SLIs too: ``orders`` per workflow a batch of order SLIs (with
        ``names``, ``specs`` and ``windows``), ``ages`` exception-age SLIs by name; their
        counts come back beside the document, by SLO name."""
        sli_counts: dict[str, Any] = {}
        open_exceptions, age_counts = self.figures.exception_scan(at, [age for _, age in ages])
        sli_counts.update({name: c for (name, _), c in zip(ages, age_counts, strict=True)})
        workflows: dict[str, Any] = {}
        open_total = 0
        aging = dict.fromkeys(AGING_BUCKETS, 0)
        backlog: dict[str, int] = {}
        exceptions_by_stage: dict[str, dict[str, int]] = {}
        oldest: dict[str, dict[str, float]] = {}
        sync_lag: dict[str, dict[str, Any]] = {}
        for workflow in catalog:
            batch = orders.get(workflow.name)
            scan = self.figures.scan(
                workflow,
                at,
                pairs=lag_pairs(workflow),
                slis=batch.specs if batch else (),
                windows=batch.windows if batch else (),
            )
            if batch:
                sli_counts.update(zip(batch.names, scan.slis, strict=True))
            summary = scan.summary
            completion, stuck, funnel = summary.completion, summary.stuck_by_stage, summary.funnel
            by_system: dict[str, int] = {}
            for stage, count in stuck.items():
                owner = workflow.stage(stage)
                key = owner.owner if owner else "unknown"
                by_system[key] = by_system.get(key, 0) + count
            workflows[workflow.name] = {
                "in_flight": completion.in_flight,
                "completed": completion.completed,
                "due": completion.due,
                "completed_on_time": completion.on_time,
                "completion_rate": completion.on_time / completion.due if completion.due else None,
                "funnel": {stage.name: funnel.get(stage.name, 0) for stage in workflow.stages},
                "stuck": {"total": sum(stuck.values()), "by_stage": stuck, "by_system": by_system},
                "by_channel": {
                    channel: {"due": due, "completed_on_time": on_time, "completion_rate": on_time / due}
                    for channel, (due, on_time) in sorted(summary.by_channel.items())
                    if due
                },
            }
            per_stage: dict[str, int] = {}
            oldest_here: dict[str, float] = {}
            for stage, b1, b2, b3, b4, oldest_s in open_exceptions.get(workflow.name, []):
                buckets = (b1, b2, b3, b4)
                count = sum(buckets)
                oldest_here[stage] = oldest_s
                open_total += count
                per_stage[stage] = count
                for name, n in zip(AGING_BUCKETS, buckets, strict=True):
                    aging[name] += n
                owner = workflow.stage(stage)
                system = owner.owner if owner else "unknown"
                backlog[system] = backlog.get(system, 0) + count
            exceptions_by_stage[workflow.name] = per_stage
            oldest[workflow.name] = oldest_here
            for (a, b), (p50, p95, p99, n) in scan.lags.items():
                sync_lag[f"{a}->{b}"] = {"p50_s": p50, "p95_s": p95, "p99_s": p99, "orders": n}
        ingest = {
            system: {
                "last_event_at": iso_utc(last),
                "last_event_age_s": (at - last).total_seconds(),
                "ingest_delay_p95_s": p95,
                "events_last_hour": n,
            }
            for system, (last, p95, n) in sorted(self.figures.system_ingest(at, INGEST_WINDOW_S).items())
        }
        document = {
            "evaluated_at": iso_utc(at),
            "workflows": workflows,
            "exceptions": {
                "open": open_total,
                "aging": aging,
                "by_stage": exceptions_by_stage,
                "oldest_s": oldest,
            },
            "backlog": dict(sorted(backlog.items())),
            "sync_lag": sync_lag,
            "ingest": ingest,
        }
        return document, sli_counts
