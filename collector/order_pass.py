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


def base_columns(workflow: Workflow) -> tuple[list[str], dict[str, Any]]:
    """What most parts use, per order, as Int64 milliseconds since the epoch (0: not reached):

    ``t``, the time each stage was reached by ``at`` (positions of :func:`stage_index`; one map
    lookup per stage, after which every figure is integer arithmetic on positions); ``done``
    and ``done_ms`` (the first terminal stage), ``last`` (the last stage of the sequence
    reached), ``first_ms``, ``deadline_ms_at`` and ``at_ms``.
    """
    index = stage_index(workflow)
    sequence = workflow.sequence
    columns = [
        "toUnixTimestamp64Milli({at:DateTime64(3, 'UTC')}) AS at_ms",
        "toUnixTimestamp64Milli(first_seen) AS first_ms",
        # One hash lookup per reached stage (transform) instead of a string search per stage.
        "arrayMap(k -> transform(k, {all_stages:Array(String)}, {positions:Array(UInt8)}, toUInt8(0)), "
        "mapKeys(reached)) AS pos",
        "arrayMap(x -> toUnixTimestamp64Milli(x), mapValues(reached)) AS vals",
        "arrayMap(i -> vals[indexOf(pos, i)], {positions:Array(UInt8)}) AS t_all",
        "if(last_seen <= {at:DateTime64(3, 'UTC')}, t_all, arrayMap(x -> if(x <= at_ms, x, 0), t_all)) AS t",
        "{slas:Array(Int64)} AS slas",
        "arrayFilter(i -> t[i] > 0, {terminal_idx:Array(UInt8)}) AS hit",
        "notEmpty(hit) AS done",
        "if(done, arrayMin(arrayMap(i -> t[i], hit)), first_ms) AS done_ms",
        "arrayLastIndex(x -> x > 0, arraySlice(t, 1, {n_seq:UInt8})) AS last",
        "first_ms + {deadline_ms:Int64} AS deadline_ms_at",
    ]
    params = {
        "all_stages": list(index),
        "positions": list(index.values()),
        "n_seq": len(sequence),
        "slas": [int(s.sla.total_seconds()) if s.sla else 0 for s in sequence],
        "terminal_idx": sorted(index[name] for name in workflow.terminal_stages if name in index),
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
