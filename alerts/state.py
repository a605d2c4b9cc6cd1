"""Alert state in ClickHouse: each evaluation writes the alerts that changed; start reads back
the alerts still pending or firing and those resolved recently."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime

import pyarrow as pa

from flowsight.alerts.lifecycle import Alert
from flowsight.ddl import Schema
from flowsight.store import Store
from flowsight.timefmt import as_utc, to_ms

_MS = pa.timestamp("ms", tz="UTC")


def _ms(ts: datetime | None) -> int | None:
    return to_ms(ts) if ts is not None else None


class AlertStateStore:
    def __init__(self, store: Store, schema: Schema):
        self.store = store
        self.schema = schema

    def write(self, alerts: Sequence[Alert], at: datetime) -> None:
        if not alerts:
            return
        n = len(alerts)
        version = time.time_ns()
        table = pa.table(
            {
                "fingerprint": [a.fingerprint for a in alerts],
                "alertname": [a.name for a in alerts],
                "system": [a.system for a in alerts],
                "labels": pa.array(
                    [list(a.labels.items()) for a in alerts], pa.map_(pa.string(), pa.string())
                ),
                "annotations": pa.array(
                    [list(a.annotations.items()) for a in alerts], pa.map_(pa.string(), pa.string())
                ),
                "rule_kind": [a.rule_kind for a in alerts],
                "system_health": pa.array([a.system_health for a in alerts], pa.bool_()),
                "state": [a.state for a in alerts],
                "value": pa.array([float(a.value) for a in alerts], pa.float64()),
                "active_since": pa.array([_ms(a.active_since) for a in alerts], _MS),
                "last_active_at": pa.array([_ms(a.last_active_at) for a in alerts], _MS),
                "fired_at": pa.array([_ms(a.fired_at) for a in alerts], _MS),
                "resolved_at": pa.array([_ms(a.resolved_at) for a in alerts], _MS),
                "suppressed_by": [a.suppressed_by or "" for a in alerts],
                "silenced_by": pa.array([list(a.silenced_by) for a in alerts], pa.list_(pa.string())),
                "updated_at": pa.array([to_ms(at)] * n, _MS),
                "version": pa.array([version + i for i in range(n)], pa.uint64()),
            }
        )
        self.store.insert_arrow(self.schema.table("alert_state"), table)

    def load(self, resolved_since: datetime) -> list[Alert]:
        """Alerts pending or firing, and those resolved at or after ``resolved_since``."""
        rows = self.store.dicts(
            f"""
            SELECT * FROM {self.schema.table("alert_state")} FINAL
            WHERE state IN ('pending', 'firing')
               OR (state = 'resolved' AND resolved_at >= {{since:DateTime64(3, 'UTC')}})
            ORDER BY fingerprint""",
            {"since": as_utc(resolved_since).replace(tzinfo=None)},
        )
        return [
            Alert(
                fingerprint=r["fingerprint"],
                labels=dict(r["labels"]),
                annotations=dict(r["annotations"]),
                rule_kind=r["rule_kind"],
                system_health=bool(r["system_health"]),
                state=r["state"],
                value=float(r["value"]),
                active_since=as_utc(r["active_since"]),
                last_active_at=as_utc(r["last_active_at"]),
                fired_at=as_utc(r["fired_at"]) if r["fired_at"] else None,
                resolved_at=as_utc(r["resolved_at"]) if r["resolved_at"] else None,
                suppressed_by=r["suppressed_by"] or None,
                silenced_by=tuple(r["silenced_by"]),
            )
            for r in rows
        ]

    def history(self, limit: int = 200) -> list[dict[str, object]]:
        """The most recently updated alerts, any state, newest first."""
        return self.store.dicts(
            f"""SELECT fingerprint, alertname, system, labels, state, fired_at, resolved_at, updated_at
                FROM {self.schema.table("alert_state")} FINAL
                WHERE state != 'inactive'
                ORDER BY updated_at DESC LIMIT {{limit:UInt32}}""",
            {"limit": limit},
        )
