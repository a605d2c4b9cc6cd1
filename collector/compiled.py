"""What the compiled scanners share (numba, without the GIL): the decorator, integer typing and
UTF-8.

Compiled code is cached on disk (~0.5 s to load against ~8 s to compile). numba writes the cache
next to the sources; where it cannot (an image with a read-only root file system, run as
another user), it goes to the temporary directory, and where nothing is writable, compiled
functions are simply not cached.
"""

# ruff: noqa: SIM110  (compiled loops: numba does not compile all() over a generator)
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numba
import numpy as np
import pyarrow as pa
from numba import njit

F = TypeVar("F", bound=Callable[..., Any])


SOURCES = Path(__file__).resolve().parent


def cache_location(sources: Path = SOURCES) -> str | None:
    """Where numba caches compiled code: ``None`` for beside ``sources`` (or a directory given by
    ``NUMBA_CACHE_DIR``), else a directory under the temporary one, or ``""`` for no cache."""
    if getattr(numba.config, "CACHE_DIR", "") or os.access(sources, os.W_OK):
        return None
    fallback = Path(tempfile.gettempdir()) / "flowsight-numba"
    try:
        fallback.mkdir(exist_ok=True)
    except OSError:
        return ""
    return str(fallback) if os.access(fallback, os.W_OK) else ""


_LOCATION = cache_location()
if _LOCATION:
    numba.config.CACHE_DIR = _LOCATION  # type: ignore[attr-defined]


def compiled(function: F) -> F:
    """Compile ``function`` without the GIL, cached on disk where a cache can be written."""
    return njit(nogil=True, cache=_LOCATION != "")(function)  # type: ignore[return-value]


Int = Any
"""An integer in compiled code: numba types it (NumPy's and Python's integers mix there)."""
AS_IS, LOWER, HEX = range(3)
"""How :func:`gather` writes the bytes."""
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


@compiled
def utf8_valid(buf: np.ndarray, pos: Int, end: Int) -> bool:  # pragma: no cover
    """Whether ``buf[pos:end]`` is valid UTF-8 (no overlong forms, surrogates or code points past
    U+10FFFF), as protobuf requires of a string field and JSON of a document."""
    while pos < end:
        byte = buf[pos]
        if byte < 0x80:
            pos += 1
            continue
        if 0xC2 <= byte <= 0xDF:
            size, low, high = 1, 0x80, 0xBF
        elif byte == 0xE0:
            size, low, high = 2, 0xA0, 0xBF
        elif 0xE1 <= byte <= 0xEC or 0xEE <= byte <= 0xEF:
            size, low, high = 2, 0x80, 0xBF
        elif byte == 0xED:
            size, low, high = 2, 0x80, 0x9F
        elif byte == 0xF0:
            size, low, high = 3, 0x90, 0xBF
        elif 0xF1 <= byte <= 0xF3:
            size, low, high = 3, 0x80, 0xBF
        elif byte == 0xF4:
            size, low, high = 3, 0x80, 0x8F
        else:
            return False
        if pos + size >= end:
            return False
        if buf[pos + 1] < low or buf[pos + 1] > high:
            return False
        for i in range(2, size + 1):
            if buf[pos + i] < 0x80 or buf[pos + i] > 0xBF:
                return False
        pos += size + 1
    return True


@compiled
def same_bytes(a: np.ndarray, a_at: Int, b: np.ndarray, b_at: Int, size: Int) -> bool:  # pragma: no cover
    """Whether ``a[a_at:a_at+size]`` and ``b[b_at:b_at+size]`` hold the same bytes."""
    for i in range(size):
        if a[a_at + i] != b[b_at + i]:
            return False
    return True


@compiled
def gather(
    buf: np.ndarray, starts: np.ndarray, sizes: np.ndarray, rows: np.ndarray, how: Int
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """Arrow string buffers (offsets, data) of the byte ranges of ``rows``: as they are
    (``AS_IS``), with ASCII capitals lowered (``LOWER``), or as lowercase hex (``HEX``)."""
    n = rows.size
    width = 2 if how == HEX else 1
    offsets = np.empty(n + 1, dtype=np.int32)
    offsets[0] = 0
    total = 0
    for i in range(n):
        total += sizes[rows[i]] * width
        offsets[i + 1] = total
    data = np.empty(total, dtype=np.uint8)
    out = 0
    for i in range(n):
        start = starts[rows[i]]
        for j in range(sizes[rows[i]]):
            byte = buf[start + j]
            if how == HEX:
                data[out] = _HEX[byte >> 4]
                data[out + 1] = _HEX[byte & 15]
            elif how == LOWER and 65 <= byte <= 90:
                data[out] = byte + 32
            else:
                data[out] = byte
            out += width
    return offsets, data


def strings(
    buf: np.ndarray, starts: np.ndarray, sizes: np.ndarray, rows: np.ndarray | None = None, how: int = 0
) -> pa.Array:
    """The byte ranges (of ``rows``, else all) of ``buf`` as an Arrow string array (see ``gather``)."""
    rows = np.arange(starts.size) if rows is None else rows
    offsets, data = gather(buf, np.ascontiguousarray(starts), np.ascontiguousarray(sizes), rows, how)
    return pa.StringArray.from_buffers(rows.size, pa.py_buffer(offsets), pa.py_buffer(data))


@compiled
def read_le(buf: np.ndarray, pos: Int, size: Int) -> np.uint64:  # pragma: no cover
    """The unsigned little-endian integer of ``size`` (at most 8) bytes at ``pos``."""
    value = np.uint64(0)
    for i in range(size):
        value |= np.uint64(buf[pos + i]) << np.uint64(8 * i)
    return value
