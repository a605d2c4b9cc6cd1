"""Dead letters: rejected input kept with its reason, listed and replayed after a config fix."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa

from flowsight.ddl import Schema
from flowsight.store import Store
from flowsight.timefmt import iso_utc

DEAD_LETTER_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("received_at", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("payload", pa.string(), nullable=False),
    ]
)

EMPTY = DEAD_LETTER_SCHEMA.empty_table()


def payload_text(payload: Any) -> str:
    """The original input as text: decoded JSON is re-encoded, raw bytes are kept as they came."""
    if isinstance(payload, bytes | bytearray):
        return bytes(payload).decode("utf-8", errors="replace")
    try:
        return orjson.dumps(payload).decode()
    except TypeError:
        return repr(payload)


def build(received_at_ms: int, source: str, rejected: Sequence[tuple[str, str, Any]]) -> pa.Table:
    """Dead-letter rows for ``(event_id, reason, payload)`` triples from one source."""
    return build_from(received_at_ms, [(source, *r) for r in rejected])


def build_from(received_at_ms: int, rejected: Sequence[tuple[str, str, str, Any]]) -> pa.Table:
    """Dead-letter rows for ``(source, event_id, reason, payload)``."""
    if not rejected:
        return EMPTY
    n = len(rejected)
    return pa.Table.from_arrays(
        [
            pa.array([uuid.uuid4().hex for _ in range(n)], pa.string()),
            pa.array([received_at_ms] * n, pa.timestamp("ms", tz="UTC")),
            pa.array([source for source, _, _, _ in rejected], pa.string()),
            pa.array([reason for _, _, reason, _ in rejected], pa.string()),
            pa.array([event_id for _, event_id, _, _ in rejected], pa.string()),
            pa.array([payload_text(p) for _, _, _, p in rejected], pa.string()),
        ],
        schema=DEAD_LETTER_SCHEMA,
    )


@dataclass(frozen=True)
class DeadLetter:
    id: str
    received_at: datetime
    source: str
    reason: str
    event_id: str
    payload: str
    replayed_at: datetime | None
    outcome: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "received_at": iso_utc(self.received_at),
            "source": self.source,
            "reason": self.reason,
            "event_id": self.event_id,
            "payload": self.payload,
            "replayed_at": iso_utc(self.replayed_at),
            "outcome": self.outcome,
        }


class DeadLetterStore:
    """Reads dead letters and records replay outcomes; rows are written by the event writer."""

    def __init__(self, store: Store, schema: Schema):
        self.store = store
        self.schema = schema

    def page(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        pending_only: bool = False,
        source: str | None = None,
    ) -> tuple[int, list[DeadLetter]]:
        """Newest first: the total matching and one page of them."""
        dl, rp = self.schema.table("dead_letters"), self.schema.table("dead_letter_replays")
        where = ["1 = 1"]
        if pending_only:
            where.append(f"d.id NOT IN (SELECT id FROM {rp} WHERE outcome = 'replayed')")
        if source:
            where.append("d.source = {source:String}")
        clause = " AND ".join(where)
        params = {"limit": limit, "offset": offset, "source": source or ""}
        total = self.store.rows(f"SELECT count() FROM {dl} AS d FINAL WHERE {clause}", params)[0][0]
        rows = self.store.rows(
            f"""
            SELECT d.id, d.received_at, d.source, d.reason, d.event_id, d.payload,
                   r.last_replayed_at, r.last_outcome
            FROM (SELECT * FROM {dl} AS d FINAL WHERE {clause}
                  ORDER BY received_at DESC, id LIMIT {{limit:UInt32}} OFFSET {{offset:UInt32}}) AS d
            LEFT JOIN (SELECT id, max(replayed_at) AS last_replayed_at,
                              if(countIf(outcome = 'replayed') > 0, 'replayed',
                                 argMax(outcome, replayed_at)) AS last_outcome
                       FROM {rp} GROUP BY id) AS r ON r.id = d.id
            ORDER BY d.received_at DESC, d.id
            SETTINGS join_use_nulls = 1
            """,
            params,
        )
        return int(total), [DeadLetter(*row) for row in rows]

    def pending(self, limit: int) -> list[DeadLetter]:
        """Oldest first, those not yet replayed successfully."""
        dl, rp = self.schema.table("dead_letters"), self.schema.table("dead_letter_replays")
        rows = self.store.rows(
            f"""
            SELECT id, received_at, source, reason, event_id, payload, NULL, NULL
            FROM {dl} FINAL
            WHERE id NOT IN (SELECT id FROM {rp} WHERE outcome = 'replayed')
            ORDER BY received_at, id LIMIT {{limit:UInt32}}
            """,
            {"limit": limit},
        )
        return [DeadLetter(*row) for row in rows]

    def record_replays(self, now_ms: int, outcomes: Sequence[tuple[str, str]]) -> None:
        """Record ``(dead letter id, outcome)`` pairs: ``replayed`` or ``still_invalid``."""
        if not outcomes:
            return
        n = len(outcomes)
        self.store.insert_arrow(
            self.schema.table("dead_letter_replays"),
            pa.table(
                {
                    "id": pa.array([i for i, _ in outcomes], pa.string()),
                    "replayed_at": pa.array([now_ms] * n, pa.timestamp("ms", tz="UTC")),
                    "outcome": pa.array([o for _, o in outcomes], pa.string()),
                }
            ),
        )
