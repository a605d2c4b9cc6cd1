"""SLO and flow-health figures as Prometheus gauges, from the latest evaluation.

A scrape never evaluates: it reads what the scheduled (or requested) evaluation left, so
scrapes stay cheap and every figure of one scrape comes from one instant.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flowsight.slo.evaluator import Evaluator


def _group(group: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(group.items()))


class EvaluationMetrics(Collector):
    """Yields ``flowsight_slo_*`` and ``flowsight_flow_*`` gauges of the last evaluation."""

    def __init__(self, evaluator: Evaluator):
        self.evaluator = evaluator

    def collect(self) -> Iterator[Metric]:
        last = self.evaluator.last
        duration = GaugeMetricFamily(
            "flowsight_evaluation_duration_seconds", "How long the last SLO and flow evaluation took."
        )
        if self.evaluator.last_seconds is not None:
            duration.add_metric([], self.evaluator.last_seconds)
        yield duration
        if last is None:
            return
        yield from self._slos(last["slos"])
        yield from self._flow(last["flow"])

    def _slos(self, results: list[dict[str, Any]]) -> Iterator[Metric]:
        objective = GaugeMetricFamily("flowsight_slo_objective", "The SLO's objective (0-1).", labels=["slo"])
        sli = GaugeMetricFamily(
            "flowsight_slo_sli", "Good / total over the SLO window.", labels=["slo", "group"]
        )
        good = GaugeMetricFamily(
            "flowsight_slo_good_events", "Good events in the SLO window.", labels=["slo", "group"]
        )
        total = GaugeMetricFamily(
            "flowsight_slo_events", "Decided events in the SLO window.", labels=["slo", "group"]
        )
        budget = GaugeMetricFamily(
            "flowsight_slo_error_budget_remaining",
            "Share of the error budget left (1 = untouched).",
            labels=["slo", "group"],
        )
        burn = GaugeMetricFamily(
            "flowsight_slo_burn_rate",
            "Error rate over a window / the budgeted error rate.",
            labels=["slo", "group", "window"],
        )
        for result in results:
            if result["status"] == "not_evaluated":
                continue
            objective.add_metric([result["name"]], result["objective"])
            for series in result["series"] or [{**result, "group": {}}]:
                labels = [result["name"], _group(series["group"])]
                good.add_metric(labels, series["good"])
                total.add_metric(labels, series["total"])
                if series["sli_value"] is not None:
                    sli.add_metric(labels, series["sli_value"])
                if series["error_budget_remaining"] is not None:
                    budget.add_metric(labels, series["error_budget_remaining"])
                for window, rate in series["burn_rates"].items():
                    burn.add_metric([*labels, window], rate)
        yield from (objective, sli, good, total, budget, burn)

    def _owner(self, workflow: str, stage: str) -> str:
        found = self.evaluator.workflows().get(workflow)
        owner = found.stage(stage) if found else None
        return owner.owner if owner else ""

    def _flow(self, flow: dict[str, Any]) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily(
            "flowsight_flow_in_flight", "Orders not yet complete.", labels=["workflow"]
        )
        completed = GaugeMetricFamily("flowsight_flow_completed", "Orders complete.", labels=["workflow"])
        rate = GaugeMetricFamily(
            "flowsight_flow_completion_rate",
            "Share of due orders completed within the deadline.",
            labels=["workflow"],
        )
        stuck = GaugeMetricFamily(
            "flowsight_flow_stuck_orders",
            "Orders stuck, by the stage they wait for.",
            labels=["workflow", "stage", "system"],
        )
        for name, figures in flow["workflows"].items():
            in_flight.add_metric([name], figures["in_flight"])
            completed.add_metric([name], figures["completed"])
            if figures["completion_rate"] is not None:
                rate.add_metric([name], figures["completion_rate"])
            for stage_name, count in figures["stuck"]["by_stage"].items():
                stuck.add_metric([name, stage_name, self._owner(name, stage_name)], count)
        open_exc = GaugeMetricFamily("flowsight_exceptions_open", "Open exceptions, by age.", labels=["age"])
        for bucket, count in flow["exceptions"]["aging"].items():
            open_exc.add_metric([bucket], count)
        backlog = GaugeMetricFamily(
            "flowsight_backlog", "Open exceptions per owner system.", labels=["system"]
        )
        for system, count in flow["backlog"].items():
            backlog.add_metric([system], count)
        lag = GaugeMetricFamily(
            "flowsight_sync_lag_seconds", "Stage-to-stage lag percentiles.", labels=["pair", "quantile"]
        )
        for pair, q in flow["sync_lag"].items():
            for name in ("p50", "p95", "p99"):
                lag.add_metric([pair, name], q[f"{name}_s"])
        ingest = GaugeMetricFamily(
            "flowsight_ingest_last_event_age_seconds", "Age of each system's newest event.", labels=["system"]
        )
        for system, figures in flow["ingest"].items():
            ingest.add_metric([system], figures["last_event_age_s"])
        yield from (in_flight, completed, rate, stuck, open_exc, backlog, lag, ingest)
