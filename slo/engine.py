"""SLO evaluation: good and total events per window, error budget remaining and burn rates.

Counting happens inside ClickHouse (:class:`SloSource`); this module turns the counts into the
figures: SLI = good / total over the SLO window, error budget = 1 - objective, budget remaining
= 1 - (bad / total) / budget, burn rate over a window = (bad / total) / budget. A series with
fewer than ``min_events`` in its window is ``insufficient_data`` and cannot page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from flowsight.collector.order_figures import ExceptionAge, OrderSli
from flowsight.slo.model import (
    CALENDAR_MONTH,
    CompletionSli,
    ExceptionAgeSli,
    FreshnessSli,
    Slo,
    SloCatalog,
    SpanErrorRatioSli,
    StageLatencySli,
    Window,
)
from flowsight.timefmt import iso_utc
from flowsight.workflows import WorkflowCatalog

Counts = dict[tuple[str, ...], list[tuple[int, int]]]
"""Per group (the values of the SLO's group_by keys, ``()`` when ungrouped): ``(good, total)``
for each requested window."""


@dataclass(frozen=True)
class OrderBatch:
    """Ungrouped order SLIs of one workflow that share their windows: counted in one pass."""

    names: tuple[str, ...]
    specs: tuple[OrderSli, ...]
    windows: tuple[int, ...]


class SloSource(Protocol):
    """Where the engine gets its counts; ClickHouse-backed by :class:`flowsight.collector.order_figures.SliCounts`."""

    def order_slis(
        self,
        workflow: Any,
        specs: Sequence[OrderSli],
        at: datetime,
        windows: Sequence[int],
        *,
        group_by: Sequence[str],
    ) -> list[Counts]: ...

    def span_errors(
        self, services: Sequence[str] | None, at: datetime, windows: Sequence[int], *, group_by: Sequence[str]
    ) -> Counts: ...

    def exception_age(
        self,
        workflow: Any,
        threshold_s: float,
        at: datetime,
        windows: Sequence[int],
        *,
        group_by: Sequence[str],
    ) -> Counts: ...

    def freshness(
        self,
        systems: Sequence[str] | None,
        threshold_s: float,
        at: datetime,
        windows: Sequence[int],
        *,
        group_by: Sequence[str],
    ) -> Counts: ...


def window_seconds(window: Window, at: datetime) -> int:
    """The SLO window as seconds ending at ``at`` (a calendar month: since its first day)."""
    if window is CALENDAR_MONTH:
        start = at.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        return max(1, int((at - start).total_seconds()))
    assert isinstance(window, timedelta)
    return int(window.total_seconds())


def _windows(slo: Slo, at: datetime) -> list[int]:
    """The SLO window, then each burn-rate window, in seconds, without repeats."""
    windows = [window_seconds(slo.window, at)]
    for row in slo.burn_windows:
        for w in (int(row.long.total_seconds()), int(row.short.total_seconds())):
            if w not in windows:
                windows.append(w)
    return windows


def window_label(seconds: int) -> str:
    """``28d``, ``5h36m``, ``4m40s``: the window as Prometheus writes durations (no weeks)."""
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"


class Unsupported(Exception):
    """This SLO cannot be evaluated (yet); ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class SloEngine:
    """Evaluates every SLO of a catalog at an instant."""

    def __init__(self, source: SloSource):
        self.source = source

    def _counts(self, slo: Slo, workflows: WorkflowCatalog, at: datetime, windows: list[int]) -> Counts:
        sli = slo.sli
        group_by = slo.group_by
        if isinstance(sli, CompletionSli | StageLatencySli):
            workflow = workflows.get(sli.workflow)
            if workflow is None:
                raise Unsupported(f"workflow {sli.workflow!r} is not configured")
            return self.source.order_slis(workflow, [_order_sli(slo)], at, windows, group_by=group_by)[0]
        if isinstance(sli, ExceptionAgeSli):
            workflow = workflows.get(sli.workflow) if sli.workflow else None
            if sli.workflow and workflow is None:
                raise Unsupported(f"workflow {sli.workflow!r} is not configured")
            return self.source.exception_age(
                workflow, sli.threshold.total_seconds(), at, windows, group_by=group_by
            )
        if isinstance(sli, SpanErrorRatioSli):
            return self.source.span_errors(sli.services, at, windows, group_by=group_by)
        if isinstance(sli, FreshnessSli):
            return self.source.freshness(
                sli.systems, sli.threshold.total_seconds(), at, windows, group_by=group_by
            )
        raise Unsupported(f"SLI kind {sli.kind!r} is not evaluated yet")

    @staticmethod
    def _batches(
        slos: SloCatalog, workflows: WorkflowCatalog, at: datetime
    ) -> dict[tuple[str, tuple[str, ...], tuple[int, ...]], list[Slo]]:
        batches: dict[tuple[str, tuple[str, ...], tuple[int, ...]], list[Slo]] = {}
        for slo in slos:
            sli = slo.sli
            if isinstance(sli, CompletionSli | StageLatencySli) and workflows.get(sli.workflow) is not None:
                key = (sli.workflow, slo.group_by, tuple(_windows(slo, at)))
                batches.setdefault(key, []).append(slo)
        return batches

    def order_batches(
        self, slos: SloCatalog, workflows: WorkflowCatalog, at: datetime
    ) -> dict[str, OrderBatch]:
        """Per workflow, the largest batch of its ungrouped order SLIs sharing their windows: what
        a pass over the workflow's orders made for other figures can count as well."""
        out: dict[str, OrderBatch] = {}
        for (workflow, group_by, windows), batch in self._batches(slos, workflows, at).items():
            if group_by or len(batch) <= len(out[workflow].names if workflow in out else ()):
                continue
            out[workflow] = OrderBatch(
                tuple(s.name for s in batch), tuple(_order_sli(s) for s in batch), windows
            )
        return out

    def exception_ages(
        self, slos: SloCatalog, workflows: WorkflowCatalog, at: datetime
    ) -> list[tuple[str, ExceptionAge]]:
        """The ungrouped exception_age SLIs, by SLO name: counted in the read flow health makes
        of the exceptions."""
        return [
            (
                slo.name,
                ExceptionAge(slo.sli.workflow, slo.sli.threshold.total_seconds(), tuple(_windows(slo, at))),
            )
            for slo in slos
            if isinstance(slo.sli, ExceptionAgeSli)
            and not slo.group_by
            and (slo.sli.workflow is None or workflows.get(slo.sli.workflow) is not None)
        ]

    def evaluate(
        self,
        slos: SloCatalog,
        workflows: WorkflowCatalog,
        at: datetime,
        prefetched: Mapping[str, Counts] | None = None,
    ) -> list[dict[str, Any]]:
        """Every SLO; the order SLIs of one workflow (same grouping and windows) share one pass.
        ``prefetched`` holds counts already made (by name), such as those of an :class:`OrderBatch`."""
        done = dict(prefetched or {})
        for (workflow_name, group_by, windows), batch in self._batches(slos, workflows, at).items():
            batch = [s for s in batch if s.name not in done]
            if len(batch) < 2:
                continue
            counts = self.source.order_slis(
                workflows.get(workflow_name),
                [_order_sli(s) for s in batch],
                at,
                list(windows),
                group_by=group_by,
            )
            done.update({s.name: c for s, c in zip(batch, counts, strict=True)})
        return [self.evaluate_one(slo, workflows, at, done.get(slo.name)) for slo in slos]

    def evaluate_one(
        self, slo: Slo, workflows: WorkflowCatalog, at: datetime, counts: Counts | None = None
    ) -> dict[str, Any]:
        windows = _windows(slo, at)
        base: dict[str, Any] = {
            "name": slo.name,
            "description": slo.description,
            "objective": slo.objective,
            "sli": {"kind": slo.sli.kind},
            "window": "calendar_month" if slo.window is CALENDAR_MONTH else window_label(windows[0]),
            "group_by": list(slo.group_by),
            "evaluated_at": iso_utc(at),
        }
        try:
            if counts is None:
                counts = self._counts(slo, workflows, at, windows)
        except Unsupported as exc:
            return {
                **base,
                "status": "not_evaluated",
                "reason": exc.reason,
                "series": [],
                "good": None,
                "total": None,
                "error_budget_remaining": None,
                "burn_rates": {},
            }
        series = [self._series(slo, group, per_window, windows) for group, per_window in counts.items()]
        if not series:
            series = [self._series(slo, (), [(0, 0)] * len(windows), windows)]
        total_good = sum(s["good"] for s in series)
        total = sum(s["total"] for s in series)
        overall = (
            self._series(
                slo,
                (),
                [
                    (sum(c[i][0] for c in counts.values()), sum(c[i][1] for c in counts.values()))
                    for i in range(len(windows))
                ],
                windows,
            )
            if counts
            else series[0]
        )
        return {
            **base,
            "good": total_good,
            "total": total,
            "sli_value": overall["sli_value"],
            "error_budget_remaining": overall["error_budget_remaining"],
            "burn_rates": overall["burn_rates"],
            "status": _worst([s["status"] for s in series]),
            "series": series if slo.group_by else [],
        }

    def _series(
        self, slo: Slo, group: tuple[str, ...], per_window: list[tuple[int, int]], windows: list[int]
    ) -> dict[str, Any]:
        budget = 1 - slo.objective
        good, total = per_window[0]
        bad_ratio = (total - good) / total if total else 0.0
        burn = {
            window_label(w): ((t - g) / t) / budget if t else 0.0
            for w, (g, t) in zip(windows, per_window, strict=True)
        }
        if total < slo.min_events:
            status = "insufficient_data"
        elif 1 - bad_ratio / budget <= 0:
            status = "exhausted"
        elif any(
            burn[window_label(int(r.long.total_seconds()))] >= r.burn_rate
            and burn[window_label(int(r.short.total_seconds()))] >= r.burn_rate
            and per_window[windows.index(int(r.long.total_seconds()))][1] >= slo.min_events
            for r in slo.burn_windows
            if r.severity == "page"
        ):
            status = "burning"
        else:
            status = "ok"
        return {
            "group": _group(slo, group),
            "good": good,
            "total": total,
            "sli_value": good / total if total else None,
            "error_budget_remaining": 1 - bad_ratio / budget if total else None,
            "burn_rates": burn,
            "status": status,
        }


def _group(slo: Slo, values: tuple[str, ...]) -> dict[str, str]:
    return dict(zip(slo.group_by, values, strict=False))


def _order_sli(slo: Slo) -> OrderSli:
    sli = slo.sli
    if isinstance(sli, CompletionSli):
        return OrderSli("completion")
    assert isinstance(sli, StageLatencySli)
    return OrderSli("stage_latency", sli.from_stage, sli.to_stage, sli.threshold.total_seconds())


_SEVERITY = ("not_evaluated", "insufficient_data", "ok", "burning", "exhausted")


def _worst(statuses: list[str]) -> str:
    return max(statuses, key=_SEVERITY.index) if statuses else "insufficient_data"
