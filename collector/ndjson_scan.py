"""A compiled scanner of NDJSON lifecycle events: lines to columns without a Python object per
event.

It reads the common line (one JSON object of contract fields with plain string values, and an
``attributes`` object of plain strings) in compiled code (numba, without the GIL): where each
value's bytes are, and whether the contract's rules hold for it. What it is not sure of (an
escape sequence, a value that is not a string, ``null``, an unknown or repeated field, a
timestamp outside the common RFC 3339 form, any rule broken) marks the line for the row path,
which applies every rule and names the problem. The workflow and stage pair, and the systems a
sender's token allows, are checked afterwards on whole columns (:mod:`.columnar`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from flowsight.collector.compiled import AS_IS, LOWER, Int, compiled, same_bytes, strings, utf8_valid
from flowsight.collector.events import EVENT_SCHEMA

FIELD_NAMES = tuple(EVENT_SCHEMA.names[:11])
"""The contract's fields, in the order of the events table."""
(EVENT_ID, CORRELATION_ID, WORKFLOW, STAGE, SYSTEM, OCCURRED_AT, STATUS, CHANNEL, TRACE_ID, SPAN_ID,
 ATTRIBUTES) = range(11)  # fmt: skip
TEXT_FIELDS = 10
"""Every field but ``attributes`` is text; its value's (start, length) go to rows 2i and 2i+1."""
_NAMES = np.frombuffer("".join(FIELD_NAMES).encode(), dtype=np.uint8)
_NAME_OFFSETS = np.cumsum([0, *map(len, FIELD_NAMES)]).astype(np.int64)
_OK_TEXT = np.frombuffer(b"ok", dtype=np.uint8)
_FAILED_TEXT = np.frombuffer(b"failed", dtype=np.uint8)
# limits, in the order the scanner takes them
(MAX_ID, MAX_CHANNEL, MAX_ATTRIBUTES, MAX_KEY, MAX_VALUE, LATEST_MS) = range(6)
NO_LATEST = np.iinfo(np.int64).max


@compiled
def _space(byte: Int) -> bool:  # pragma: no cover
    return byte == 0x20 or byte == 0x09 or byte == 0x0D


@compiled
def _after_space(buf: np.ndarray, pos: Int, end: Int) -> Int:  # pragma: no cover
    """The position of the first byte from ``pos`` that is not JSON white space."""
    while pos < end and _space(buf[pos]):
        pos += 1
    return pos


@compiled
def _chars(buf: np.ndarray, start: Int, size: Int) -> Int:  # pragma: no cover
    """Characters (code points) of valid UTF-8 bytes."""
    n = 0
    for i in range(start, start + size):
        if buf[i] & 0xC0 != 0x80:
            n += 1
    return n


@compiled
def _string(buf: np.ndarray, pos: Int, end: Int) -> Int:  # pragma: no cover
    """The position of the closing quote of a plain JSON string whose text starts at ``pos``;
    -1 for an escape, a control character or no closing quote."""
    while pos < end:
        byte = buf[pos]
        if byte == 0x22:
            return pos
        if byte == 0x5C or byte < 0x20:
            return -1
        pos += 1
    return -1


@compiled
def _quoted(buf: np.ndarray, pos: Int, end: Int) -> Int:  # pragma: no cover
    """The closing quote of a plain JSON string opening at ``pos``; -1 for none (see ``_string``)."""
    if pos >= end or buf[pos] != 0x22:
        return -1
    return _string(buf, pos + 1, end)


@compiled
def _colon(buf: np.ndarray, pos: Int, end: Int) -> Int:  # pragma: no cover
    """The start of a value after a key: past white space, a colon and white space; -1 for no colon."""
    pos = _after_space(buf, pos, end)
    if pos >= end or buf[pos] != 0x3A:
        return -1
    return _after_space(buf, pos + 1, end)


@compiled
def _after_value(buf: np.ndarray, pos: Int, end: Int) -> tuple[Int, Int]:  # pragma: no cover
    """After a value: (1, the next key's start) past a comma, (0, past the brace) at the end of the
    object, (-1, pos) for anything else."""
    pos = _after_space(buf, pos, end)
    if pos < end and buf[pos] == 0x2C:
        return 1, _after_space(buf, pos + 1, end)
    if pos < end and buf[pos] == 0x7D:
        return 0, pos + 1
    return -1, pos


@compiled
def _field(buf: np.ndarray, start: Int, size: Int) -> Int:  # pragma: no cover
    """The index of the contract field named by ``buf[start:start+size]``; -1 for none."""
    for f in range(_NAME_OFFSETS.size - 1):
        name, length = _NAME_OFFSETS[f], _NAME_OFFSETS[f + 1] - _NAME_OFFSETS[f]
        if length == size and same_bytes(buf, start, _NAMES, name, size):
            return f
    return -1


@compiled
def _digits(buf: np.ndarray, pos: Int, n: Int) -> Int:  # pragma: no cover
    """The number written by ``n`` ASCII digits at ``pos``; -1 when one is not a digit."""
    value = 0
    for i in range(n):
        d = buf[pos + i] - 48
        if d < 0 or d > 9:
            return -1
        value = value * 10 + d
    return value


@compiled
def _days_from_civil(y: Int, m: Int, d: Int) -> Int:  # pragma: no cover
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y = y - 1 if m <= 2 else y
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@compiled
def _timestamp_ms(buf: np.ndarray, pos: Int, size: Int) -> tuple[bool, Int]:  # pragma: no cover
    """Milliseconds since the epoch of ``YYYY-MM-DD[T ]hh:mm:ss[.f{1,9}](Z|±hh[:]mm)``, years
    1900-2999, floored to the millisecond as the row path does; (False, 0) for anything else
    (the row path decides)."""
    end = pos + size
    if size < 20:
        return False, 0
    year, month, day = _digits(buf, pos, 4), _digits(buf, pos + 5, 2), _digits(buf, pos + 8, 2)
    hour, minute, second = _digits(buf, pos + 11, 2), _digits(buf, pos + 14, 2), _digits(buf, pos + 17, 2)
    if buf[pos + 4] != 0x2D or buf[pos + 7] != 0x2D or (buf[pos + 10] != 0x54 and buf[pos + 10] != 0x20):
        return False, 0
    if buf[pos + 13] != 0x3A or buf[pos + 16] != 0x3A:
        return False, 0
    if year < 1900 or year > 2999 or month < 1 or month > 12 or day < 1:
        return False, 0
    if hour < 0 or hour > 23 or minute < 0 or minute > 59 or second < 0 or second > 59:
        return False, 0
    leap = (year % 4 == 0 and year % 100 != 0) or year % 400 == 0
    if month == 2:
        days_in_month = 29 if leap else 28
    elif month == 4 or month == 6 or month == 9 or month == 11:
        days_in_month = 30
    else:
        days_in_month = 31
    if day > days_in_month:
        return False, 0
    at = pos + 19
    millis = 0
    if at < end and buf[at] == 0x2E:  # a fraction of 1-9 digits; the first three are milliseconds
        at += 1
        digits = 0
        while at < end and 48 <= buf[at] <= 57:
            if digits < 3:
                millis = millis * 10 + (buf[at] - 48)
            digits += 1
            at += 1
        if digits == 0 or digits > 9:
            return False, 0
        for _ in range(digits, 3):
            millis *= 10
    offset = 0
    if at < end and buf[at] == 0x5A:  # Z
        at += 1
    elif at < end and (buf[at] == 0x2B or buf[at] == 0x2D):
        sign = 1 if buf[at] == 0x2B else -1
        at += 1
        if at + 2 > end:
            return False, 0
        hours = _digits(buf, at, 2)
        at += 2
        if at < end and buf[at] == 0x3A:
            at += 1
        if at + 2 > end:
            return False, 0
        minutes = _digits(buf, at, 2)
        at += 2
        if hours < 0 or hours > 23 or minutes < 0 or minutes > 59:
            return False, 0
        offset = sign * (hours * 60 + minutes)
    else:
        return False, 0
    if at != end:
        return False, 0
    seconds = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset * 60
    return True, seconds * 1000 + millis


@compiled
def _hex_id(buf: np.ndarray, start: Int, size: Int, length: Int) -> bool:  # pragma: no cover
    """Absent, empty, or ``length`` hex digits of either case."""
    if size == 0:
        return True
    if size != length:
        return False
    for i in range(start, start + size):
        byte = buf[i] | 0x20  # lower case
        if not (48 <= byte <= 57 or 97 <= byte <= 102):
            return False
    return True


@compiled
def _is(buf: np.ndarray, start: Int, size: Int, text: np.ndarray) -> bool:  # pragma: no cover
    return size == text.size and same_bytes(buf, start, text, 0, size)


@compiled
def _line(
    buf: np.ndarray,
    pos: Int,
    end: Int,
    row: Int,
    texts: np.ndarray,
    present: np.ndarray,
    attrs: np.ndarray,
    n_attrs: Int,
    limits: np.ndarray,
) -> tuple[bool, Int, Int]:  # pragma: no cover
    """Read one line ``buf[pos:end]``: (sure, attributes now held, milliseconds of occurred_at).
    A line it is not sure of leaves ``attrs`` as it found it."""
    first_attr = n_attrs
    for f in range(present.size):
        present[f] = False
    pos = _after_space(buf, pos, end)
    if pos >= end or buf[pos] != 0x7B:  # {
        return False, first_attr, 0
    pos = _after_space(buf, pos + 1, end)
    if pos < end and buf[pos] == 0x7D:  # an empty object lacks the required fields
        return False, first_attr, 0
    while True:
        close = _quoted(buf, pos, end)
        if close < 0:
            return False, first_attr, 0
        f = _field(buf, pos + 1, close - pos - 1)
        if f < 0 or present[f]:  # unknown or repeated: the row path names it
            return False, first_attr, 0
        present[f] = True
        pos = _colon(buf, close + 1, end)
        if pos < 0:
            return False, first_attr, 0
        if f == ATTRIBUTES:
            if pos >= end or buf[pos] != 0x7B:
                return False, first_attr, 0
            pos = _after_space(buf, pos + 1, end)
            more = 1
            if pos < end and buf[pos] == 0x7D:
                more, pos = 0, pos + 1
            while more == 1:
                key_end = _quoted(buf, pos, end)
                if key_end < 0:
                    return False, first_attr, 0
                key, key_size = pos + 1, key_end - pos - 1
                pos = _colon(buf, key_end + 1, end)
                value_end = _quoted(buf, pos, end) if pos >= 0 else -1
                if value_end < 0:
                    return False, first_attr, 0
                value, value_size = pos + 1, value_end - pos - 1
                if n_attrs - first_attr >= limits[MAX_ATTRIBUTES]:
                    return False, first_attr, 0
                key_chars = _chars(buf, key, key_size)
                if key_chars == 0 or key_chars > limits[MAX_KEY]:
                    return False, first_attr, 0
                if _chars(buf, value, value_size) > limits[MAX_VALUE]:
                    return False, first_attr, 0
                for other in range(first_attr, n_attrs):  # a key given twice: the row path
                    if attrs[1, other] == key_size and same_bytes(buf, key, buf, attrs[0, other], key_size):
                        return False, first_attr, 0
                attrs[0, n_attrs], attrs[1, n_attrs] = key, key_size
                attrs[2, n_attrs], attrs[3, n_attrs] = value, value_size
                n_attrs += 1
                more, pos = _after_value(buf, value_end + 1, end)
                if more < 0:
                    return False, first_attr, 0
        else:
            close = _quoted(buf, pos, end)  # not a string (null, a number, ...): the row path
            if close < 0:
                return False, first_attr, 0
            texts[2 * f, row], texts[2 * f + 1, row] = pos + 1, close - pos - 1
            pos = close + 1
        more, pos = _after_value(buf, pos, end)
        if more < 0:
            return False, first_attr, 0
        if more == 0:
            break
    pos = _after_space(buf, pos, end)
    if pos != end:  # something after the object
        return False, first_attr, 0

    # The contract's rules, as the row path applies them.
    for f in (EVENT_ID, CORRELATION_ID, WORKFLOW, STAGE, SYSTEM, OCCURRED_AT):
        if not present[f]:
            return False, first_attr, 0
    for f in (EVENT_ID, CORRELATION_ID):
        chars = _chars(buf, texts[2 * f, row], texts[2 * f + 1, row])
        if chars == 0 or chars > limits[MAX_ID]:
            return False, first_attr, 0
    start, size = texts[2 * SYSTEM, row], texts[2 * SYSTEM + 1, row]
    if size == 0 or size > 64:
        return False, first_attr, 0
    for i in range(start, start + size):
        byte = buf[i]
        if not (97 <= byte <= 122 or 48 <= byte <= 57 or byte == 0x5F or byte == 0x2E or byte == 0x2D):
            return False, first_attr, 0
    sure, millis = _timestamp_ms(buf, texts[2 * OCCURRED_AT, row], texts[2 * OCCURRED_AT + 1, row])
    if not sure or millis > limits[LATEST_MS]:
        return False, first_attr, 0
    if present[STATUS]:
        start, size = texts[2 * STATUS, row], texts[2 * STATUS + 1, row]
        if not (_is(buf, start, size, _OK_TEXT) or _is(buf, start, size, _FAILED_TEXT)):
            return False, first_attr, 0
    if (
        present[CHANNEL]
        and _chars(buf, texts[2 * CHANNEL, row], texts[2 * CHANNEL + 1, row]) > limits[MAX_CHANNEL]
    ):
        return False, first_attr, 0
    if present[TRACE_ID] and not _hex_id(buf, texts[2 * TRACE_ID, row], texts[2 * TRACE_ID + 1, row], 32):
        return False, first_attr, 0
    if present[SPAN_ID] and not _hex_id(buf, texts[2 * SPAN_ID, row], texts[2 * SPAN_ID + 1, row], 16):
        return False, first_attr, 0
    return True, n_attrs, millis


@compiled
def _scan(
    buf: np.ndarray,
    end: Int,
    limits: np.ndarray,
    texts: np.ndarray,
    occurred: np.ndarray,
    sure: np.ndarray,
    attrs: np.ndarray,
    attr_offsets: np.ndarray,
    defaults: np.ndarray,
) -> Int:  # pragma: no cover
    """Read every non-blank line; returns how many. Past the rows the arrays hold (the most a
    request may have), lines are only counted. ``defaults``: where the default texts of status
    (``ok``) and of absent optional fields (empty) are in ``buf``."""
    held = occurred.size
    present = np.zeros(len(FIELD_NAMES), dtype=np.bool_)
    row = 0
    n_attrs = 0
    pos = 0
    attr_offsets[0] = 0
    while pos < end:
        stop = pos
        while stop < end and buf[stop] != 0x0A:
            stop += 1
        blank = True
        for i in range(pos, stop):
            byte = buf[i]
            if not (byte == 0x20 or 0x09 <= byte <= 0x0D):
                blank = False
                break
        if not blank and row >= held:  # too many for one request: count them, read none
            row += 1
        elif not blank:
            for f in range(TEXT_FIELDS):
                texts[2 * f, row], texts[2 * f + 1, row] = defaults[0], 0
            texts[2 * STATUS, row], texts[2 * STATUS + 1, row] = defaults[1], 2
            ok = utf8_valid(buf, pos, stop)
            millis = 0
            if ok:
                ok, n_attrs, millis = _line(buf, pos, stop, row, texts, present, attrs, n_attrs, limits)
            sure[row] = ok
            occurred[row] = millis if ok else 0
            attr_offsets[row + 1] = n_attrs
            row += 1
        pos = stop + 1
    return row


@dataclass
class Scanned:
    """The lines of a body: which the scanner is sure of, and those as Arrow columns."""

    lines: int
    sure: np.ndarray
    columns: dict[str, pa.Array]
    """Per text field and ``attributes``, the values of the sure lines; ``occurred_at`` in ms."""


@compiled
def _newlines_and_colons(buf: np.ndarray, end: Int) -> tuple[Int, Int]:  # pragma: no cover
    """How many line feeds and colons the body holds (array sizes), in one vectorised pass."""
    lines = 0
    colons = 0
    for i in range(end):
        byte = buf[i]
        lines += byte == 0x0A
        colons += byte == 0x3A
    return lines, colons


def scan(
    body: bytes,
    *,
    max_id_chars: int,
    max_channel_chars: int,
    max_attributes: int,
    max_attribute_key_chars: int,
    max_attribute_value_chars: int,
    latest_ms: int | None,
    max_lines: int,
) -> Scanned:
    """Scan an NDJSON body (see the module's documentation). A body of more than ``max_lines``
    events is only counted: ``lines`` says how many, and no column is read."""
    buf = np.frombuffer(body + b"ok", dtype=np.uint8)
    end = len(body)
    newlines, colons = _newlines_and_colons(buf, end)
    capacity = min(newlines + 1, max_lines)
    limits = np.array(
        [
            max_id_chars,
            max_channel_chars,
            max_attributes,
            max_attribute_key_chars,
            max_attribute_value_chars,
            NO_LATEST if latest_ms is None else latest_ms,
        ],
        dtype=np.int64,
    )
    texts = np.empty((2 * TEXT_FIELDS, capacity), dtype=np.int64)
    occurred = np.empty(capacity, dtype=np.int64)
    sure = np.empty(capacity, dtype=np.bool_)
    attrs = np.empty((4, min(colons + 1, capacity * max_attributes)), dtype=np.int64)
    attr_offsets = np.empty(capacity + 1, dtype=np.int64)
    defaults = np.array([end, end], dtype=np.int64)
    lines = _scan(buf, end, limits, texts, occurred, sure, attrs, attr_offsets, defaults)
    if lines > capacity:
        return Scanned(lines, np.zeros(0, dtype=np.bool_), {})
    sure = sure[:lines]
    rows = np.flatnonzero(sure)
    columns: dict[str, pa.Array] = {
        name: strings(buf, texts[2 * f], texts[2 * f + 1], rows, LOWER if f in (TRACE_ID, SPAN_ID) else AS_IS)
        for f, name in enumerate(FIELD_NAMES[:TEXT_FIELDS])
        if name != "occurred_at"
    }
    columns["occurred_at"] = pa.array(occurred[rows]).cast(pa.timestamp("ms", tz="UTC"))
    first, last = attr_offsets[rows], attr_offsets[rows + 1]
    counts = last - first
    offsets = np.zeros(rows.size + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    held = np.repeat(first - offsets[:-1], counts) + np.arange(int(offsets[-1]))
    columns["attributes"] = pa.MapArray.from_arrays(
        pa.array(offsets),
        strings(buf, attrs[0], attrs[1], held),
        strings(buf, attrs[2], attrs[3], held),
    )
    return Scanned(lines, sure, columns)


def compile_scanner() -> None:
    """Compile the scanner now (or load it from numba's cache: ~0.5 s against ~7 s)."""
    scan(
        b'{"event_id":"e"}\n',
        max_id_chars=1,
        max_channel_chars=1,
        max_attributes=1,
        max_attribute_key_chars=1,
        max_attribute_value_chars=1,
        latest_ms=None,
        max_lines=1,
    )
