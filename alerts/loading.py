"""Alert-rule file loading: the config pipeline of :mod:`flowsight.configfiles`, then the rules
that need the workflows and SLOs, then the mapping to :class:`~flowsight.alerts.model.RuleSet`.
Every problem becomes one :class:`ConfigurationError` naming the file, line and field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowsight.alerts.model import Rule, RuleSet
from flowsight.alerts.spec import (
    AlertRulesFileV1,
    BurnRateRuleSpec,
    ExceptionAgingRuleSpec,
    RuleSpec,
    StuckOrdersRuleSpec,
    ThresholdRuleSpec,
)
from flowsight.configfiles import ConfigIssue, ConfigurationError, Loc, _raise_rules, _read, _validate
from flowsight.durations import parse_duration
from flowsight.slo.model import SloCatalog
from flowsight.workflows import WorkflowCatalog

DEFAULTS_FILE = Path(__file__).with_name("defaults.yaml")
"""The retail default rules as a file users can copy; it loads to exactly :data:`DEFAULT_RULES`."""

FIGURE_ROOTS = ("workflows", "exceptions", "backlog", "sync_lag", "ingest")
"""Top-level keys of the flow-health document a threshold rule can point into."""


def _rules(
    spec: AlertRulesFileV1, catalog: WorkflowCatalog, slos: SloCatalog | None
) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    seen: set[str] = set()
    for i, rule in enumerate(spec.rules):
        base: Loc = ("rules", i)
        if rule.name in seen:
            problems.append(((*base, "name"), f"duplicate rule {rule.name!r}"))
        seen.add(rule.name)
        if isinstance(rule, BurnRateRuleSpec) and rule.slos is not None and slos is not None:
            for j, name in enumerate(rule.slos):
                if slos.get(name) is None:
                    known = ", ".join(slos.names()) or "none configured"
                    problems.append(((*base, "slos", j), f"unknown slo {name!r}: expected one of {known}"))
        if isinstance(rule, StuckOrdersRuleSpec | ExceptionAgingRuleSpec):
            problems += _stage_rules(rule, base, catalog)
        if isinstance(rule, ThresholdRuleSpec):
            root = rule.figure.split(".", 1)[0]
            if root not in FIGURE_ROOTS or "." not in rule.figure:
                problems.append(
                    (
                        (*base, "figure"),
                        f"{rule.figure!r} is not a flow-health figure: expected a dotted path under "
                        f"{', '.join(FIGURE_ROOTS)}, such as workflows.order_to_cash.in_flight",
                    )
                )
    return problems


def _stage_rules(
    rule: StuckOrdersRuleSpec | ExceptionAgingRuleSpec, base: Loc, catalog: WorkflowCatalog
) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    workflows = list(catalog)
    if rule.workflow is not None:
        workflow = catalog.get(rule.workflow)
        if workflow is None:
            known = ", ".join(catalog.names()) or "none configured"
            return [((*base, "workflow"), f"unknown workflow {rule.workflow!r}: expected one of {known}")]
        workflows = [workflow]
    for j, stage in enumerate(rule.stages or ()):
        if not any(w.has_stage(stage) for w in workflows):
            where = f"workflow {rule.workflow!r}" if rule.workflow else "any configured workflow"
            problems.append(((*base, "stages", j), f"{stage!r} is not a stage of {where}"))
    return problems


def _params(rule: RuleSpec) -> dict[str, Any]:
    skip = {"name", "kind", "for_", "keep_firing_for", "labels", "annotations", "severity"}
    out: dict[str, Any] = {}
    for key, value in rule.model_dump().items():
        if key in skip:
            continue
        if key in ("older_than", "window", "silent_for", "baseline"):
            value = parse_duration(value)
        elif isinstance(value, list):
            value = tuple(value)
        out[key] = value
    return out


def _to_rule(rule: RuleSpec) -> Rule:
    return Rule(
        name=rule.name,
        kind=rule.kind,
        for_=parse_duration(rule.for_),
        keep_firing_for=parse_duration(rule.keep_firing_for),
        severity=getattr(rule, "severity", "page"),
        labels=dict(rule.labels),
        annotations=dict(rule.annotations),
        params=_params(rule),
    )


def load_rules(path: Path, catalog: WorkflowCatalog, slos: SloCatalog | None = None) -> RuleSet:
    """Load and validate an alert-rules file against the workflows (and SLOs, when given).

    Raises:
        ConfigurationError: every problem of the file, each with its line and field path.
    """
    doc = _read(path)
    spec = _validate(AlertRulesFileV1, doc)
    assert isinstance(spec, AlertRulesFileV1)
    _raise_rules(doc, _rules(spec, catalog, slos))
    return RuleSet(tuple(_to_rule(r) for r in spec.rules))


def check_rules_file(
    path: Path, catalog: WorkflowCatalog, slos: SloCatalog | None = None
) -> list[ConfigIssue]:
    """Every problem of an alert-rules file (none when it is valid), for ``flowsight check-config``."""
    try:
        load_rules(path, catalog, slos)
    except ConfigurationError as exc:
        return exc.issues
    return []


def _defaults() -> RuleSet:
    from flowsight.slo.loading import DEFAULT_SLOS
    from flowsight.workflows import DEFAULT_WORKFLOWS

    return load_rules(DEFAULTS_FILE, DEFAULT_WORKFLOWS, DEFAULT_SLOS)


DEFAULT_RULES: RuleSet = _defaults()
"""The retail defaults, read from ``defaults.yaml``."""
