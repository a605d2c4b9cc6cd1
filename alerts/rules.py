"""Rule evaluation: what each rule kind finds at one instant, as candidate alerts.

A candidate is an alert instance whose condition holds now; the lifecycle
(:mod:`flowsight.alerts.lifecycle`) turns candidates over time into pending, firing and resolved
alerts. Inputs are the evaluation's own results: the SLO figures, the flow-health document and
per-system activity read from ClickHouse.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from flowsight.alerts.model import Candidate, Rule, RuleSet
from flowsight.collector.system_figures import Activity
from flowsight.slo.engine import window_label
from flowsight.slo.model import CompletionSli, ExceptionAgeSli, Slo, SloCatalog, StageLatencySli
from flowsight.workflows import WorkflowCatalog

UNKNOWN_SYSTEM = "flowsight"
"""The system label of an alert no system can be named for (e.g. an SLO across every system)."""


class ActivitySource(Protocol):
    def activity(
        self, at: datetime, recent_s: int, baseline_s: int, systems: Sequence[str] | None = None
    ) -> dict[str, Activity]: ...


@dataclass(frozen=True)
class Inputs:
    """Everything rules look at, as of ``at``."""

    at: datetime
    slos: SloCatalog
    slo_results: Sequence[Mapping[str, Any]]
    flow: Mapping[str, Any]
    catalog: WorkflowCatalog
    activity: ActivitySource


def label_name(key: str) -> str:
    """A group_by key as a label name: ``attributes.http.route`` -> ``http_route``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", key.removeprefix("attributes."))


def _fmt_duration(delta: timedelta) -> str:
    return window_label(int(delta.total_seconds()))


def slo_system(slo: Slo, group: Mapping[str, str], catalog: WorkflowCatalog) -> str:
    """The system an SLO's alert concerns: its group's system, the SLO's ``system`` label, or
    the owner of the stage it waits for (a stage latency's target, a completion's last stage)."""
    if group.get("system"):
        return group["system"]
    if slo.labels.get("system"):
        return slo.labels["system"]
    sli = slo.sli
    if isinstance(sli, StageLatencySli | CompletionSli):
        workflow = catalog.get(sli.workflow)
        if workflow is not None:
            stage = (
                workflow.stage(sli.to_stage) if isinstance(sli, StageLatencySli) else workflow.sequence[-1]
            )
            if stage is not None:
                return stage.owner
    if isinstance(sli, ExceptionAgeSli) and sli.workflow:
        return UNKNOWN_SYSTEM
    return UNKNOWN_SYSTEM


def _labels(rule: Rule, system: str, severity: str, **extra: str) -> dict[str, str]:
    return {**rule.labels, **extra, "alertname": rule.name, "system": system, "severity": severity}


def _annotations(rule: Rule, summary: str, **extra: str) -> dict[str, str]:
    return {"summary": summary, **extra, **rule.annotations}


def burn_rate(rule: Rule, inputs: Inputs) -> Iterator[Candidate]:
    wanted = rule.params.get("slos")
    severities = rule.params.get("severities") or ("page", "ticket")
    assert isinstance(severities, tuple)
    for result in inputs.slo_results:
        slo = inputs.slos.get(str(result["name"]))
        if slo is None or (wanted and slo.name not in wanted) or result.get("status") == "not_evaluated":
            continue
        for series in result.get("series") or [{**result, "group": {}}]:
            if series.get("status") == "insufficient_data":
                continue
            burn: Mapping[str, float] = series["burn_rates"]
            group: Mapping[str, str] = series["group"]
            for severity in severities:
                hits = [
                    (
                        row,
                        min(burn.get(_fmt_duration(row.long), 0.0), burn.get(_fmt_duration(row.short), 0.0)),
                    )
                    for row in slo.burn_windows
                    if row.severity == severity
                ]
                firing = [(row, rate) for row, rate in hits if rate >= row.burn_rate]
                if not firing:
                    continue
                row, rate = max(firing, key=lambda hit: hit[1])
                where = "".join(f" {k}={v}" for k, v in group.items())
                yield Candidate(
                    rule,
                    _labels(
                        rule,
                        slo_system(slo, group, inputs.catalog),
                        severity,
                        slo=slo.name,
                        **{k: v for k, v in slo.labels.items() if k != "system"},
                        **{label_name(k): v for k, v in group.items() if k != "system"},
                    ),
                    _annotations(
                        rule,
                        f"SLO {slo.name}{where} burns its error budget at {rate:.1f}x "
                        f"(over {_fmt_duration(row.long)} and {_fmt_duration(row.short)}; "
                        f"{row.burn_rate:g}x pages a {severity})",
                        description=slo.description,
                    ),
                    rate,
                )


def _stage_figures(
    rule: Rule, inputs: Inputs, figures: Callable[[str], Mapping[str, float]]
) -> Iterator[tuple[str, str, str, float]]:
    """``(workflow, stage, owner, figure)`` for the stages a rule covers."""
    only_workflow = rule.params.get("workflow")
    stages = rule.params.get("stages")
    for workflow in inputs.catalog:
        if only_workflow and workflow.name != only_workflow:
            continue
        for stage_name, value in figures(workflow.name).items():
            if stages and stage_name not in stages:
                continue
            stage = workflow.stage(stage_name)
            yield workflow.name, stage_name, stage.owner if stage else UNKNOWN_SYSTEM, float(value)


def stuck_orders(rule: Rule, inputs: Inputs) -> Iterator[Candidate]:
    minimum = int(rule.params["min_orders"])

    def by_stage(workflow: str) -> Mapping[str, float]:
        return dict(inputs.flow.get("workflows", {}).get(workflow, {}).get("stuck", {}).get("by_stage", {}))

    for workflow, stage, owner, count in _stage_figures(rule, inputs, by_stage):
        if count >= minimum:
            yield Candidate(
                rule,
                _labels(rule, owner, rule.severity, workflow=workflow, stage=stage),
                _annotations(rule, f"{int(count)} {workflow} orders are stuck waiting for {stage} ({owner})"),
                count,
            )


def exception_aging(rule: Rule, inputs: Inputs) -> Iterator[Candidate]:
    limit = rule.params["older_than"]
    assert isinstance(limit, timedelta)

    def oldest(workflow: str) -> Mapping[str, float]:
        return dict(inputs.flow.get("exceptions", {}).get("oldest_s", {}).get(workflow, {}))

    for workflow, stage, owner, age_s in _stage_figures(rule, inputs, oldest):
        if age_s >= limit.total_seconds():
            yield Candidate(
                rule,
                _labels(rule, owner, rule.severity, workflow=workflow, stage=stage),
                _annotations(
                    rule,
                    f"The oldest open exception at {workflow}/{stage} ({owner}) is "
                    f"{_fmt_duration(timedelta(seconds=int(age_s)))} old (limit {_fmt_duration(limit)})",
                ),
                age_s,
            )


def _systems(rule: Rule) -> Sequence[str] | None:
    systems = rule.params.get("systems")
    return tuple(systems) if isinstance(systems, tuple) else None


def system_error_ratio(rule: Rule, inputs: Inputs) -> Iterator[Candidate]:
    window = rule.params["window"]
    assert isinstance(window, timedelta)
    minimum, ratio = int(rule.params["min_events"]), float(rule.params["ratio"])
    for system, seen in inputs.activity.activity(
        inputs.at, int(window.total_seconds()), 0, _systems(rule)
    ).items():
        if seen.total >= minimum and seen.failed / seen.total >= ratio:
            share = seen.failed / seen.total
            yield Candidate(
                rule,
                _labels(rule, system, rule.severity),
                _annotations(
                    rule,
                    f"{system} is unhealthy: {seen.failed} of {seen.total} spans and events failed "
                    f"({share:.0%}) in the last {_fmt_duration(window)}",
                ),
                share,
            )


def system_silence(rule: Rule, inputs: Inputs) -> Iterator[Candidate]:
    silent_for, baseline = rule.params["silent_for"], rule.params["baseline"]
    assert isinstance(silent_for, timedelta) and isinstance(baseline, timedelta)
    minimum = int(rule.params["min_events"])
    activity = inputs.activity.activity(
        inputs.at, int(silent_for.total_seconds()), int(baseline.total_seconds()), _systems(rule)
    )
    for system, seen in activity.items():
        if seen.total == 0 and seen.baseline >= minimum:
            quiet = (
                (inputs.at - seen.last_seen).total_seconds() if seen.last_seen else silent_for.total_seconds()
            )
            yield Candidate(
                rule,
                _labels(rule, system, rule.severity),
                _annotations(
                    rule,
                    f"{system} has sent nothing for {_fmt_duration(timedelta(seconds=int(quiet)))} "
                    f"(it sent {seen.baseline} in the {_fmt_duration(baseline)} before)",
                ),
                quiet,
            )


_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


def figure(document: Mapping[str, Any], path: str) -> float | None:
    """The number at a dotted path of the flow-health document, or None if absent or not a number."""
    node: Any = document
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


def threshold(rule: Rule, inputs: Inputs) -> Iterator[Candidate]:
    path, op, limit = str(rule.params["figure"]), str(rule.params["op"]), float(rule.params["value"])
    value = figure(inputs.flow, path)
    if value is not None and _OPS[op](value, limit):
        yield Candidate(
            rule,
            _labels(rule, str(rule.params["system"]), rule.severity, figure=path),
            _annotations(rule, f"{path} is {value:g} ({op} {limit:g})"),
            value,
        )


KINDS: dict[str, Callable[[Rule, Inputs], Iterator[Candidate]]] = {
    "burn_rate": burn_rate,
    "stuck_orders": stuck_orders,
    "exception_aging": exception_aging,
    "system_error_ratio": system_error_ratio,
    "system_silence": system_silence,
    "threshold": threshold,
}


def candidates(rules: RuleSet, inputs: Inputs) -> list[Candidate]:
    """Every alert instance whose condition holds at ``inputs.at``."""
    return [c for rule in rules for c in KINDS[rule.kind](rule, inputs)]
