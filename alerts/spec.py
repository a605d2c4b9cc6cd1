"""The versioned alert-rule spec users write, apart from the domain model.

Shape and types are checked here by pydantic; rules that need the workflow catalog or the SLOs
(unknown workflows, stages and SLOs, duplicate names) are checked by
:mod:`flowsight.alerts.loading`, which also maps a valid spec to :mod:`flowsight.alerts.model`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, ValidatorFunctionWrapHandler, WrapValidator, field_validator

from flowsight.durations import parse_duration
from flowsight.spec import Name, SystemName, _Spec, dispatch_on_kind

AlertName = Annotated[
    str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", description="alert name (the alertname label)")
]
LabelName = Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]{0,63}$", description="label name")]
Severity = Literal["page", "ticket"]


def _duration(value: Any) -> Any:
    # Anything but text or a number is left to the type check, which names the expected type.
    if isinstance(value, str | int | float) and parse_duration(value) < timedelta(0):
        raise ValueError("must be a duration of zero or more, such as 5m")
    return value


def _positive(value: Any) -> Any:
    if isinstance(value, str | int | float) and parse_duration(value) <= timedelta(0):
        raise ValueError("must be a duration greater than zero, such as 5m")
    return value


class _RuleSpec(_Spec):
    name: AlertName = Field(description="The alert's name: its `alertname` label; unique in the file.")
    for_: str | int = Field(
        "0s",
        alias="for",
        description="How long the condition must hold before the alert fires (pending until then).",
    )
    keep_firing_for: str | int = Field(
        "0s",
        description="How long a firing alert keeps firing after its condition clears (against flapping).",
    )
    labels: dict[LabelName, str] = Field(default_factory=dict, description="Extra labels on every alert.")
    annotations: dict[LabelName, str] = Field(
        default_factory=dict, description="Extra annotations (summary, description, runbook_url, ...)."
    )

    _for = field_validator("for_", "keep_firing_for", mode="before")(_duration)


class BurnRateRuleSpec(_RuleSpec):
    """Multi-window, multi-burn-rate alerts generated for SLOs: page and ticket rows of the design."""

    kind: Literal["burn_rate"] = Field(description="Rule kind: burn_rate.")
    slos: list[Name] | None = Field(None, min_length=1, description="The SLOs covered; every SLO if unset.")
    severities: list[Severity] = Field(
        default_factory=lambda: list[Severity](("page", "ticket")),
        min_length=1,
        description="Which rows: page, ticket or both.",
    )


class StuckOrdersRuleSpec(_RuleSpec):
    """Fires per workflow and stage when at least ``min_orders`` orders are stuck waiting for it."""

    kind: Literal["stuck_orders"] = Field(description="Rule kind: stuck_orders.")
    severity: Severity = Field("ticket", description="The severity label.")
    workflow: Name | None = Field(None, description="Only this workflow; every workflow if unset.")
    stages: list[Name] | None = Field(
        None, min_length=1, description="Only these stages; every stage if unset."
    )
    min_orders: int = Field(5, ge=1, strict=True, description="Stuck orders at one stage that make it fire.")


class ExceptionAgingRuleSpec(_RuleSpec):
    """Fires per workflow and stage when the oldest open exception there is older than ``older_than``."""

    kind: Literal["exception_aging"] = Field(description="Rule kind: exception_aging.")
    severity: Severity = Field("ticket", description="The severity label.")
    workflow: Name | None = Field(None, description="Only this workflow; every workflow if unset.")
    stages: list[Name] | None = Field(
        None, min_length=1, description="Only these stages; every stage if unset."
    )
    older_than: str | int = Field("1h", description="Age of the oldest open exception that makes it fire.")

    _older = field_validator("older_than", mode="before")(_positive)


class SystemErrorRatioRuleSpec(_RuleSpec):
    """System health: the share of a system's spans in error and events failed over ``window``."""

    kind: Literal["system_error_ratio"] = Field(description="Rule kind: system_error_ratio (system health).")
    severity: Severity = Field("page", description="The severity label.")
    systems: list[SystemName] | None = Field(
        None, min_length=1, description="Only these systems; all if unset."
    )
    window: str | int = Field("5m", description="The window the ratio is taken over.")
    min_events: int = Field(20, ge=1, strict=True, description="Spans and events needed in the window.")
    ratio: float = Field(
        0.2, gt=0, le=1, description="Error ratio at or above which the system is unhealthy."
    )

    _window = field_validator("window", mode="before")(_positive)


class SystemSilenceRuleSpec(_RuleSpec):
    """System health: a system that normally reports has sent nothing for ``silent_for``."""

    kind: Literal["system_silence"] = Field(description="Rule kind: system_silence (system health).")
    severity: Severity = Field("page", description="The severity label.")
    systems: list[SystemName] | None = Field(
        None, min_length=1, description="Only these systems; all if unset."
    )
    silent_for: str | int = Field("15m", description="How long without events or spans counts as silence.")
    baseline: str | int = Field(
        "6h", description="The window before the silence in which the system must have reported normally."
    )
    min_events: int = Field(
        10,
        ge=1,
        strict=True,
        description="Events and spans in the baseline that make a system one that reports.",
    )

    _windows = field_validator("silent_for", "baseline", mode="before")(_positive)


class ThresholdRuleSpec(_RuleSpec):
    """Fires when a flow-health figure crosses a threshold (its path in ``GET /api/flow/health``)."""

    kind: Literal["threshold"] = Field(description="Rule kind: threshold on a flow-health figure.")
    severity: Severity = Field("ticket", description="The severity label.")
    figure: str = Field(
        min_length=1,
        description="Dotted path into the flow-health document, e.g. workflows.order_to_cash.in_flight "
        "or exceptions.open.",
    )
    op: Literal[">", ">=", "<", "<=", "==", "!="] = Field(description="The comparison with `value`.")
    value: float = Field(description="The threshold.")
    system: SystemName = Field(description="The system the figure concerns (the alert's system label).")


RuleSpec = (
    BurnRateRuleSpec
    | StuckOrdersRuleSpec
    | ExceptionAgingRuleSpec
    | SystemErrorRatioRuleSpec
    | SystemSilenceRuleSpec
    | ThresholdRuleSpec
)

RULE_KINDS: dict[str, type[_RuleSpec]] = {
    "burn_rate": BurnRateRuleSpec,
    "stuck_orders": StuckOrdersRuleSpec,
    "exception_aging": ExceptionAgingRuleSpec,
    "system_error_ratio": SystemErrorRatioRuleSpec,
    "system_silence": SystemSilenceRuleSpec,
    "threshold": ThresholdRuleSpec,
}


def _dispatch_on_kind(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    return dispatch_on_kind(value, handler, info, RULE_KINDS, "rule")


class AlertRulesFileV1(_Spec):
    """An alert-rules file: ``version: 1`` and its rules."""

    version: Literal[1] = Field(description="Spec version; 1.")
    rules: list[Annotated[RuleSpec, WrapValidator(_dispatch_on_kind)]] = Field(description="The alert rules.")
