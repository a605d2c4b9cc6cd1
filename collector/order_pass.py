"""One pass over a workflow's per-order state, shared by every figure that needs one.

Reading ``order_state`` (FINAL, with its stage maps) and cutting the maps at ``at`` is most of
the cost of a flow figure; the figures themselves are a few aggregates each. A pass is built
from *parts* — each brings its per-order columns, its aggregates and its parameters, and
decodes its own slice of the result row — so flow health and the SLO engine's order SLIs can
be computed in one read instead of one each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flowsight.store import Store
from flowsight.timefmt import as_utc
from flowsight.workflows import Workflow

AT = "{at:DateTime64(3, 'UTC')}"


def orders_sql(table: str) -> str:
    """One row per order of ``{wf}`` seen by ``{at}``, with its stage map ``r`` cut at ``{at}``.

    Orders whose every event lies before ``at`` (evaluating "now": all of them) skip the map
    filter; ``if`` evaluates it only for the rest."""
    return f"""
        SELECT correlation_id, first_seen, last_seen, channel, reached,
               if(last_seen <= {AT}, reached, mapFilter((k, v) -> v <= {AT}, reached)) AS r
        FROM {table} FINAL
        WHERE workflow = {{wf:String}} AND first_seen <= {AT}"""


@dataclass
class Part:
    """Columns computed per order, aggregates over them, their parameters and a decoder of the
    aggregates' values. Names of columns and parameters carry the part's prefix."""

    columns: list[str] = field(default_factory=list)
    aggregates: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    decode: Callable[[Sequence[Any]], Any] = lambda values: values


def stage_index(workflow: Workflow) -> dict[str, int]:
    """1-based position of every stage in ``t``: the sequence first, then the other stages
    (terminal stages outside the sequence, such as cancelled)."""
    names = [s.name for s in workflow.sequence]
    names += sorted(s.name for s in workflow.stages if s.name not in names)
    return {name: i + 1 for i, name in enumerate(names)}


def stage_time(position: int) -> str:
    """The column of :func:`base_columns` holding the time of the stage at ``position`` (0, a
    stage the workflow does not have: never reached)."""
    return f"t{position}" if position else "toInt64(0)"


def base_columns(workflow: Workflow) -> tuple[list[str], dict[str, Any]]:
    """What most parts use, per order, as Int64 milliseconds since the epoch (0: not reached):

    ``t1``, ``t2``, ... the time each stage was reached by ``at`` (positions of
    :func:`stage_index`; one map lookup per stage, after which every figure is scalar
    arithmetic, which the engine compiles), and ``t``, the same as an array for a position
    known only per order; ``done`` and ``done_ms`` (the first terminal stage), ``last`` (the
    last stage of the sequence reached), ``first_ms``, ``deadline_ms_at`` and ``at_ms``.
    """
    index = stage_index(workflow)
    sequence = workflow.sequence
    terminal = [stage_time(index[name]) for name in workflow.terminal_stages if name in index]
    never = 2**62
    earliest = (
        f"least({', '.join(f'if({t} > 0, {t}, {never})' for t in terminal)})"
        if len(terminal) > 1
        else (terminal[0] if terminal else "first_ms")
    )
    latest_first = ", ".join(f"{stage_time(i)} > 0, {i}" for i in range(len(sequence), 0, -1))
    columns = [
        "toUnixTimestamp64Milli({at:DateTime64(3, 'UTC')}) AS at_ms",
        "toUnixTimestamp64Milli(first_seen) AS first_ms",
        "last_seen <= {at:DateTime64(3, 'UTC')} AS seen_by_at",
        *(
            f"toUnixTimestamp64Milli(reached[{{stage{i}:String}}]) AS m{i}, "
            f"if(seen_by_at OR m{i} <= at_ms, m{i}, 0) AS t{i}"
            for i in index.values()
        ),
        f"[{', '.join(f't{i}' for i in index.values())}] AS t",
        "{slas:Array(Int64)} AS slas",
        f"({' OR '.join(f'{t} > 0' for t in terminal) or 'false'}) AS done",
        f"if(done, {earliest}, first_ms) AS done_ms",
        f"multiIf({latest_first}, 0) AS last" if sequence else "0 AS last",
        "first_ms + {deadline_ms:Int64} AS deadline_ms_at",
    ]
    params = {
        **{f"stage{i}": name for name, i in index.items()},
        "slas": [int(s.sla.total_seconds()) if s.sla else 0 for s in sequence],
        "deadline_ms": int(workflow.completion_deadline.total_seconds() * 1000),
    }
    return columns, params


def run(store: Store, table: str, workflow: Workflow, at: datetime, parts: Sequence[Part]) -> list[Any]:
    """Run the parts in one pass over ``table``; returns each part's decoded result."""
    columns, params = base_columns(workflow)
    aggregates: list[str] = []
    spans: list[tuple[int, int]] = []
    for part in parts:
        columns += part.columns
        params.update(part.params)
        spans.append((len(aggregates), len(aggregates) + len(part.aggregates)))
        aggregates += part.aggregates
    params.update({"wf": workflow.name, "at": as_utc(at).replace(tzinfo=None)})
    sql = f"""
        SELECT {", ".join(aggregates)}
        FROM (
            SELECT first_seen, channel, {", ".join(columns)}
            FROM ({orders_sql(table)}))"""
    [row] = store.rows(sql, params)
    return [part.decode(row[a:b]) for part, (a, b) in zip(parts, spans, strict=True)]
