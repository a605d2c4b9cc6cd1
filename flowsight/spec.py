"""The versioned YAML specs users write (workflows, topology), apart from the domain model.

Shape and types are checked here by pydantic; rules that span fields (unknown stages, cycles) are
checked by :mod:`flowsight.configfiles`, which also maps a valid spec to the frozen domain values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from flowsight.durations import parse_duration

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="lower_snake_case name")]
SystemName = Annotated[
    str, Field(pattern=r"^[a-z0-9_.-]{1,64}$", description="system name: [a-z0-9_.-]{1,64}")
]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_duration(value: str | int | float | None) -> str | int | float | None:
    if value is not None:
        parse_duration(value)
    return value


class StageSpec(_Spec):
    """One stage of a workflow, in the order orders move through them."""

    name: Name
    owner: SystemName = Field(description="The system that performs this stage.")
    sla: str | int | None = Field(
        None,
        description="Longest acceptable time after the previous stage (e.g. 15m); none for the first.",
    )
    in_sequence: bool = Field(
        True,
        description="False for a stage reachable at any point (such as cancelled); it never makes an "
        "order stuck.",
    )

    _sla = field_validator("sla", mode="before")(_check_duration)


class WorkflowSpec(_Spec):
    """A business workflow: ordered stages, terminal stages and the completion deadline."""

    name: Name
    stages: list[StageSpec] = Field(min_length=1)
    terminal_stages: list[Name] = Field(min_length=1)
    completion_deadline: str | int = Field(
        description="Time from the first stage within which the workflow must reach a terminal stage."
    )
    _deadline = field_validator("completion_deadline", mode="before")(_check_duration)


class WorkflowsFileV1(_Spec):
    """A workflows file, version 1."""

    version: Literal[1] = 1
    workflows: list[WorkflowSpec] = Field(min_length=1)


class SystemSpec(_Spec):
    """A system and the systems it depends on."""

    name: SystemName
    depends_on: list[SystemName] = Field(default_factory=list)


class TopologyFileV1(_Spec):
    """A topology file, version 1."""

    version: Literal[1] = 1
    systems: list[SystemSpec] = Field(min_length=1)


Scope = Literal["ingest", "read", "admin"]


class TokenSpec(_Spec):
    """One bearer token: who holds it and what it may do."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="who holds it, as logs and errors name it"
    )
    sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="hex SHA-256 of the token (keeps the token out of the file)",
    )
    token: str | None = Field(None, min_length=16, description="the token itself (for development)")
    scopes: list[Scope] = Field(min_length=1)
    systems: list[SystemName] | None = Field(
        None, min_length=1, description="with ingest: the only systems its events and spans may claim"
    )
    requests_per_second: float | None = Field(None, gt=0, description="its own rate limit")

    @model_validator(mode="after")
    def _one_secret(self) -> TokenSpec:
        if (self.sha256 is None) == (self.token is None):
            raise ValueError("give exactly one of sha256 and token")
        if self.systems is not None and "ingest" not in self.scopes:
            raise ValueError("systems limits what an ingest token may send; this token has no ingest scope")
        return self


class TokensFileV1(_Spec):
    """A tokens file, version 1."""

    version: Literal[1] = 1
    tokens: list[TokenSpec] = Field(min_length=1)


def dispatch_on_kind(
    value: Any,
    handler: ValidatorFunctionWrapHandler,
    info: ValidationInfo,
    kinds: Mapping[str, type[BaseModel]],
    noun: str,
) -> Any:
    """Validate ``value`` with the model its ``kind`` names (a wrap validator's body).

    Validating the chosen model directly keeps its errors at ``<field>`` of the item (a tagged
    union would put the tag into the path, ``sli.stage_latency.threshold``, which no file
    contains); a missing or unknown kind is one error at ``kind``.
    """
    if not isinstance(value, dict):
        return handler(value)
    names = ", ".join(kinds)
    kind = value.get("kind")
    model = kinds.get(kind) if isinstance(kind, str) else None
    if model is None:
        reason = (
            f"kind is required: one of {names}"
            if kind is None
            else f"unknown {noun} kind {kind!r}: expected one of {names}"
        )
        detail: InitErrorDetails = {
            "type": PydanticCustomError(f"{noun}_kind", reason),
            "loc": ("kind",),
            "input": kind,
        }
        raise ValidationError.from_exception_data(noun, [detail])
    return model.model_validate(value, context=info.context)
