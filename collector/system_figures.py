"""Per-system figures over recent lifecycle events and spans: how much of what a system sends
fails, and when it last reported. System-health alerts read them; computed inside ClickHouse.

A system is the ``system`` of its events and the ``ServiceName`` of its spans.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowsight.ddl import Schema
from flowsight.store import Store
from flowsight.timefmt import as_utc

_AT = "{at:DateTime64(3, 'UTC')}"


@dataclass(frozen=True)
class Activity:
    """What one system sent: in the recent window (``failed`` of ``total``), and before it."""

    failed: int
    total: int
    baseline: int
    last_seen: datetime | None


class SystemFigures:
    def __init__(self, store: Store, schema: Schema):
        self.store = store
        self.schema = schema

    def activity(
        self, at: datetime, recent_s: int, baseline_s: int, systems: Sequence[str] | None = None
    ) -> dict[str, Activity]:
        """Per system: events and spans in ``(at - recent_s, at]`` (how many failed), how many in
        the ``baseline_s`` before that, and the time of the newest one up to ``at``."""
        events, spans = self.schema.table("events"), self.schema.table("otel_traces")
        only = "AND {col} IN {{systems:Array(String)}}" if systems else ""
        sql = f"""
            SELECT system, sum(failed), sum(recent), sum(before), max(last)
            FROM (
                WITH {_AT} - toIntervalSecond({{recent:UInt32}}) AS start
                SELECT toString(system) AS system,
                       countIf(occurred_at > start AND status = 'failed') AS failed,
                       countIf(occurred_at > start) AS recent,
                       countIf(occurred_at <= start) AS before,
                       max(occurred_at) AS last
                FROM {events}
                WHERE occurred_at <= {_AT}
                  AND occurred_at > {_AT} - toIntervalSecond({{recent:UInt32}} + {{baseline:UInt32}})
                  {only.format(col="system")}
                GROUP BY system
                UNION ALL
                WITH {_AT} - toIntervalSecond({{recent:UInt32}}) AS start
                SELECT toString(ServiceName) AS system,
                       countIf(Timestamp > start AND StatusCode = 'Error') AS failed,
                       countIf(Timestamp > start) AS recent,
                       countIf(Timestamp <= start) AS before,
                       toDateTime64(max(Timestamp), 3, 'UTC') AS last
                FROM {spans}
                WHERE Timestamp <= {_AT}
                  AND Timestamp > {_AT} - toIntervalSecond({{recent:UInt32}} + {{baseline:UInt32}})
                  {only.format(col="ServiceName")}
                GROUP BY system)
            GROUP BY system ORDER BY system"""
        params: dict[str, Any] = {
            "at": as_utc(at).replace(tzinfo=None),
            "recent": int(recent_s),
            "baseline": int(baseline_s),
            "systems": list(systems or []),
        }
        return {
            str(system): Activity(int(failed), int(recent), int(before), as_utc(last) if total_any else None)
            for system, failed, recent, before, last in self.store.rows(sql, params)
            for total_any in [int(recent) + int(before)]
        }
