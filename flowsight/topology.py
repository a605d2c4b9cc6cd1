"""Which system depends on which: the graph dependency-aware alerting walks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class System:
    """A system of the estate and the systems it depends on (its upstream)."""

    name: str
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class Topology:
    """The dependency graph; acyclic by construction (the loader rejects cycles)."""

    systems: tuple[System, ...]
    _by_name: Mapping[str, System] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {s.name: s for s in self.systems})

    def names(self) -> list[str]:
        return [s.name for s in self.systems]

    def upstream(self, name: str) -> list[str]:
        """Every system ``name`` depends on, directly or transitively, nearest first."""
        seen: list[str] = []
        frontier = list(self._by_name[name].depends_on) if name in self._by_name else []
        while frontier:
            current = frontier.pop(0)
            if current in seen:
                continue
            seen.append(current)
            frontier.extend(self._by_name[current].depends_on if current in self._by_name else ())
        return seen


def find_cycle(edges: Mapping[str, tuple[str, ...] | list[str]]) -> list[str] | None:
    """A dependency cycle as a path ``[a, b, ..., a]``, or None when the graph is acyclic."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in edges:
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


DEFAULT_TOPOLOGY = Topology(
    (
        System("oms"),
        System("payments"),
        System("tax"),
        System("middleware"),
        System("erp", ("middleware",)),
        System("wms", ("erp",)),
        System("shipping", ("wms",)),
        System("crm", ("oms",)),
    )
)
"""The retail default of the design: erp -> middleware, wms -> erp, shipping -> wms, crm -> oms."""
