"""Span columns read straight from the bytes of an OTLP protobuf export request.

The protobuf library gives a Python object per span, per attribute and per value, and reading
them cost ~15 µs a span on the event loop, more than the engine's insert. The common request
(spans with string, integer, boolean and floating-point attributes, events and a status) is
read here instead by a compiled scanner of the wire format (numba, without the GIL). It records
where each field's bytes are in the body, and NumPy and Arrow gather them into the columns of
``otel_traces``: no Python object per span.

Anything the scanner is not sure of makes it decline, and the request takes the protobuf
library's path (:class:`flowsight.collector.otlp.SpanBatch`), which applies every rule and names
every problem: a span the receiver rejects, links, array, map or bytes attribute values, a
non-string correlation or ``service.name`` value, a message field given twice, an event with a
key given twice, a string that is not UTF-8, a wire it cannot read. So both paths store the
same rows (tests/test_otlp_wire.py) and the scanner only makes the common case cheap.
"""

# ruff: noqa: SIM110  (compiled loops: numba does not compile all() over a generator)
from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from flowsight.collector.compiled import HEX, Int, compiled, read_le, same_bytes, strings, utf8_valid
from flowsight.collector.otlp import _KINDS, _LAST_NANO, _STATUS, SPAN_SCHEMA

# Rows of the span record (one column per span).
(TRACE, TRACE_LEN, SPAN, SPAN_LEN, STATE, STATE_LEN, PARENT, PARENT_LEN, NAME, NAME_LEN, KIND,
 START, END, CODE, MESSAGE, MESSAGE_LEN, RESOURCE, SCOPE, ATTRS, EVENTS, CORRELATION,
 CORRELATION_LEN) = range(22)  # fmt: skip
SPAN_ROWS = 22
# Rows of an attribute record: key, value kind, value bytes (or the number itself).
KEY, KEY_LEN, VALUE_KIND, VALUE, VALUE_LEN, NUMBER = range(6)
ATTR_ROWS = 6
NO_VALUE, STRING, BOOL, INT, DOUBLE = range(5)
# Rows of a resource record, a scope record and an event record.
RES_ATTRS, RES_SERVICE, RES_SERVICE_LEN, RES_CORRELATION, RES_CORRELATION_LEN = range(5)
RES_ROWS = 5
SCOPE_NAME, SCOPE_NAME_LEN, SCOPE_VERSION, SCOPE_VERSION_LEN = range(4)
SCOPE_ROWS = 4
EVENT_TIME, EVENT_NAME, EVENT_NAME_LEN, EVENT_ATTRS = range(4)
EVENT_ROWS = 4
# What a pass counted (and, on the second pass, filled).
N_SPANS, N_SPAN_ATTRS, N_RES, N_RES_ATTRS, N_SCOPES, N_EVENTS, N_EVENT_ATTRS = range(7)
COUNTS = 7

_DECLINE = -1
N_KINDS, N_CODES = len(_KINDS), len(_STATUS)
_LAST = np.uint64(_LAST_NANO)


@compiled
def _varint(buf: np.ndarray, pos: Int, end: Int) -> tuple[np.uint64, Int]:  # pragma: no cover
    """A varint at ``pos``: its value and the position after it (``_DECLINE`` when malformed)."""
    result = np.uint64(0)
    shift = np.uint64(0)
    while pos < end and shift < 70:
        byte = buf[pos]
        pos += 1
        result |= np.uint64(byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += np.uint64(7)
    return result, _DECLINE


@compiled
def _tag(buf: np.ndarray, pos: Int, end: Int) -> tuple[Int, Int, Int]:  # pragma: no cover
    """A field's tag at ``pos``: (field number, wire type, the position after it); the position
    is ``_DECLINE`` when malformed (field number 0 included, which protobuf refuses)."""
    tag, pos = _varint(buf, pos, end)
    field = np.int64(tag >> np.uint64(3))
    return field, np.int64(tag & np.uint64(7)), pos if field != 0 else _DECLINE


@compiled
def _skip(buf: np.ndarray, pos: Int, end: Int, wire: Int) -> Int:  # pragma: no cover
    """The position after a field's payload of wire type ``wire`` (``_DECLINE``: groups, bad
    wire types, a payload past the end)."""
    if wire == 0:
        return _varint(buf, pos, end)[1]
    if wire == 1:
        return pos + 8 if pos + 8 <= end else _DECLINE
    if wire == 5:
        return pos + 4 if pos + 4 <= end else _DECLINE
    if wire == 2:
        size, pos = _varint(buf, pos, end)
        if pos < 0 or size > np.uint64(end - pos):
            return _DECLINE
        return pos + np.int64(size)
    return _DECLINE


@compiled
def _bytes(buf: np.ndarray, pos: Int, end: Int, wire: Int, text: bool) -> tuple[Int, Int]:  # pragma: no cover
    """A length-delimited field's payload: (start, length), or ``(_DECLINE, 0)``."""
    if wire != 2:
        return _DECLINE, 0
    size, pos = _varint(buf, pos, end)
    if pos < 0 or size > np.uint64(end - pos):
        return _DECLINE, 0
    length = np.int64(size)
    if text and not utf8_valid(buf, pos, pos + length):
        return _DECLINE, 0
    return pos, length


@compiled
def _skip_text(buf: np.ndarray, pos: Int, end: Int, wire: Int) -> Int:  # pragma: no cover
    """The position after a string field not kept, once its UTF-8 is checked (``_DECLINE``: bad)."""
    at, size = _bytes(buf, pos, end, wire, True)
    return at + size if at >= 0 else _DECLINE


@compiled
def _attribute(
    buf: np.ndarray, pos: Int, end: Int, wire: Int, out: np.ndarray, row: Int, fill: bool
) -> Int:  # pragma: no cover
    """Read a ``KeyValue`` field at ``pos`` into column ``row`` of ``out``: the position after it,
    or ``_DECLINE``."""
    kv, size = _bytes(buf, pos, end, wire, False)
    if kv < 0 or not _key_value(buf, kv, kv + size, out, row, fill):
        return _DECLINE
    return kv + size


@compiled
def _key_value(
    buf: np.ndarray, pos: Int, end: Int, out: np.ndarray, row: Int, fill: bool
) -> bool:  # pragma: no cover
    """Read a ``KeyValue`` in ``buf[pos:end]`` into column ``row`` of ``out``; False to decline."""
    key, key_len = pos, 0
    kind, value, value_len, number = NO_VALUE, 0, 0, np.int64(0)
    seen_value = False
    while pos < end:
        field, wire, pos = _tag(buf, pos, end)
        if pos < 0:
            return False
        if field == 1:
            key, key_len = _bytes(buf, pos, end, wire, True)
            if key < 0:
                return False
            pos = key + key_len
        elif field == 2:
            start, size = _bytes(buf, pos, end, wire, False)
            if start < 0 or seen_value:  # a second value would merge into the first
                return False
            seen_value = True
            pos, stop = start, start + size
            while pos < stop:
                f, w, pos = _tag(buf, pos, stop)
                if pos < 0:
                    return False
                if f == 1:
                    value, value_len = _bytes(buf, pos, stop, w, True)
                    if value < 0:
                        return False
                    pos = value + value_len
                    kind = STRING
                elif f == 2 or f == 3:
                    if w != 0:
                        return False
                    raw, pos = _varint(buf, pos, stop)
                    if pos < 0:
                        return False
                    if f == 2:
                        kind, number = BOOL, np.int64(1 if raw != 0 else 0)
                    else:
                        kind, number = INT, np.int64(raw)
                elif f == 4:
                    if w != 1 or pos + 8 > stop:
                        return False
                    kind, number = DOUBLE, np.int64(read_le(buf, pos, 8))
                    pos += 8
                elif 5 <= f <= 7:  # arrays, maps, bytes: the protobuf library's path
                    return False
                else:
                    pos = _skip(buf, pos, stop, w)
                    if pos < 0:
                        return False
        else:
            pos = _skip(buf, pos, end, wire)
            if pos < 0:
                return False
    if fill:
        out[KEY, row], out[KEY_LEN, row] = key, key_len
        out[VALUE_KIND, row], out[VALUE, row], out[VALUE_LEN, row] = kind, value, value_len
        out[NUMBER, row] = number
    return True


@compiled
def _find(
    buf: np.ndarray, attrs: np.ndarray, first: Int, stop: Int, keys: np.ndarray, key_offsets: np.ndarray
) -> tuple[Int, Int]:  # pragma: no cover
    """The first configured key (in order) whose last occurrence in ``attrs[first:stop]`` has a
    non-empty value: (start, length) of that value, ``(0, 0)`` for none, ``(_DECLINE, 0)``
    when that value is not a string."""
    for k in range(key_offsets.size - 1):
        key, size = key_offsets[k], key_offsets[k + 1] - key_offsets[k]
        for row in range(stop - 1, first - 1, -1):
            if attrs[KEY_LEN, row] == size and same_bytes(buf, attrs[KEY, row], keys, key, size):
                kind = attrs[VALUE_KIND, row]
                if kind == STRING and attrs[VALUE_LEN, row] > 0:
                    return attrs[VALUE, row], attrs[VALUE_LEN, row]
                if kind != STRING and kind != NO_VALUE:
                    return _DECLINE, 0
                break  # the last occurrence is empty: try the next key
    return 0, 0


@compiled
def _scan(
    buf: np.ndarray,
    keys: np.ndarray,
    key_offsets: np.ndarray,
    fill: bool,
    counts: np.ndarray,
    spans: np.ndarray,
    span_attrs: np.ndarray,
    res: np.ndarray,
    res_attrs: np.ndarray,
    scopes: np.ndarray,
    events: np.ndarray,
    event_attrs: np.ndarray,
) -> bool:  # pragma: no cover
    """Walk an ``ExportTraceServiceRequest``; count its records into ``counts`` or, with
    ``fill``, write them. False to decline."""
    end = buf.size
    n_spans = n_span_attrs = n_res = n_res_attrs = n_scopes = n_events = n_event_attrs = 0
    pos = 0
    while pos < end:  # ExportTraceServiceRequest
        field, wire, pos = _tag(buf, pos, end)
        if pos < 0:
            return False
        if field != 1:
            pos = _skip(buf, pos, end, wire)
            if pos < 0:
                return False
            continue
        rs, rs_len = _bytes(buf, pos, end, wire, False)
        if rs < 0:
            return False
        pos, rs_end = rs, rs + rs_len
        resource = n_res
        n_res += 1
        if fill:
            res[RES_ATTRS, resource] = n_res_attrs
        seen_resource = False
        while pos < rs_end:  # ResourceSpans
            field, wire, pos = _tag(buf, pos, rs_end)
            if pos < 0:
                return False
            if field == 1:  # Resource
                r, r_len = _bytes(buf, pos, rs_end, wire, False)
                if r < 0 or seen_resource:
                    return False
                seen_resource = True
                if fill:
                    res[RES_ATTRS, resource] = n_res_attrs
                pos, r_end = r, r + r_len
                while pos < r_end:
                    f, w, pos = _tag(buf, pos, r_end)
                    if pos < 0:
                        return False
                    if f == 1:
                        pos = _attribute(buf, pos, r_end, w, res_attrs, n_res_attrs, fill)
                        if pos < 0:
                            return False
                        n_res_attrs += 1
                    elif f == 3:  # entity references: the protobuf library's path
                        return False
                    else:
                        pos = _skip(buf, pos, r_end, w)
                        if pos < 0:
                            return False
            elif field == 2:  # ScopeSpans
                ss, ss_len = _bytes(buf, pos, rs_end, wire, False)
                if ss < 0:
                    return False
                pos, ss_end = ss, ss + ss_len
                scope = n_scopes
                n_scopes += 1
                if fill:
                    scopes[SCOPE_NAME, scope] = scopes[SCOPE_NAME_LEN, scope] = 0
                    scopes[SCOPE_VERSION, scope] = scopes[SCOPE_VERSION_LEN, scope] = 0
                seen_scope = False
                while pos < ss_end:
                    field, wire, pos = _tag(buf, pos, ss_end)
                    if pos < 0:
                        return False
                    if field == 1:  # InstrumentationScope
                        sc, sc_len = _bytes(buf, pos, ss_end, wire, False)
                        if sc < 0 or seen_scope:
                            return False
                        seen_scope = True
                        pos, sc_end = sc, sc + sc_len
                        while pos < sc_end:
                            f, w, pos = _tag(buf, pos, sc_end)
                            if pos < 0:
                                return False
                            if f == 1 or f == 2:
                                text, size = _bytes(buf, pos, sc_end, w, True)
                                if text < 0:
                                    return False
                                if fill:
                                    row = SCOPE_NAME if f == 1 else SCOPE_VERSION
                                    scopes[row, scope], scopes[row + 1, scope] = text, size
                                pos = text + size
                            elif f == 3:  # scope attributes: the protobuf library's path
                                return False
                            else:
                                pos = _skip(buf, pos, sc_end, w)
                                if pos < 0:
                                    return False
                    elif field == 2:  # Span
                        sp, sp_len = _bytes(buf, pos, ss_end, wire, False)
                        if sp < 0:
                            return False
                        pos, sp_end = sp, sp + sp_len
                        span = n_spans
                        n_spans += 1
                        trace, trace_len, span_id, span_len, parent, parent_len = 0, 0, 0, 0, 0, 0
                        state, state_len, name, name_len, message, message_len = 0, 0, 0, 0, 0, 0
                        kind = np.int64(0)
                        code = np.int64(0)
                        start = np.uint64(0)
                        finish = np.uint64(0)
                        first_attr, first_event = n_span_attrs, n_events
                        seen_status = False
                        while pos < sp_end:
                            f, w, pos = _tag(buf, pos, sp_end)
                            if pos < 0:
                                return False
                            if f == 1 or f == 2 or f == 4:
                                at, size = _bytes(buf, pos, sp_end, w, False)
                                if at < 0:
                                    return False
                                if f == 1:
                                    trace, trace_len = at, size
                                elif f == 2:
                                    span_id, span_len = at, size
                                else:
                                    parent, parent_len = at, size
                                pos = at + size
                            elif f == 3 or f == 5:
                                at, size = _bytes(buf, pos, sp_end, w, True)
                                if at < 0:
                                    return False
                                if f == 3:
                                    state, state_len = at, size
                                else:
                                    name, name_len = at, size
                                pos = at + size
                            elif f == 6:
                                if w != 0:
                                    return False
                                raw, pos = _varint(buf, pos, sp_end)
                                if pos < 0:
                                    return False
                                kind = np.int64(np.int32(raw & np.uint64(0xFFFFFFFF)))
                            elif f == 7 or f == 8:
                                if w != 1 or pos + 8 > sp_end:
                                    return False
                                if f == 7:
                                    start = read_le(buf, pos, 8)
                                else:
                                    finish = read_le(buf, pos, 8)
                                pos += 8
                            elif f == 9:
                                pos = _attribute(buf, pos, sp_end, w, span_attrs, n_span_attrs, fill)
                                if pos < 0:
                                    return False
                                n_span_attrs += 1
                            elif f == 11:  # Event
                                ev, ev_len = _bytes(buf, pos, sp_end, w, False)
                                if ev < 0:
                                    return False
                                event = n_events
                                n_events += 1
                                event_first = n_event_attrs
                                event_time = np.uint64(0)
                                event_name, event_name_len = 0, 0
                                pos, ev_end = ev, ev + ev_len
                                while pos < ev_end:
                                    g, gw, pos = _tag(buf, pos, ev_end)
                                    if pos < 0:
                                        return False
                                    if g == 1:
                                        if gw != 1 or pos + 8 > ev_end:
                                            return False
                                        event_time = read_le(buf, pos, 8)
                                        pos += 8
                                    elif g == 2:
                                        event_name, event_name_len = _bytes(buf, pos, ev_end, gw, True)
                                        if event_name < 0:
                                            return False
                                        pos = event_name + event_name_len
                                    elif g == 3:
                                        pos = _attribute(
                                            buf, pos, ev_end, gw, event_attrs, n_event_attrs, fill
                                        )
                                        if pos < 0:
                                            return False
                                        n_event_attrs += 1
                                    else:
                                        pos = _skip(buf, pos, ev_end, gw)
                                        if pos < 0:
                                            return False
                                if event_time > _LAST:
                                    return False
                                if fill:
                                    # An event's attributes become a dict: a key given twice
                                    # is left to the protobuf library's path.
                                    for a in range(event_first, n_event_attrs):
                                        for b in range(a + 1, n_event_attrs):
                                            size = event_attrs[KEY_LEN, a]
                                            if size == event_attrs[KEY_LEN, b] and same_bytes(
                                                buf, event_attrs[KEY, a], buf, event_attrs[KEY, b], size
                                            ):
                                                return False
                                    events[EVENT_TIME, event] = np.int64(event_time)
                                    events[EVENT_NAME, event] = event_name
                                    events[EVENT_NAME_LEN, event] = event_name_len
                                    events[EVENT_ATTRS, event] = event_first
                            elif f == 13:  # links: the protobuf library's path
                                return False
                            elif f == 15:  # Status
                                st, st_len = _bytes(buf, pos, sp_end, w, False)
                                if st < 0 or seen_status:
                                    return False
                                seen_status = True
                                pos, st_end = st, st + st_len
                                while pos < st_end:
                                    g, gw, pos = _tag(buf, pos, st_end)
                                    if pos < 0:
                                        return False
                                    if g == 2:
                                        message, message_len = _bytes(buf, pos, st_end, gw, True)
                                        if message < 0:
                                            return False
                                        pos = message + message_len
                                    elif g == 3:
                                        if gw != 0:
                                            return False
                                        raw, pos = _varint(buf, pos, st_end)
                                        if pos < 0:
                                            return False
                                        code = np.int64(np.int32(raw & np.uint64(0xFFFFFFFF)))
                                    else:
                                        pos = _skip(buf, pos, st_end, gw)
                                        if pos < 0:
                                            return False
                            else:  # dropped counts (varints) and flags (fixed32) are not kept
                                if ((f == 10 or f == 12 or f == 14) and w != 0) or (f == 16 and w != 5):
                                    return False
                                pos = _skip(buf, pos, sp_end, w)
                                if pos < 0:
                                    return False
                        # The receiver's rules (otlp._span_problem): a span it rejects is left
                        # to the protobuf library's path, which names the problem.
                        if trace_len != 16 or _zero(buf, trace, 16):
                            return False
                        if span_len != 8 or _zero(buf, span_id, 8):
                            return False
                        if parent_len != 0 and parent_len != 8:
                            return False
                        if (finish != 0 and finish < start) or start == 0:
                            return False
                        if start > _LAST or finish > _LAST:
                            return False
                        if fill:
                            spans[TRACE, span], spans[TRACE_LEN, span] = trace, trace_len
                            spans[SPAN, span], spans[SPAN_LEN, span] = span_id, span_len
                            spans[PARENT, span], spans[PARENT_LEN, span] = parent, parent_len
                            spans[STATE, span], spans[STATE_LEN, span] = state, state_len
                            spans[NAME, span], spans[NAME_LEN, span] = name, name_len
                            spans[KIND, span] = kind if 0 <= kind < N_KINDS else 0
                            spans[START, span] = np.int64(start)
                            spans[END, span] = np.int64(finish)
                            spans[CODE, span] = code if 0 <= code < N_CODES else 0
                            spans[MESSAGE, span], spans[MESSAGE_LEN, span] = message, message_len
                            spans[RESOURCE, span], spans[SCOPE, span] = resource, scope
                            spans[ATTRS, span], spans[EVENTS, span] = first_attr, first_event
                            at, size = _find(buf, span_attrs, first_attr, n_span_attrs, keys, key_offsets)
                            if at < 0:
                                return False
                            spans[CORRELATION, span], spans[CORRELATION_LEN, span] = at, size
                    elif field == 3:  # schema_url
                        pos = _skip_text(buf, pos, ss_end, wire)
                        if pos < 0:
                            return False
                    else:
                        pos = _skip(buf, pos, ss_end, wire)
                        if pos < 0:
                            return False
            elif field == 3:  # schema_url
                pos = _skip_text(buf, pos, rs_end, wire)
                if pos < 0:
                    return False
            else:
                pos = _skip(buf, pos, rs_end, wire)
                if pos < 0:
                    return False
        if fill:
            first = res[RES_ATTRS, resource]
            stop = first if not seen_resource else n_res_attrs
            service, service_len = _find(buf, res_attrs, first, stop, _SERVICE_NAME, _ONE_KEY)
            if service < 0:
                return False
            at, size = _find(buf, res_attrs, first, stop, keys, key_offsets)
            if at < 0:
                return False
            res[RES_SERVICE, resource], res[RES_SERVICE_LEN, resource] = service, service_len
            res[RES_CORRELATION, resource], res[RES_CORRELATION_LEN, resource] = at, size
    counts[N_SPANS], counts[N_SPAN_ATTRS], counts[N_RES] = n_spans, n_span_attrs, n_res
    counts[N_RES_ATTRS], counts[N_SCOPES], counts[N_EVENTS] = n_res_attrs, n_scopes, n_events
    counts[N_EVENT_ATTRS] = n_event_attrs
    if fill:  # a span without its own correlation takes its resource's
        for span in range(n_spans):
            if spans[CORRELATION_LEN, span] == 0:
                resource = spans[RESOURCE, span]
                spans[CORRELATION, span] = res[RES_CORRELATION, resource]
                spans[CORRELATION_LEN, span] = res[RES_CORRELATION_LEN, resource]
    return True


@compiled
def _zero(buf: np.ndarray, pos: Int, size: Int) -> bool:  # pragma: no cover
    for i in range(size):
        if buf[pos + i] != 0:
            return False
    return True


_SERVICE_NAME = np.frombuffer(b"service.name", dtype=np.uint8)
_ONE_KEY = np.array([0, _SERVICE_NAME.size], dtype=np.int64)


def _number_texts(records: np.ndarray, buf: np.ndarray) -> np.ndarray:
    """``buf`` with the text of every non-string attribute value appended, those records pointed
    at it (as ``any_value_text`` writes them: ``true``/``false``, ``str`` of the number)."""
    kinds = records[VALUE_KIND]
    rows = np.flatnonzero((kinds == BOOL) | (kinds == INT) | (kinds == DOUBLE))
    if not rows.size:
        return buf
    numbers = records[NUMBER, rows]
    texts = []
    for kind, number in zip(kinds[rows].tolist(), numbers.tolist(), strict=True):
        if kind == BOOL:
            texts.append(b"true" if number else b"false")
        elif kind == INT:
            texts.append(str(number).encode())
        else:
            texts.append(str(float(np.int64(number).view(np.float64))).encode())
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    records[VALUE, rows] = buf.size + np.cumsum(lengths) - lengths
    records[VALUE_LEN, rows] = lengths
    return np.concatenate([buf, np.frombuffer(b"".join(texts), dtype=np.uint8)])


def _maps(buf: np.ndarray, records: np.ndarray, offsets: np.ndarray) -> pa.Array:
    return pa.MapArray.from_arrays(
        pa.array(offsets.astype(np.int32)),
        strings(buf, records[KEY], records[KEY_LEN]),
        strings(buf, records[VALUE], records[VALUE_LEN]),
    )


def _bounds(firsts: np.ndarray, total: int) -> np.ndarray:
    return np.append(firsts, total).astype(np.int32)


@functools.lru_cache(maxsize=16)
def _keys(correlation_keys: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    encoded = [k.encode() for k in correlation_keys]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(k) for k in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded) or b"\0", dtype=np.uint8).copy(), offsets


def span_table(body: bytes, correlation_keys: Sequence[str]) -> pa.Table | None:
    """The spans of a protobuf ``ExportTraceServiceRequest`` as ``otel_traces`` columns (the
    table :meth:`SpanBatch.to_arrow` makes of it), or ``None`` when the request must take the
    protobuf library's path."""
    buf = np.frombuffer(body, dtype=np.uint8)
    keys, key_offsets = _keys(tuple(correlation_keys))
    counts = np.zeros(COUNTS, dtype=np.int64)
    empty = np.empty((1, 0), dtype=np.int64)
    if not _scan(buf, keys, key_offsets, False, counts, empty, empty, empty, empty, empty, empty, empty):
        return None
    spans = np.zeros((SPAN_ROWS, counts[N_SPANS]), dtype=np.int64)
    span_attrs = np.zeros((ATTR_ROWS, counts[N_SPAN_ATTRS]), dtype=np.int64)
    res = np.zeros((RES_ROWS, counts[N_RES]), dtype=np.int64)
    res_attrs = np.zeros((ATTR_ROWS, counts[N_RES_ATTRS]), dtype=np.int64)
    scopes = np.zeros((SCOPE_ROWS, counts[N_SCOPES]), dtype=np.int64)
    events = np.zeros((EVENT_ROWS, counts[N_EVENTS]), dtype=np.int64)
    event_attrs = np.zeros((ATTR_ROWS, counts[N_EVENT_ATTRS]), dtype=np.int64)
    if not _scan(
        buf, keys, key_offsets, True, counts, spans, span_attrs, res, res_attrs, scopes, events, event_attrs
    ):
        return None
    n = int(counts[N_SPANS])
    for records in (span_attrs, res_attrs, event_attrs):
        buf = _number_texts(records, buf)
    resource_of = pa.array(spans[RESOURCE].astype(np.int32))
    scope_of = pa.array(spans[SCOPE].astype(np.int32))
    nanos = pa.timestamp("ns", tz="UTC")
    event_bounds = pa.array(_bounds(spans[EVENTS], events.shape[1]))
    no_links = pa.array(np.zeros(n + 1, dtype=np.int32))
    columns = {
        "Timestamp": pa.array(spans[START]).cast(nanos),
        "TraceId": strings(buf, spans[TRACE], spans[TRACE_LEN], how=HEX),
        "SpanId": strings(buf, spans[SPAN], spans[SPAN_LEN], how=HEX),
        "ParentSpanId": strings(buf, spans[PARENT], spans[PARENT_LEN], how=HEX),
        "TraceState": strings(buf, spans[STATE], spans[STATE_LEN]),
        "SpanName": strings(buf, spans[NAME], spans[NAME_LEN]),
        "SpanKind": pa.array(_KINDS).take(pa.array(spans[KIND])),
        "ServiceName": strings(buf, res[RES_SERVICE], res[RES_SERVICE_LEN]).take(resource_of),
        "ResourceAttributes": _maps(buf, res_attrs, _bounds(res[RES_ATTRS], res_attrs.shape[1])).take(
            resource_of
        ),
        "ScopeName": strings(buf, scopes[SCOPE_NAME], scopes[SCOPE_NAME_LEN]).take(scope_of),
        "ScopeVersion": strings(buf, scopes[SCOPE_VERSION], scopes[SCOPE_VERSION_LEN]).take(scope_of),
        "SpanAttributes": _maps(buf, span_attrs, _bounds(spans[ATTRS], span_attrs.shape[1])),
        "Duration": pa.array(np.maximum(spans[END] - spans[START], 0).astype(np.uint64)),
        "StatusCode": pa.array(_STATUS).take(pa.array(spans[CODE])),
        "StatusMessage": strings(buf, spans[MESSAGE], spans[MESSAGE_LEN]),
        "Events.Timestamp": pa.ListArray.from_arrays(event_bounds, pa.array(events[EVENT_TIME]).cast(nanos)),
        "Events.Name": pa.ListArray.from_arrays(
            event_bounds, strings(buf, events[EVENT_NAME], events[EVENT_NAME_LEN])
        ),
        "Events.Attributes": pa.ListArray.from_arrays(
            event_bounds, _maps(buf, event_attrs, _bounds(events[EVENT_ATTRS], event_attrs.shape[1]))
        ),
        "Links.TraceId": pa.ListArray.from_arrays(no_links, pa.array([], pa.string())),
        "Links.SpanId": pa.ListArray.from_arrays(no_links, pa.array([], pa.string())),
        "Links.TraceState": pa.ListArray.from_arrays(no_links, pa.array([], pa.string())),
        "Links.Attributes": pa.ListArray.from_arrays(
            no_links, pa.array([], SPAN_SCHEMA.field("ResourceAttributes").type)
        ),
        "CorrelationId": strings(buf, spans[CORRELATION], spans[CORRELATION_LEN]),
    }
    return pa.Table.from_arrays([columns[name] for name in SPAN_SCHEMA.names], schema=SPAN_SCHEMA)


def compile_scanner() -> None:
    """Compile the scanner now (or load it from numba's cache: ~0.5 s against ~8 s)."""
    span_table(b"", ())
