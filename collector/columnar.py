"""The columnar ingest path: an NDJSON body validated as Arrow columns.

Large NDJSON requests are parsed by Arrow's JSON reader (C++, without the GIL) into one column
per field, and the contract's rules run as vectorised kernels over whole columns. What the
kernels are sure of is accepted as columns, never as Python objects. Any row they are not sure
of (an unknown field, a ``null``, an odd timestamp, a value of another type, an unknown stage)
is decoded again on its own and goes through the row path, :meth:`EventBatch.add`, which
applies every rule and writes the contract's error message. So the two paths accept the same
events with the same values, and every rejection keeps its per-event error; the columnar path
only makes the common case cheap.

When Arrow cannot read the body at all (a line that is not JSON, a field whose type changes
between rows, a line holding two objects), :func:`validate_ndjson` returns ``None`` and the
caller takes the row path for the whole request.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from flowsight.collector.events import DEFAULT_LIMITS, EVENT_SCHEMA, FIELDS, EventBatch, EventLimits
from flowsight.workflows import WorkflowCatalog

TEXT_FIELDS = tuple(name for name in EVENT_SCHEMA.names if name in FIELDS and name != "attributes")
"""The contract's scalar fields, each read as text (``occurred_at`` is parsed afterwards)."""
_READ_SCHEMA = pa.schema([(name, pa.string()) for name in TEXT_FIELDS])
_PARSE = pj.ParseOptions(explicit_schema=_READ_SCHEMA, unexpected_field_behavior="infer")
_BLOCK_BYTES = 1 << 20

# Patterns are RE2, run by Arrow.
# A timestamp the kernels parse exactly as the row path does (datetime.fromisoformat, floored
# to the millisecond): years 1900-2999, 'T' or a space, up to nine fraction digits, and 'Z' or
# a numeric offset. Anything else is left to the row path.
_TIMESTAMP = (
    r"^(19|2\d)\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[T ]([01]\d|2[0-3]):[0-5]\d:[0-5]\d"
    r"(\.\d{1,9})?(Z|[+-]([01]\d|2[0-3]):?[0-5]\d)$"
)
_SYSTEM = r"^[a-z0-9_.\-]{1,64}$"
_TRACE_ID = r"^[0-9a-f]{32}$"
_SPAN_ID = r"^[0-9a-f]{16}$"
_NS_PER_MS = 1_000_000


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


def read_ndjson(body: bytes) -> pa.Table | None:
    """The body as a table with one string column per contract field (and inferred columns for
    the rest), or ``None`` when Arrow cannot read it row for line."""
    try:
        table = pj.read_json(
            io.BytesIO(body),
            read_options=pj.ReadOptions(use_threads=False, block_size=max(_BLOCK_BYTES, len(body) + 1)),
            parse_options=_PARSE,
        )
    except (pa.ArrowInvalid, UnicodeDecodeError, ValueError):
        return None
    return table


def _lines(body: bytes) -> list[bytes]:
    return [line for line in body.split(b"\n") if line.strip()]


def _is_true(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean mask as NumPy, nulls counted as False."""
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def _length_between(column: pa.ChunkedArray, low: int, high: int) -> np.ndarray:
    lengths = pc.utf8_length(column)
    return _is_true(pc.and_(pc.greater_equal(lengths, low), pc.less_equal(lengths, high)))


def _optional_matching(column: pa.ChunkedArray, pattern: str) -> tuple[np.ndarray, pa.ChunkedArray]:
    """Rows where an optional hex id is absent, empty or matches ``pattern`` once lowercased;
    and the column lowercased with absent as ''."""
    filled = pc.fill_null(column, "")
    lowered = pc.utf8_lower(filled)
    ok = _is_true(pc.or_(pc.equal(filled, ""), pc.match_substring_regex(lowered, pattern)))
    return ok, lowered


def _no_attributes(n: int) -> pa.Array:
    return pa.MapArray.from_arrays(
        pa.array(np.zeros(n + 1, dtype=np.int32)), pa.array([], pa.string()), pa.array([], pa.string())
    )


def _attribute_maps(column: pa.ChunkedArray | None, n: int, ok: np.ndarray, limits: EventLimits) -> pa.Array:
    """Rows' attributes as a map<string, string> array; rows it cannot represent exactly are
    cleared from ``ok``. Keys of a row follow the column's field order."""
    if column is None or pa.types.is_null(column.type):
        return _no_attributes(n)
    if not pa.types.is_struct(column.type):
        ok &= ~_is_true(pc.is_valid(column))
        return _no_attributes(n)
    struct = column.combine_chunks()
    keys: list[str] = []
    children: list[pa.Array] = []
    # flatten() gives each key's values with the rows lacking the object (or the key) as null
    for name, child in zip(struct.type.names, struct.flatten(), strict=True):
        if pa.types.is_string(child.type) and 0 < len(name) <= limits.max_attribute_key_chars:
            keys.append(name)
            children.append(child)
        else:  # a value that is not a string, or a key out of bounds: the row path names it
            ok &= ~_is_true(child.is_valid())
    if not keys:
        return _no_attributes(n)
    values = pa.concat_arrays(children)  # key by key, n rows each
    grid = _is_true(values.is_valid()).reshape(len(keys), n).T  # rows x keys
    too_long = _is_true(pc.greater(pc.utf8_length(values), limits.max_attribute_value_chars))
    ok &= ~(too_long.reshape(len(keys), n).T & grid).any(axis=1)
    ok &= grid.sum(axis=1) <= limits.max_attributes
    rows, slots = np.nonzero(grid)  # row-major: each row's keys in column order
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])
    return pa.MapArray.from_arrays(
        pa.array(offsets),
        pa.array(keys, pa.string()).take(pa.array(slots)),
        values.take(pa.array(slots.astype(np.int64) * n + rows)),
    )


@functools.lru_cache(maxsize=8)
def _stage_keys(catalog: WorkflowCatalog) -> pa.Array:
    """``workflow\x1fstage`` of every configured stage."""
    return pa.array(sorted(f"{wf.name}\x1f{stage.name}" for wf in catalog for stage in wf.stages))


def _timestamps_ms(column: pa.ChunkedArray, ok: np.ndarray) -> np.ndarray:
    """Milliseconds since the epoch of each row's ``occurred_at``; rows whose text the kernels
    cannot parse exactly as the row path would are cleared from ``ok``."""
    text = pc.fill_null(column, "")
    strict = _is_true(pc.match_substring_regex(text, _TIMESTAMP))
    ok &= strict
    placeholder = pa.scalar("1970-01-01T00:00:00Z")
    try:
        parsed = pc.cast(pc.if_else(pa.array(strict), text, placeholder), pa.timestamp("ns", "UTC"))
    except pa.ArrowInvalid:  # an impossible date (30 February): the row path names it
        ok &= False
        return np.zeros(len(column), dtype=np.int64)
    ns = np.asarray(parsed.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
    return np.floor_divide(ns, _NS_PER_MS)


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
    table = read_ndjson(body)
    if table is None:
        return None
    n = table.num_rows
    if n > max_events:
        raise TooMany(n)
    lines: list[bytes] | None = None
    newline_rows = body.count(b"\n") + (0 if body.endswith(b"\n") else 1)
    if newline_rows != n:
        lines = _lines(body)
        if len(lines) != n:  # two objects on one line, or a line Arrow skipped: rows by line
            return None
    ok = np.ones(n, dtype=bool)
    if b"null" in body:  # an explicit null reads as absent; such lines take the row path
        lines = lines if lines is not None else _lines(body)
        ok &= np.fromiter((b"null" not in line for line in lines), dtype=bool, count=n)

    for name in table.column_names:  # unknown fields: the row path names them
        if name not in FIELDS:
            ok &= ~_is_true(pc.is_valid(table.column(name)))
    col = table.column
    ok &= _length_between(col("event_id"), 1, limits.max_id_chars)
    ok &= _length_between(col("correlation_id"), 1, limits.max_id_chars)
    pairs = _stage_keys(catalog)
    ok &= _is_true(pc.is_in(pc.binary_join_element_wise(col("workflow"), col("stage"), "\x1f"), pairs))
    ok &= _is_true(pc.match_substring_regex(col("system"), _SYSTEM))
    if systems is not None:
        ok &= _is_true(pc.is_in(col("system"), pa.array(sorted(systems), pa.string())))
    occurred_ms = _timestamps_ms(col("occurred_at"), ok)
    if limits.max_future_ms is not None:
        ok &= occurred_ms <= ingested_at_ms + limits.max_future_ms
    status = pc.fill_null(col("status"), "ok")
    ok &= _is_true(pc.is_in(status, pa.array(["ok", "failed"])))
    channel = pc.fill_null(col("channel"), "")
    ok &= _is_true(pc.less_equal(pc.utf8_length(channel), limits.max_channel_chars))
    trace_ok, trace_id = _optional_matching(col("trace_id"), _TRACE_ID)
    span_ok, span_id = _optional_matching(col("span_id"), _SPAN_ID)
    ok &= trace_ok & span_ok
    attributes = _attribute_maps(
        table.column("attributes") if "attributes" in table.column_names else None, n, ok, limits
    )

    accepted = pa.Table.from_arrays(
        [
            col("event_id"),
            col("correlation_id"),
            col("workflow"),
            col("stage"),
            col("system"),
            pa.array(occurred_ms, pa.int64()).cast(pa.timestamp("ms", "UTC")),
            status,
            channel,
            trace_id,
            span_id,
            attributes,
            pa.repeat(pa.scalar(source, pa.string()), n),
            pa.repeat(pa.scalar(ingested_at_ms, pa.timestamp("ms", "UTC")), n),
        ],
        schema=EVENT_SCHEMA,
    )
    if ok.all():
        return ColumnarBatch(accepted, ingested_at_ms)

    kept = np.flatnonzero(ok)
    accepted = accepted.take(pa.array(kept))
    # The rows the kernels were not sure of: decoded again, validated one by one.
    lines = lines if lines is not None else _lines(body)
    checked = EventBatch(catalog, source, ingested_at_ms, limits=limits, systems=systems, sender=sender)
    redo = np.flatnonzero(~ok)
    passed: list[int] = []
    for index in redo.tolist():
        try:
            event = orjson.loads(lines[index])
        except orjson.JSONDecodeError as exc:  # Arrow read it, so this is unlikely
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
