"""The columnar ingest path: an NDJSON body validated as columns.

The compiled scanner (:mod:`flowsight.collector.ndjson_scan`, without the GIL) reads the common
line into columns and applies the contract's rules to it; the workflow and stage pair and the
systems of the sender's token are then checked on whole columns by Arrow kernels. What it
accepts is accepted as columns, never as Python objects. Any line it is not sure of (an unknown
field, a ``null``, an escape sequence, an odd timestamp, a value of another type, an unknown
stage) is decoded again on its own and goes through the row path, :meth:`EventBatch.add`, which
applies every rule and writes the contract's error message. So the two paths accept the same
events with the same values, and every rejection keeps its per-event error; the columnar path
only makes the common case cheap.

When the scanner is sure of no line, :func:`validate_ndjson` returns ``None`` and the caller
takes the row path for the whole request (which refuses a body with no JSON line at all).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from flowsight.collector.events import DEFAULT_LIMITS, EVENT_SCHEMA, EventBatch, EventLimits
from flowsight.collector.ndjson_scan import scan
from flowsight.workflows import WorkflowCatalog


@dataclass
class ColumnarBatch:
    """Validated events as one Arrow table, plus the rows that failed with their errors
    (the shape :meth:`EventIngestor.write` takes, like :class:`EventBatch`)."""

    table: pa.Table
    ingested_at_ms: int
    errors: list[tuple[int, str, str]] = field(default_factory=list)
    rejected_payloads: list[Any] = field(default_factory=list)
    rows_checked_one_by_one: int = 0
    hashes: tuple[np.ndarray, np.ndarray] | None = None
    """Fingerprints of the event ids, for the writer's dedup filter, when computed already."""

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def to_arrow(self) -> pa.Table:
        return self.table


def _lines(body: bytes) -> list[bytes]:
    return [line for line in body.split(b"\n") if line.strip()]


def _is_true(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean mask as NumPy, nulls counted as False."""
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


@functools.lru_cache(maxsize=8)
def _stage_keys(catalog: WorkflowCatalog) -> pa.Array:
    """``workflow\x1fstage`` of every configured stage."""
    return pa.array(sorted(f"{wf.name}\x1f{stage.name}" for wf in catalog for stage in wf.stages))


def validate_ndjson(
    body: bytes,
    catalog: WorkflowCatalog,
    source: str,
    ingested_at_ms: int,
    max_events: int,
    *,
    limits: EventLimits = DEFAULT_LIMITS,
    systems: frozenset[str] | None = None,
    sender: str = "",
) -> ColumnarBatch | None:
    """Validate an NDJSON body as columns; ``None`` when the row path must take the whole body.

    ``limits``, ``systems`` and ``sender`` are those of :class:`EventBatch`.

    Raises:
        TooMany: more events than ``max_events``.
    """
    scanned = scan(
        body,
        max_id_chars=limits.max_id_chars,
        max_channel_chars=limits.max_channel_chars,
        max_attributes=limits.max_attributes,
        max_attribute_key_chars=limits.max_attribute_key_chars,
        max_attribute_value_chars=limits.max_attribute_value_chars,
        latest_ms=None if limits.max_future_ms is None else ingested_at_ms + limits.max_future_ms,
        max_lines=max_events,
    )
    n = scanned.lines
    if n > max_events:
        raise TooMany(n)
    if not scanned.sure.any():
        return None
    col = scanned.columns
    # The rules the scanner leaves to whole columns: the workflow's stage, the sender's systems.
    known = _is_true(
        pc.is_in(pc.binary_join_element_wise(col["workflow"], col["stage"], "\x1f"), _stage_keys(catalog))
    )
    if systems is not None:
        known &= _is_true(pc.is_in(col["system"], pa.array(sorted(systems), pa.string())))
    ok = scanned.sure.copy()
    ok[np.flatnonzero(ok)] = known
    sure_rows = int(known.size)
    accepted = pa.Table.from_arrays(
        [
            *(col[name] for name in EVENT_SCHEMA.names[:11]),
            pa.repeat(pa.scalar(source, pa.string()), sure_rows),
            pa.repeat(pa.scalar(ingested_at_ms, pa.timestamp("ms", "UTC")), sure_rows),
        ],
        schema=EVENT_SCHEMA,
    )
    if ok.all():
        return ColumnarBatch(accepted, ingested_at_ms)

    kept = np.flatnonzero(ok)
    if not known.all():
        accepted = accepted.filter(pa.array(known))
    # The lines the scanner was not sure of: decoded again, validated one by one.
    lines = _lines(body)
    checked = EventBatch(catalog, source, ingested_at_ms, limits=limits, systems=systems, sender=sender)
    redo = np.flatnonzero(~ok)
    passed: list[int] = []
    for index in redo.tolist():
        try:
            event = orjson.loads(lines[index])
        except orjson.JSONDecodeError as exc:
            checked.reject(index, "", lines[index], f"line {index + 1}: not valid JSON: {exc}")
            continue
        if checked.add(index, event):
            passed.append(index)
    merged = pa.concat_tables([accepted, checked.to_arrow()])
    order = np.argsort(np.concatenate([kept, np.asarray(passed, dtype=np.int64)]), kind="stable")
    return ColumnarBatch(
        merged.take(pa.array(order)),
        ingested_at_ms,
        checked.errors,
        checked.rejected_payloads,
        rows_checked_one_by_one=len(redo),
    )


class TooMany(Exception):
    """More events in the body than allowed."""

    def __init__(self, count: int):
        super().__init__(count)
        self.count = count
