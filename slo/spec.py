"""The versioned SLO spec users write (in the spirit of Sloth and OpenSLO), apart from the domain model.

Shape and types are checked here by pydantic; rules that need the workflow catalog (unknown
workflows and stages, stage order) or span SLOs (duplicate names, group_by keys) are checked by
:mod:`flowsight.slo.loading`, which also maps a valid spec to :mod:`flowsight.slo.model`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, ValidatorFunctionWrapHandler, field_validator

from flowsight.durations import parse_duration
from flowsight.spec import Name, SystemName, _Spec, dispatch_on_kind

CALENDAR_MONTH = "calendar_month"

LabelName = Annotated[
    str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]{0,63}$", description="Prometheus label name")
]


def _positive_duration(value: Any) -> Any:
    # Anything but text or a number is left to the type check, which names the expected type.
    if isinstance(value, str | int | float) and parse_duration(value) <= timedelta(0):
        raise ValueError("must be a duration greater than zero, such as 15m")
    return value


class CompletionSliSpec(_Spec):
    """Good: correlations that reach a terminal stage within the workflow's completion deadline."""

    kind: Literal["completion"] = Field(description="SLI kind: completion.")
    workflow: Name = Field(description="The workflow whose completions are measured.")


class StageLatencySliSpec(_Spec):
    """Good: correlations that reach ``to_stage`` within ``threshold`` of ``from_stage``."""

    kind: Literal["stage_latency"] = Field(description="SLI kind: stage_latency (the sync-lag family).")
    workflow: Name = Field(description="The workflow both stages belong to.")
    from_stage: Name = Field(description="The stage the latency is measured from.")
    to_stage: Name = Field(description="The stage that must follow within the threshold.")
    threshold: str | int = Field(description="Longest acceptable time between the two stages (e.g. 15m).")

    _threshold = field_validator("threshold", mode="before")(_positive_duration)


class ExceptionAgeSliSpec(_Spec):
    """Good: exceptions resolved within ``threshold`` of being opened."""

    kind: Literal["exception_age"] = Field(description="SLI kind: exception_age.")
    workflow: Name | None = Field(
        None, description="Only this workflow's exceptions; all workflows if unset."
    )
    threshold: str | int = Field(
        description="Longest acceptable time for an exception to stay open (e.g. 4h)."
    )

    _threshold = field_validator("threshold", mode="before")(_positive_duration)


class SpanErrorRatioSliSpec(_Spec):
    """Good: spans of a service that did not end with an error status."""

    kind: Literal["span_error_ratio"] = Field(description="SLI kind: span_error_ratio, from traces.")
    services: list[SystemName] | None = Field(
        None, min_length=1, description="The services (span ServiceName) measured; every service if unset."
    )


class FreshnessSliSpec(_Spec):
    """Good: evaluations at which a system's newest ingested data is younger than ``threshold``."""

    kind: Literal["freshness"] = Field(description="SLI kind: freshness of ingested data.")
    systems: list[SystemName] | None = Field(
        None, min_length=1, description="The systems measured; every reporting system if unset."
    )
    threshold: str | int = Field(description="Oldest acceptable age of a system's newest data (e.g. 15m).")

    _threshold = field_validator("threshold", mode="before")(_positive_duration)


SliSpec = Annotated[
    CompletionSliSpec | StageLatencySliSpec | ExceptionAgeSliSpec | SpanErrorRatioSliSpec | FreshnessSliSpec,
    Field(discriminator="kind"),
]

SLI_KINDS: dict[str, type[_Spec]] = {
    "completion": CompletionSliSpec,
    "stage_latency": StageLatencySliSpec,
    "exception_age": ExceptionAgeSliSpec,
    "span_error_ratio": SpanErrorRatioSliSpec,
    "freshness": FreshnessSliSpec,
}


class SloSpec(_Spec):
    """One service level objective: an SLI, the share of good events wanted, and over what window."""

    name: Name = Field(description="Unique lower_snake_case name; the `slo` label of its series and alerts.")
    description: str = Field("", description="What the SLO promises, in words a reader of the page knows.")
    objective: float = Field(
        description="Share of good events wanted, strictly between 0 and 1 (e.g. 0.995 for 99.5%)."
    )
    window: str | int = Field(
        description="The compliance window: a rolling duration such as 28d, or calendar_month."
    )
    group_by: list[str] = Field(
        default_factory=list,
        description="Keys giving one series per group: channel, system or attributes.<key>; none for "
        "one series.",
    )
    min_events: int = Field(
        20,
        ge=0,
        strict=True,
        description="Fewest events a series needs in a burn window before it can alert, so low traffic "
        "cannot page.",
    )
    labels: dict[LabelName, str] = Field(
        default_factory=dict, description="Extra labels carried by the SLO's series and alerts."
    )
    sli: SliSpec = Field(description="What counts as a good and a total event; `kind` selects the SLI.")

    @field_validator("objective", mode="before")
    @classmethod
    def _objective_inside_zero_and_one(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("objective must be a number between 0 and 1, such as 0.995")
        if value == 1:
            raise ValueError(f"objective of {value} leaves no error budget: it must be below 1, e.g. 0.999")
        if value > 1:
            raise ValueError(f"objective of {value} is above 1: write a fraction, e.g. 0.995 for 99.5%")
        if value <= 0:
            raise ValueError(f"objective of {value} is not above 0; use e.g. 0.99")
        return value

    @field_validator("window", mode="before")
    @classmethod
    def _window_is_duration_or_calendar_month(cls, value: Any) -> Any:
        if value == CALENDAR_MONTH:
            return value
        try:
            _positive_duration(value)
        except ValueError as exc:
            raise ValueError(f"window must be a duration such as 28d, or calendar_month: {exc}") from None
        return value

    @field_validator("sli", mode="wrap")
    @classmethod
    def _dispatch_on_kind(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        return dispatch_on_kind(value, handler, info, SLI_KINDS, "sli")


class SloFileV1(_Spec):
    """An SLO file, version 1."""

    version: Literal[1] = Field(1, description="Spec version; 1 is the only version.")
    slos: list[SloSpec] = Field(min_length=1, description="The SLOs, each with a unique name.")
