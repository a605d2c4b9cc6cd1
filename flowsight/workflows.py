"""The workflow domain model: ordered stages, owner systems, SLAs and terminal stages.

These are the frozen values the engine computes with; what users write lives in
:mod:`flowsight.spec` and is mapped here by :mod:`flowsight.configfiles`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta


@dataclass(frozen=True)
class Stage:
    """One step of a workflow.

    ``sla`` is the longest acceptable time after the previous stage of the sequence; the first
    stage has none. A stage outside the sequence (``in_sequence=False``, such as ``cancelled``)
    may be reached at any point and never makes an order stuck.
    """

    name: str
    owner: str
    sla: timedelta | None = None
    in_sequence: bool = True


@dataclass(frozen=True)
class Workflow:
    """A business workflow that correlations (orders, returns) move through."""

    name: str
    stages: tuple[Stage, ...]
    terminal_stages: frozenset[str]
    completion_deadline: timedelta
    _by_name: Mapping[str, Stage] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {stage.name: stage for stage in self.stages})

    def stage(self, name: str) -> Stage | None:
        """The stage called ``name``, or None."""
        return self._by_name.get(name)

    def has_stage(self, name: str) -> bool:
        return name in self._by_name

    @property
    def sequence(self) -> tuple[Stage, ...]:
        """The ordered stages (those an order moves through one after another)."""
        return tuple(stage for stage in self.stages if stage.in_sequence)

    def previous(self, name: str) -> Stage | None:
        """The stage before ``name`` in the sequence, or None for the first or an out-of-sequence stage."""
        sequence = self.sequence
        for index, stage in enumerate(sequence):
            if stage.name == name:
                return sequence[index - 1] if index > 0 else None
        return None


@dataclass(frozen=True)
class WorkflowCatalog:
    """Every configured workflow, by name."""

    workflows: tuple[Workflow, ...]
    _by_name: Mapping[str, Workflow] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {wf.name: wf for wf in self.workflows})

    def get(self, name: str) -> Workflow | None:
        return self._by_name.get(name)

    def __iter__(self) -> Iterator[Workflow]:
        return iter(self.workflows)

    def __len__(self) -> int:
        return len(self.workflows)

    def names(self) -> list[str]:
        return [wf.name for wf in self.workflows]

    @classmethod
    def of(cls, workflows: Iterable[Workflow]) -> WorkflowCatalog:
        return cls(tuple(workflows))


def _minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


ORDER_TO_CASH = Workflow(
    name="order_to_cash",
    stages=(
        Stage("order_created", "oms"),
        Stage("payment_authorized", "payments", _minutes(5)),
        Stage("inventory_reserved", "erp", _minutes(10)),
        Stage("erp_order_created", "erp", _minutes(15)),
        Stage("fulfillment_released", "wms", _minutes(30)),
        Stage("shipped", "shipping", timedelta(hours=24)),
        Stage("invoiced", "erp", timedelta(hours=2)),
        Stage("cancelled", "oms", in_sequence=False),
    ),
    terminal_stages=frozenset({"invoiced", "cancelled"}),
    completion_deadline=timedelta(hours=72),
)

RETURN_TO_REFUND = Workflow(
    name="return_to_refund",
    stages=(
        Stage("return_requested", "oms"),
        Stage("return_received", "wms", timedelta(days=14)),
        Stage("refund_issued", "payments", timedelta(hours=24)),
        Stage("refund_posted", "erp", timedelta(hours=4)),
    ),
    terminal_stages=frozenset({"refund_posted"}),
    completion_deadline=timedelta(days=21),
)

DEFAULT_WORKFLOWS = WorkflowCatalog((ORDER_TO_CASH, RETURN_TO_REFUND))
"""The retail defaults of the design: order-to-cash and return-to-refund."""
