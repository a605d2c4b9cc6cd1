"""Scenarios: what goes wrong, for how long, and how each step feels it.

A scenario is active over an interval of simulated time. While active it may take a system
down (its steps fail, and so do the steps of systems that depend on it through the topology),
slow a system's steps, make them fail more often, or hold back the marketplace's batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flowsight.topology import Topology


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    duration_s: float
    down: tuple[str, ...] = ()
    slower: dict[str, float] = field(default_factory=dict)
    """Slow-down factors by system or by stage."""
    failing: dict[str, float] = field(default_factory=dict)
    marketplace_hold_s: float = 0.0
    held: tuple[str, ...] = ()
    """Stages whose steps wait for the scenario to end (a queue nobody works)."""


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "erp-outage",
            "The ERP stops answering for 45 minutes: orders pile up at the ERP's stages and, behind "
            "them, in the warehouse; exceptions age; one page names the ERP as the root cause.",
            45 * 60,
            down=("erp",),
        ),
        Scenario(
            "shipping-degraded",
            "The carrier integration slows to a crawl and a third of hand-overs fail for 3 hours.",
            3 * 3600,
            slower={"shipping": 6.0},
            failing={"shipping": 0.35},
        ),
        Scenario(
            "marketplace-batch-delay",
            "The marketplace holds its order batches for 2 hours: the marketplace falls silent, "
            "then its orders arrive late and sync lag rises.",
            2 * 3600,
            marketplace_hold_s=2 * 3600,
        ),
        Scenario(
            "refund-backlog",
            "Refunds queue up at payments for 30 hours: returns wait past the 24h refund SLA and "
            "refund processing burns its budget, until payments work the backlog off.",
            30 * 3600,
            held=("refund_issued",),
        ),
    )
}


@dataclass
class Active:
    scenario: Scenario
    start: float
    end: float


class Conditions:
    """The scenarios in force, as the simulator asks about them at a given simulated time."""

    def __init__(self, topology: Topology):
        self.topology = topology
        self.active: list[Active] = []

    def start(self, name: str, at: float) -> Active:
        scenario = SCENARIOS[name]
        entry = Active(scenario, at, at + scenario.duration_s)
        self.active.append(entry)
        return entry

    def current(self, at: float) -> list[Active]:
        return [a for a in self.active if a.start <= at < a.end]

    def down(self, system: str, at: float) -> str | None:
        """The system that makes ``system`` fail at ``at`` (itself or one upstream), or None."""
        affected = {system, *self.topology.upstream(system)}
        for entry in self.current(at):
            for name in entry.scenario.down:
                if name in affected:
                    return name
        return None

    def slower(self, system: str, at: float, stage: str = "") -> float:
        """How much slower a step of ``system`` (or that ``stage``) is at ``at``."""
        factor = 1.0
        for entry in self.current(at):
            factor *= entry.scenario.slower.get(system, 1.0) * entry.scenario.slower.get(stage, 1.0)
        return factor

    def failing(self, system: str, at: float) -> float:
        return max([e.scenario.failing.get(system, 0.0) for e in self.current(at)] or [0.0])

    def held_until(self, stage: str, at: float) -> float | None:
        """When a step of ``stage`` due at ``at`` may happen, if a scenario holds it; else None."""
        ends = [e.end for e in self.current(at) if stage in e.scenario.held]
        return max(ends) if ends else None

    def marketplace_hold(self, at: float) -> float:
        """Until when the marketplace holds a batch due at ``at`` (``at`` itself when it does not)."""
        for entry in self.current(at):
            if entry.scenario.marketplace_hold_s:
                return max(at, entry.end)
        return at
