"""Evaluation snapshots: each evaluation's SLO figures, kept for burn-down history."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa

from flowsight.ddl import Schema
from flowsight.store import Store
from flowsight.timefmt import as_utc, iso_utc, to_ms


def _series_key(group: dict[str, str]) -> str:
    return orjson.dumps(group, option=orjson.OPT_SORT_KEYS).decode() if group else ""


class SnapshotStore:
    """Writes and reads ``slo_snapshots``."""

    def __init__(self, store: Store, schema: Schema):
        self.store = store
        self.schema = schema

    def write(self, at: datetime, results: Sequence[dict[str, Any]]) -> int:
        """Store one evaluation (every series of every evaluated SLO); returns the rows written."""
        rows: list[tuple[str, str, dict[str, Any]]] = []
        for result in results:
            if result["status"] == "not_evaluated":
                continue
            rows.append((result["name"], "", result))
            rows.extend((result["name"], _series_key(s["group"]), s) for s in result.get("series", []))
        if not rows:
            return 0
        n = len(rows)
        table = pa.table(
            {
                "evaluated_at": pa.array([to_ms(at)] * n, pa.timestamp("ms", tz="UTC")),
                "slo": pa.array([r[0] for r in rows]),
                "series": pa.array([r[1] for r in rows]),
                "good": pa.array([r[2]["good"] for r in rows], pa.uint64()),
                "total": pa.array([r[2]["total"] for r in rows], pa.uint64()),
                "sli": pa.array([r[2]["sli_value"] for r in rows], pa.float64()),
                "error_budget_remaining": pa.array(
                    [r[2]["error_budget_remaining"] for r in rows], pa.float64()
                ),
                "burn_rates": pa.array(
                    [list(r[2]["burn_rates"].items()) for r in rows], pa.map_(pa.string(), pa.float64())
                ),
                "status": pa.array([r[2]["status"] for r in rows]),
            }
        )
        self.store.insert_arrow(self.schema.table("slo_snapshots"), table)
        return n

    def history(self, slo: str, limit: int = 500, series: str = "") -> list[dict[str, Any]]:
        """The latest ``limit`` evaluations of one SLO series, oldest first."""
        rows = self.store.dicts(
            f"""
            SELECT evaluated_at, good, total, sli, error_budget_remaining, burn_rates, status
            FROM {self.schema.table("slo_snapshots")} FINAL
            WHERE slo = {{slo:String}} AND series = {{series:String}}
            ORDER BY evaluated_at DESC LIMIT {{limit:UInt32}}
            """,
            {"slo": slo, "series": series, "limit": limit},
        )
        for row in rows:
            row["evaluated_at"] = iso_utc(row["evaluated_at"])
        return rows[::-1]


class FlowHistory:
    """Writes and reads ``flow_snapshots``: each evaluation's flow figures per workflow."""

    def __init__(self, store: Store, schema: Schema):
        self.store = store
        self.schema = schema

    def write(self, at: datetime, flow: dict[str, Any]) -> int:
        workflows = flow.get("workflows", {})
        if not workflows:
            return 0
        open_by = {
            wf: sum(stages.values()) for wf, stages in flow.get("exceptions", {}).get("by_stage", {}).items()
        }
        names = list(workflows)
        n = len(names)
        table = pa.table(
            {
                "evaluated_at": pa.array([to_ms(at)] * n, pa.timestamp("ms", tz="UTC")),
                "workflow": pa.array(names),
                "in_flight": pa.array([workflows[w]["in_flight"] for w in names], pa.uint64()),
                "completed": pa.array([workflows[w]["completed"] for w in names], pa.uint64()),
                "due": pa.array([workflows[w]["due"] for w in names], pa.uint64()),
                "completed_on_time": pa.array(
                    [workflows[w]["completed_on_time"] for w in names], pa.uint64()
                ),
                "completion_rate": pa.array([workflows[w]["completion_rate"] for w in names], pa.float64()),
                "stuck": pa.array([workflows[w]["stuck"]["total"] for w in names], pa.uint64()),
                "exceptions_open": pa.array([open_by.get(w, 0) for w in names], pa.uint64()),
                "stuck_by_stage": pa.array(
                    [list(workflows[w]["stuck"]["by_stage"].items()) for w in names],
                    pa.map_(pa.string(), pa.uint64()),
                ),
            }
        )
        self.store.insert_arrow(self.schema.table("flow_snapshots"), table)
        return n

    def trend(self, workflow: str, until: datetime, seconds: int, points: int = 96) -> list[dict[str, Any]]:
        """The flow figures of ``workflow`` over the ``seconds`` before ``until``, averaged into
        about ``points`` buckets, oldest first."""
        step = max(60, seconds // points)
        rows = self.store.dicts(
            f"""
            SELECT toStartOfInterval(evaluated_at, toIntervalSecond({{step:UInt32}})) AS t,
                   avg(in_flight) AS in_flight, avg(completion_rate) AS completion_rate,
                   avg(stuck) AS stuck, avg(exceptions_open) AS exceptions_open
            FROM {self.schema.table("flow_snapshots")} FINAL
            WHERE workflow = {{wf:String}}
              AND evaluated_at > {{until:DateTime64(3, 'UTC')}} - toIntervalSecond({{seconds:UInt32}})
              AND evaluated_at <= {{until:DateTime64(3, 'UTC')}}
            GROUP BY t ORDER BY t
            """,
            {"wf": workflow, "until": as_utc(until).replace(tzinfo=None), "seconds": seconds, "step": step},
        )
        for row in rows:
            row["t"] = as_utc(row["t"])
        return rows
