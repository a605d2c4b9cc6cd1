"""What the compiled scanners share (numba, without the GIL): integer typing and UTF-8."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

Int = Any
"""An integer in compiled code: numba types it (NumPy's and Python's integers mix there)."""


@njit(nogil=True, cache=True)
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


@njit(nogil=True, cache=True)
def read_le(buf: np.ndarray, pos: Int, size: Int) -> np.uint64:  # pragma: no cover
    """The unsigned little-endian integer of ``size`` (at most 8) bytes at ``pos``."""
    value = np.uint64(0)
    for i in range(size):
        value |= np.uint64(buf[pos + i]) << np.uint64(8 * i)
    return value
