"""Flow figures read from the per-order state (``order_state``) and, for the few rows that need
them, from ``events``: funnel, completion, stuck orders, open exceptions, stage-to-stage lag and
per-system ingest. Every figure is computed inside ClickHouse; only aggregates come back.

All reads take ``at`` and use only data that occurred up to it (``mapFilter`` over the stage
maps), so an evaluation can be replayed as of any time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flowsight.collector.order_pass import Part, base_columns, orders_sql, run, stage_index, stage_time
from flowsight.ddl import Schema
from flowsight.store import Store
from flowsight.timefmt import as_utc
from flowsight.workflows import Workflow

_AT = "{at:DateTime64(3, 'UTC')}"


def _orders(table: str) -> str:
    return orders_sql(table)


@dataclass(frozen=True)
class Completion:
    in_flight: int
    completed: int
    due: int
    on_time: int


@dataclass(frozen=True)
class Summary:
    funnel: dict[str, int]
    completion: Completion
    stuck_by_stage: dict[str, int]
    by_channel: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Per channel: orders due and orders completed on time."""


def summary_part(workflow: Workflow) -> Part:
    """Funnel, completion and stuck orders by the stage they wait for."""
    names = list(stage_index(workflow))
    n_seq = len(workflow.sequence)

    def decode(values: Sequence[Any]) -> Summary:
        funnel, (stuck_keys, stuck_counts) = values[0], values[5]
        (due_keys, due_counts), (on_time_keys, on_time_counts) = values[6], values[7]
        on_time = dict(zip(on_time_keys, on_time_counts, strict=True))
        return Summary(
            funnel={name: int(n) for name, n in zip(names, funnel, strict=False) if n},
            completion=Completion(*(int(x) for x in values[1:5])),
            stuck_by_stage={names[int(k) - 1]: int(n) for k, n in zip(stuck_keys, stuck_counts, strict=True)},
            by_channel={
                str(c): (int(n), int(on_time.get(c, 0))) for c, n in zip(due_keys, due_counts, strict=True)
            },
        )

    return Part(
        columns=[
            f"NOT done AND last BETWEEN 1 AND {n_seq - 1} AND at_ms - t[last] > 1000 * slas[last + 1] AS stuck"
        ],
        aggregates=[
            f"[{', '.join(f'countIf(t{i} > 0)' for i in range(1, len(names) + 1))}]",
            "countIf(NOT done)",
            "countIf(done)",
            "countIf(done OR at_ms - first_ms > {deadline_ms:Int64})",
            "countIf(done AND done_ms - first_ms <= {deadline_ms:Int64})",
            "sumMapIf([toUInt8(last + 1)], [toUInt64(1)], stuck)",
            "sumMapIf([channel], [toUInt64(1)], done OR at_ms - first_ms > {deadline_ms:Int64})",
            "sumMapIf([channel], [toUInt64(1)], done AND done_ms - first_ms <= {deadline_ms:Int64})",
        ],
        decode=decode,
    )


def lag_part(workflow: Workflow, pairs: Sequence[tuple[str, str]]) -> Part:
    """p50, p95, p99 and the count of the time between the stages of each pair."""
    index = stage_index(workflow)
    aggregates = []
    for a, b in pairs:
        ta, tb = stage_time(index[a]), stage_time(index[b])
        has = f"{ta} > 0 AND {tb} > 0"
        lag = f"({tb} - {ta}) / 1000"
        aggregates += [f"quantilesExactIf(0.5, 0.95, 0.99)({lag}, {has})", f"countIf({has})"]

    def decode(values: Sequence[Any]) -> dict[tuple[str, str], tuple[float, float, float, int]]:
        out: dict[tuple[str, str], tuple[float, float, float, int]] = {}
        for i, (a, b) in enumerate(pairs):
            q, n = values[2 * i], int(values[2 * i + 1])
            if n:
                out[(a, b)] = (float(q[0]), float(q[1]), float(q[2]), n)
        return out

    return Part(aggregates=aggregates or ["count()"], decode=decode)


def _sli_columns(
    workflow: Workflow, specs: Sequence[OrderSli], windows: Sequence[int]
) -> tuple[list[str], list[str], dict[str, Any]]:
    """Per-order columns and, per spec, two aggregates of per-window counts (good, decided), in
    milliseconds since the epoch.

    ``completion``: completed within the deadline (good); decided when completed or at the
    deadline. ``stage_latency``: ``to`` reached within the threshold of ``from`` (good);
    decided when reached or at the threshold, for orders that reached ``from``. An order
    counts in a window when it was decided inside it (``0 <= at - decided < window``); the
    windows are one array, summed element-wise (``sumForEach``), not a ``countIf`` each.
    """
    index = stage_index(workflow)
    columns, aggregates = [], []
    params: dict[str, Any] = {"sli_windows": [int(w) * 1000 for w in windows]}
    never = 2**62  # an age past every window: not decided by ``at``
    for k, spec in enumerate(specs):
        if spec.kind == "completion":
            columns.append(
                f"done AND done_ms <= deadline_ms_at AS good{k}, if(good{k}, done_ms, deadline_ms_at) AS decided{k}, "
                f"if(decided{k} <= at_ms, at_ms - decided{k}, {never}) AS age{k}"
            )
        else:
            a, b = stage_time(index.get(spec.from_stage, 0)), stage_time(index.get(spec.to_stage, 0))
            params[f"st{k}"] = int(spec.threshold_s * 1000)
            columns.append(
                f"{a} + {{st{k}:Int64}} AS limit{k}, "
                f"{b} > 0 AND {b} <= limit{k} AS good{k}, if(good{k}, {b}, limit{k}) AS decided{k}, "
                f"if({a} > 0 AND decided{k} <= at_ms, at_ms - decided{k}, {never}) AS age{k}"
            )
        flags = f"arrayMap(w -> toUInt64(age{k} < w), {{sli_windows:Array(Int64)}})"
        aggregates += [f"sumForEachIf({flags}, good{k})", f"sumForEach({flags})"]
    return columns, aggregates, params


def _split(values: Sequence[Any], specs: int, windows: int) -> list[list[tuple[int, int]]]:
    """``[good per window], [decided per window]`` per spec as ``[(good, decided), ...]`` per spec;
    an empty array (no rows) counts as zeros."""
    out = []
    for k in range(specs):
        good, total = values[2 * k] or [0] * windows, values[2 * k + 1] or [0] * windows
        out.append([(int(g), int(n)) for g, n in zip(good, total, strict=True)])
    return out


def sli_part(workflow: Workflow, specs: Sequence[OrderSli], windows: Sequence[int]) -> Part:
    """Ungrouped counts of order SLIs, one ``GroupCounts`` per spec (empty when nothing decided)."""
    columns, aggregates, params = _sli_columns(workflow, specs, windows)

    def decode(values: Sequence[Any]) -> list[GroupCounts]:
        return [
            {(): c} if any(g or t for g, t in c) else {} for c in _split(values, len(specs), len(windows))
        ]

    return Part(columns=columns, aggregates=aggregates, params=params, decode=decode)


@dataclass(frozen=True)
class WorkflowScan:
    """What one pass over a workflow's orders gives: flow figures and order-SLI counts."""

    summary: Summary
    lags: dict[tuple[str, str], tuple[float, float, float, int]]
    slis: list[GroupCounts]


class OrderFigures:
    """ClickHouse-backed reads of the flow figures (the SLO engine's source of order state)."""

    def __init__(self, store: Store, schema: Schema):
        self.store = store
        self.schema = schema

    def _params(self, workflow: Workflow, at: datetime, **extra: Any) -> dict[str, Any]:
        return {"wf": workflow.name, "at": as_utc(at).replace(tzinfo=None), **extra}

    def summary(self, workflow: Workflow, at: datetime) -> Summary:
        """Funnel, completion and stuck orders by stage, in one pass over the per-order state."""
        [summary] = run(self.store, self.schema.table("order_state"), workflow, at, [summary_part(workflow)])
        return summary

    def scan(
        self,
        workflow: Workflow,
        at: datetime,
        *,
        pairs: Sequence[tuple[str, str]],
        slis: Sequence[OrderSli] = (),
        windows: Sequence[int] = (),
    ) -> WorkflowScan:
        """The summary, the lag percentiles of ``pairs`` and the ungrouped counts of ``slis`` over
        ``windows``, all in one pass over the workflow's orders."""
        parts = [summary_part(workflow), lag_part(workflow, pairs)]
        if slis:
            parts.append(sli_part(workflow, slis, windows))
        results = run(self.store, self.schema.table("order_state"), workflow, at, parts)
        return WorkflowScan(results[0], results[1], results[2] if slis else [])

    def _stuck_sql(self, workflow: Workflow) -> str:
        return f"""
            SELECT correlation_id, channel, stages[last + 1] AS waiting_for,
                   dateDiff('millisecond', r[stages[last]], {_AT}) / 1000 AS waited_s,
                   slas[last + 1] AS sla_s
            FROM (
                SELECT correlation_id, channel, r,
                       {{stages:Array(String)}} AS stages, {{slas:Array(Int64)}} AS slas,
                       arrayLastIndex(s -> mapContains(r, s), stages) AS last
                FROM ({_orders(self.schema.table("order_state"))})
                WHERE NOT arrayExists(t -> mapContains(r, t), {{terminal:Array(String)}}))
            WHERE last BETWEEN 1 AND length(stages) - 1 AND waited_s > sla_s"""

    def _stuck_params(self, workflow: Workflow, at: datetime, **extra: Any) -> dict[str, Any]:
        sequence = workflow.sequence
        return self._params(
            workflow,
            at,
            stages=[s.name for s in sequence],
            slas=[int(s.sla.total_seconds()) if s.sla else 0 for s in sequence],
            terminal=sorted(workflow.terminal_stages),
            **extra,
        )

    def stuck_orders(
        self, workflow: Workflow, at: datetime, *, stages: Sequence[str] | None, limit: int, offset: int
    ) -> tuple[int, list[dict[str, Any]]]:
        """A page of stuck orders (optionally only those waiting for ``stages``), longest waiting
        first, and how many there are."""
        where = "WHERE waiting_for IN {only:Array(String)}" if stages is not None else ""
        params = self._stuck_params(workflow, at, only=list(stages or []), limit=limit, offset=offset)
        total = self.store.rows(f"SELECT count() FROM ({self._stuck_sql(workflow)}) {where}", params)[0][0]
        rows = self.store.dicts(
            f"""SELECT correlation_id, channel, waiting_for, waited_s, sla_s
                FROM ({self._stuck_sql(workflow)}) {where}
                ORDER BY waited_s DESC, correlation_id
                LIMIT {{limit:UInt32}} OFFSET {{offset:UInt32}}""",
            params,
        )
        return int(total), rows

    def open_exceptions(
        self, workflow: Workflow, at: datetime
    ) -> list[tuple[str, int, int, int, int, float]]:
        """Open exceptions per stage as ``(stage, <1h, 1-4h, 4-24h, >24h, oldest age in s)``."""
        return self.exception_scan(at, [])[0].get(workflow.name, [])

    def exception_scan(
        self, at: datetime, ages: Sequence[ExceptionAge]
    ) -> tuple[dict[str, list[tuple[str, int, int, int, int, float]]], list[GroupCounts]]:
        """Every workflow's open exceptions per stage (as :meth:`open_exceptions`), and the
        counts of ``ages`` (see :meth:`SliCounts.exception_age`), from one read of the
        exceptions of :func:`exception_sql`."""
        columns, aggregates = [], []
        params: dict[str, Any] = {"wf": "", "all": 1, "at": as_utc(at).replace(tzinfo=None)}
        for k, age in enumerate(ages):
            applies = f"workflow = {{ew{k}:String}}" if age.workflow else "1"
            params.update({f"ew{k}": age.workflow or "", f"et{k}": int(age.threshold_s * 1000)})
            columns.append(
                f"{applies} AS applies{k}, opened + toIntervalMillisecond({{et{k}:Int64}}) AS limit{k}, "
                f"resolved IS NOT NULL AND resolved <= limit{k} AS good{k}, "
                f"if(good{k}, assumeNotNull(resolved), limit{k}) AS decided{k}"
            )
            for i, w in enumerate(age.windows):
                params[f"ew{k}_{i}"] = int(w)
                inside = (
                    f"applies{k} AND decided{k} > {_AT} - toIntervalSecond({{ew{k}_{i}:UInt32}}) "
                    f"AND decided{k} <= {_AT}"
                )
                aggregates += [f"countIf({inside} AND good{k})", f"countIf({inside})"]
        extra_columns = "".join(f", {c}" for c in columns)
        extra_aggregates = "".join(f", {a}" for a in aggregates)
        rows = self.store.rows(
            f"""
            SELECT workflow, stage,
                   countIf(open AND age < 3600), countIf(open AND age >= 3600 AND age < 14400),
                   countIf(open AND age >= 14400 AND age < 86400), countIf(open AND age >= 86400),
                   maxIf(age, open){extra_aggregates}
            FROM (
                SELECT workflow, stage, opened, resolved, resolved IS NULL AS open,
                       dateDiff('second', opened, {_AT}) AS age{extra_columns}
                FROM ({exception_sql(self.schema.table("events"))}))
            GROUP BY workflow, stage ORDER BY workflow, stage
            """,
            params,
        )
        open_by_workflow: dict[str, list[tuple[str, int, int, int, int, float]]] = {}
        totals = [[0] * (2 * len(age.windows)) for age in ages]
        for row in rows:
            buckets = [int(x) for x in row[2:6]]
            if any(buckets):
                open_by_workflow.setdefault(str(row[0]), []).append((str(row[1]), *buckets, float(row[6])))  # type: ignore[arg-type]
            offset = 7
            for k, age in enumerate(ages):
                n = 2 * len(age.windows)
                totals[k] = [a + int(b) for a, b in zip(totals[k], row[offset : offset + n], strict=True)]
                offset += n
        counts: list[GroupCounts] = []
        for total in totals:
            pairs = list(zip(total[0::2], total[1::2], strict=True))
            counts.append({(): pairs} if any(total) else {})
        return open_by_workflow, counts

    def lag_quantiles(
        self, workflow: Workflow, pairs: Sequence[tuple[str, str]], at: datetime
    ) -> dict[tuple[str, str], tuple[float, float, float, int]]:
        """p50, p95, p99 (seconds) of the time from stage ``a`` to stage ``b``, and the count,
        for every pair in one pass (an aggregate per pair, no row per pair)."""
        if not pairs:
            return {}
        [lags] = run(self.store, self.schema.table("order_state"), workflow, at, [lag_part(workflow, pairs)])
        return lags

    def system_ingest(self, at: datetime, window_s: int) -> dict[str, tuple[datetime, float, int]]:
        """Per system over the window before ``at``: latest event time, p95 of the delay from
        occurrence to ingest (seconds), and the event count."""
        rows = self.store.rows(
            f"""
            SELECT system, max(occurred_at),
                   quantile(0.95)(greatest(dateDiff('millisecond', occurred_at, ingested_at), 0)) / 1000,
                   count()
            FROM {self.schema.table("events")}
            WHERE occurred_at <= {_AT} AND occurred_at > {_AT} - toIntervalSecond({{window:UInt32}})
            GROUP BY system
            """,
            {"at": as_utc(at).replace(tzinfo=None), "window": window_s},
        )
        return {str(s): (as_utc(last), float(p95), int(n)) for s, last, p95, n in rows}


def _window_aggregates(moment: str, good: str, windows: Sequence[int]) -> str:
    """``countIf`` pairs (good, total) for each window: outcomes decided in ``(at - w, at]``."""
    parts = []
    for i in range(len(windows)):
        inside = f"{moment} > {_AT} - toIntervalSecond({{w{i}:UInt32}}) AND {moment} <= {_AT}"
        parts.append(f"countIf({inside} AND {good}), countIf({inside})")
    return ",\n                   ".join(parts)


GroupCounts = dict[tuple[str, ...], list[tuple[int, int]]]
"""Per group (the values of the group_by keys, ``()`` when ungrouped): ``(good, total)`` per window."""


def _per_group(rows: Sequence[Sequence[Any]]) -> GroupCounts:
    """Rows of ``[group values], good_0, total_0, good_1, total_1, ...`` as
    ``{(values...): [(good, total), ...]}``; groups with nothing decided in any window are left out."""
    out: GroupCounts = {}
    for row in rows:
        counts = [int(x) for x in row[1:]]
        if not any(counts):
            continue
        out[tuple(str(v) for v in row[0])] = list(zip(counts[0::2], counts[1::2], strict=True))
    return out


def _group_array(expressions: Sequence[str]) -> str:
    """The group key as an array of strings (an empty one when ungrouped)."""
    return f"[{', '.join(f'toString({e})' for e in expressions)}]" if expressions else "emptyArrayString()"


def attribute_key(group_key: str) -> str | None:
    """``attributes.sku`` -> ``sku``; None for the other group keys."""
    return group_key.removeprefix("attributes.") if group_key.startswith("attributes.") else None


def _attribute_params(group_by: Sequence[str]) -> dict[str, str]:
    return {f"g{i}": key for i, g in enumerate(group_by) if (key := attribute_key(g)) is not None}


@dataclass(frozen=True)
class OrderSli:
    """One order-based SLI to count: ``completion``, or ``stage_latency`` between two stages."""

    kind: str
    from_stage: str = ""
    to_stage: str = ""
    threshold_s: float = 0.0


@dataclass(frozen=True)
class ExceptionAge:
    """One ungrouped exception_age SLI to count: exceptions of ``workflow`` (None: all) resolved
    within ``threshold_s``, per window."""

    workflow: str | None
    threshold_s: float
    windows: tuple[int, ...]


class SliCounts:
    """Good and total events of order-based SLIs per window, computed inside ClickHouse.

    An order counts once its outcome is decided: when it succeeds, or when its deadline (or
    threshold) passes without success. Orders not yet decided count as neither good nor bad.

    Series split by ``group_by`` keys: ``channel`` (the order's), ``system`` (spans: their
    service; exceptions: the system that reported the failure; freshness: the reporting
    system) and ``attributes.<key>`` (orders: the value on the order's earliest event carrying
    the key; exceptions: on the events of that stage; spans: the span attribute). Orders without
    the attribute form the group with an empty value.
    """

    def __init__(self, store: Store, schema: Schema):
        self.store = store
        self.schema = schema

    def _attributes_join(self, group_by: Sequence[str]) -> str:
        """A LEFT JOIN adding ``attr<i>`` per attribute key to one row per order of ``{wf}``."""
        keys = [i for i, g in enumerate(group_by) if attribute_key(g) is not None]
        if not keys:
            return ""
        columns = ", ".join(
            f"argMinIf(attributes[{{g{i}:String}}], occurred_at, mapContains(attributes, {{g{i}:String}})) AS attr{i}"
            for i in keys
        )
        carries = " OR ".join(f"mapContains(attributes, {{g{i}:String}})" for i in keys)
        return f"""
            LEFT JOIN (
                SELECT correlation_id, {columns}
                FROM {self.schema.table("events")}
                WHERE workflow = {{wf:String}} AND occurred_at <= {_AT} AND ({carries})
                GROUP BY correlation_id) AS attrs USING correlation_id"""

    def order_slis(
        self,
        workflow: Workflow,
        specs: Sequence[OrderSli],
        at: datetime,
        windows: Sequence[int],
        *,
        group_by: Sequence[str] = (),
    ) -> list[GroupCounts]:
        """Counts of several order-based SLIs of one workflow in one pass over its orders, per
        group of ``group_by`` (see :func:`_sli_columns` for what counts)."""
        table = self.schema.table("order_state")
        if not group_by:
            [counts] = run(self.store, table, workflow, at, [sli_part(workflow, specs, windows)])
            return counts
        base, params = base_columns(workflow)
        columns, aggregates, sli_params = _sli_columns(workflow, specs, windows)
        params.update(sli_params)
        params.update(
            {"wf": workflow.name, "at": as_utc(at).replace(tzinfo=None), **_attribute_params(group_by)}
        )
        group = _group_array(["channel" if g == "channel" else f"attr{i}" for i, g in enumerate(group_by)])
        sql = f"""
            SELECT grp, {", ".join(aggregates)}
            FROM (
                SELECT {group} AS grp, {", ".join(base + columns)}
                FROM ({orders_sql(table)}) AS orders {self._attributes_join(group_by)})
            GROUP BY grp ORDER BY grp"""
        out: list[GroupCounts] = [{} for _ in specs]
        for row in self.store.rows(sql, params):
            for k, counts in enumerate(_split(row[1:], len(specs), len(windows))):
                if any(g or n for g, n in counts):
                    out[k][tuple(str(v) for v in row[0])] = counts
        return out

    def completion(
        self, workflow: Workflow, at: datetime, windows: Sequence[int], *, group_by: Sequence[str] = ()
    ) -> GroupCounts:
        """Orders completed within the deadline (good) among those decided, per window."""
        return self.order_slis(workflow, [OrderSli("completion")], at, windows, group_by=group_by)[0]

    def stage_latency(
        self,
        workflow: Workflow,
        from_stage: str,
        to_stage: str,
        threshold_s: float,
        at: datetime,
        windows: Sequence[int],
        *,
        group_by: Sequence[str] = (),
    ) -> GroupCounts:
        """Orders reaching ``to_stage`` within the threshold of ``from_stage`` (good), per window."""
        spec = OrderSli("stage_latency", from_stage, to_stage, threshold_s)
        return self.order_slis(workflow, [spec], at, windows, group_by=group_by)[0]

    def exception_age(
        self,
        workflow: Workflow | None,
        threshold_s: float,
        at: datetime,
        windows: Sequence[int],
        *,
        group_by: Sequence[str] = (),
    ) -> GroupCounts:
        """Exceptions resolved within the threshold (good), decided when resolved or when the
        threshold passes while open, per window. ``workflow`` None means every workflow."""
        state = self.schema.table("order_state")
        carried: list[tuple[str, str]] = []
        keys: list[str] = []
        channel_join = ""
        for i, g in enumerate(group_by):
            if g == "channel":
                keys.append("order_channel")
                channel_join = f"""
                    LEFT JOIN (
                        SELECT correlation_id, max(channel) AS order_channel FROM {state}
                        WHERE ({{all:UInt8}} OR workflow = {{wf:String}}) AND correlation_id IN (
                            SELECT correlation_id FROM {state}
                            WHERE ({{all:UInt8}} OR workflow = {{wf:String}}) AND notEmpty(first_failed))
                        GROUP BY correlation_id) AS channels USING correlation_id"""
            elif g == "system":
                carried.append((f"key{i}", "argMinIf(system, occurred_at, status = 'failed')"))
                keys.append(f"key{i}")
            else:
                carried.append(
                    (
                        f"key{i}",
                        f"argMinIf(attributes[{{g{i}:String}}], occurred_at, mapContains(attributes, {{g{i}:String}}))",
                    )
                )
                keys.append(f"key{i}")
        params = {
            "wf": workflow.name if workflow else "",
            "all": 0 if workflow else 1,
            "at": as_utc(at).replace(tzinfo=None),
            "threshold_ms": int(threshold_s * 1000),
            **{f"w{i}": int(w) for i, w in enumerate(windows)},
            **_attribute_params(group_by),
        }
        sql = f"""
            SELECT grp, {_window_aggregates("decided_at", "good", windows)}
            FROM (
                SELECT {_group_array(keys)} AS grp,
                       opened + toIntervalMillisecond({{threshold_ms:Int64}}) AS limit_at,
                       resolved IS NOT NULL AND resolved <= limit_at AS good,
                       if(good, assumeNotNull(resolved), limit_at) AS decided_at
                FROM ({exception_sql(self.schema.table("events"), carried)}) AS exceptions
                {channel_join})
            GROUP BY grp ORDER BY grp"""
        return _per_group(self.store.rows(sql, params))

    def freshness(
        self,
        systems: Sequence[str] | None,
        threshold_s: float,
        at: datetime,
        windows: Sequence[int],
        *,
        group_by: Sequence[str] = (),
    ) -> GroupCounts:
        """Minutes (good) at whose end a system's newest event was younger than the threshold,
        among the minutes of the window since the system first reported (total), per window.

        Each event minute covers the ``threshold`` after it; the union of those intervals,
        cut to the window, is the fresh time. Systems that reported before ``at`` count.
        """
        parts = []
        for i in range(len(windows)):
            start = f"(at_s - {{w{i}:UInt32}})"
            fresh = (
                f"arraySum(arrayMap((t, nxt) -> greatest(0, least(t + thr, nxt, at_s) - greatest(t, {start})), "
                "ts, arrayPushBack(arrayPopFront(ts), at_s + thr)))"
            )
            parts.append(f"sum(intDiv({fresh}, 60)), sum(intDiv(least({{w{i}:UInt32}}, at_s - ts[1]), 60))")
        where = "AND system IN {systems:Array(String)}" if systems else ""
        # Whole minutes come from system_minutes; the minute ``at`` falls in, from the events
        # that occurred in it by ``at``.
        minutes = f"""
            SELECT system, minute FROM {self.schema.table("system_minutes")}
            WHERE minute < toStartOfMinute({_AT})
              AND minute > {_AT} - toIntervalSecond({{longest:UInt32}} + {{thr:UInt32}}) {where}
            UNION ALL
            SELECT toString(system) AS system, toStartOfMinute(occurred_at) AS minute
            FROM {self.schema.table("events")}
            WHERE occurred_at >= toStartOfMinute({_AT}) AND occurred_at <= {_AT} {where}"""
        sql = f"""
            SELECT grp, {", ".join(parts)}
            FROM (
                SELECT {_group_array(["system" for _ in group_by])} AS grp, system,
                       toInt64(toUnixTimestamp({_AT})) AS at_s, toInt64({{thr:UInt32}}) AS thr,
                       arraySort(groupUniqArray(toInt64(toUnixTimestamp(minute)))) AS ts
                FROM ({minutes})
                GROUP BY grp, system)
            GROUP BY grp ORDER BY grp"""
        params: dict[str, Any] = {
            "at": as_utc(at).replace(tzinfo=None),
            "thr": int(threshold_s),
            "longest": int(max(windows)),
            "systems": list(systems or []),
            **{f"w{i}": int(w) for i, w in enumerate(windows)},
        }
        return _per_group(self.store.rows(sql, params))

    def span_errors(
        self,
        services: Sequence[str] | None,
        at: datetime,
        windows: Sequence[int],
        *,
        group_by: Sequence[str] = (),
    ) -> GroupCounts:
        """Spans not ending in error (good) among all spans, per window, from ``otel_traces``."""
        keys = [
            "ServiceName" if g == "system" else f"SpanAttributes[{{g{i}:String}}]"
            for i, g in enumerate(group_by)
        ]
        longest = max(windows)
        where = "AND ServiceName IN {services:Array(String)}" if services else ""
        parts = []
        for i in range(len(windows)):
            inside = f"Timestamp > {_AT} - toIntervalSecond({{w{i}:UInt32}})"
            parts.append(f"countIf({inside} AND StatusCode != 'Error'), countIf({inside})")
        sql = f"""
            SELECT {_group_array(keys)} AS grp, {", ".join(parts)}
            FROM {self.schema.table("otel_traces")}
            WHERE Timestamp <= {_AT} AND Timestamp > {_AT} - toIntervalSecond({{longest:UInt32}}) {where}
            GROUP BY grp ORDER BY grp"""
        params: dict[str, Any] = {
            "at": as_utc(at).replace(tzinfo=None),
            "longest": int(longest),
            "services": list(services or []),
            **{f"w{i}": int(w) for i, w in enumerate(windows)},
            **_attribute_params(group_by),
        }
        return _per_group(self.store.rows(sql, params))


def exception_sql(events: str, carried: Sequence[tuple[str, str]] = ()) -> str:
    """Every exception of ``{wf}`` (or of every workflow when ``{all:UInt8}``) as of ``{at}``:
    ``opened``, ``resolved`` (or NULL), one row each, per the contract: a failure opens one on
    its stage unless one is open, the next ok resolves it. ``carried`` adds ``(alias,
    aggregate)`` columns computed over the events of the exception's order and stage.

    Only orders with a failure are read: their IDs come from a scan of the (few) failed events,
    then their events are read by correlation ID (the primary key's prefix), and only those of a
    stage that failed are grouped (a pair's hash tested after the ID: a hash collision adds a
    group without a failure, which opens nothing)."""
    extra = "".join(f", {expr} AS {alias}" for alias, expr in carried)
    carry = "".join(f", {alias}" for alias, _ in carried)
    scope = f"({{all:UInt8}} OR workflow = {{wf:String}}) AND occurred_at <= {_AT}"
    return f"""
        SELECT workflow, correlation_id, stage, ts[i] AS opened,
               if(k > 0, ts[k], NULL) AS resolved{carry}
        FROM (
            SELECT workflow, correlation_id, stage,
                   arraySort(x -> x.1, groupArray((occurred_at, status = 'failed'))) AS ev,
                   arrayMap(x -> x.1, ev) AS ts, arrayMap(x -> x.2, ev) AS failed,
                   arrayFilter(i -> failed[i] AND (i = 1 OR NOT failed[i - 1]), arrayEnumerate(ts)) AS opens{extra}
            FROM {events}
            WHERE correlation_id IN (SELECT correlation_id FROM {events} WHERE status = 'failed' AND {scope})
              AND cityHash64(correlation_id, stage) IN (
                  SELECT cityHash64(correlation_id, stage) FROM {events} WHERE status = 'failed' AND {scope})
              AND {scope}
            GROUP BY workflow, correlation_id, stage
            HAVING notEmpty(opens))
        ARRAY JOIN opens AS i,
             arrayMap(o -> arrayFirstIndex(j -> j > o AND NOT failed[j], arrayEnumerate(ts)), opens) AS k"""
