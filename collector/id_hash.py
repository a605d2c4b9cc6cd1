"""xxHash64 and XXH3-64 of every string of an Arrow array, compiled (numba, without the GIL).

The dedup filter (:mod:`.seen_ids`) keeps both hashes of each stored id, loaded at start from
ClickHouse's ``xxHash64`` and ``xxh3`` (XXH3-64 with seed 0 and the default secret), so these
must give exactly what ClickHouse gives; tests/test_id_hash.py checks them against the
reference implementation (the ``xxhash`` package) for every length class of both algorithms.
Hashing in Python took ~0.9 µs an id on the request's thread, holding the GIL; here it is a
few tens of nanoseconds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from flowsight.collector.compiled import Int, compiled, read_le

_U = np.uint64
P64_1, P64_2, P64_3 = _U(0x9E3779B185EBCA87), _U(0xC2B2AE3D27D4EB4F), _U(0x165667B19E3779F9)
P64_4, P64_5 = _U(0x85EBCA77C2B2AE63), _U(0x27D4EB2F165667C5)
P32_1, P32_2, P32_3 = _U(0x9E3779B1), _U(0x85EBCA77), _U(0xC2B2AE3D)
MX1, MX2 = _U(0x165667919E3779F9), _U(0x9FB21C651E98DF25)
LOW32 = _U(0xFFFFFFFF)
SECRET = np.frombuffer(
    bytes.fromhex(
        "b8fe6c3923a44bbe7c01812cf721ad1cded46de9839097db7240a4a4b7b3671f"
        "cb79e64eccc0e578825ad07dccff7221b8084674f743248ee03590e6813a264c"
        "3c2852bb91c300cb88d0658b1b532ea371644897a20df94e3819ef46a9deacd8"
        "a8fa763fe39c343ff9dcbbc7c70b4f1d8a51e04bcdb45931c89f7ec9d9787364"
        "eac5ac8334d3ebc3c581a0fffa1363eb170ddd51b7f0da49d316552629d4689e"
        "2b16be587d47a1fc8ff8b8d17ad031ce45cb3a8f95160428afd7fbcabb4b407e"
    ),
    dtype=np.uint8,
)
"""XXH3's default secret (192 bytes)."""


@compiled
def _rotl(x: Any, r: Int) -> Any:  # pragma: no cover
    return (x << _U(r)) | (x >> _U(64 - r))


@compiled
def _round(acc: Any, lane: Any) -> Any:  # pragma: no cover
    acc = acc + lane * P64_2
    return _rotl(acc, 31) * P64_1


@compiled
def _merge_round(acc: Any, value: Any) -> Any:  # pragma: no cover
    acc ^= _round(_U(0), value)
    return acc * P64_1 + P64_4


@compiled
def _avalanche64(h: Any) -> Any:  # pragma: no cover
    h ^= h >> _U(33)
    h *= P64_2
    h ^= h >> _U(29)
    h *= P64_3
    h ^= h >> _U(32)
    return h


@compiled
def xxh64(buf: np.ndarray, start: Int, size: Int) -> Any:  # pragma: no cover
    """XXH64 with seed 0 of ``buf[start:start+size]``."""
    p, end = start, start + size
    if size >= 32:
        v1, v2, v3, v4 = P64_1 + P64_2, P64_2, _U(0), _U(0) - P64_1
        while p + 32 <= end:
            v1 = _round(v1, read_le(buf, p, 8))
            v2 = _round(v2, read_le(buf, p + 8, 8))
            v3 = _round(v3, read_le(buf, p + 16, 8))
            v4 = _round(v4, read_le(buf, p + 24, 8))
            p += 32
        h = _rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)
        h = _merge_round(h, v1)
        h = _merge_round(h, v2)
        h = _merge_round(h, v3)
        h = _merge_round(h, v4)
    else:
        h = P64_5
    h += _U(size)
    while p + 8 <= end:
        h ^= _round(_U(0), read_le(buf, p, 8))
        h = _rotl(h, 27) * P64_1 + P64_4
        p += 8
    if p + 4 <= end:
        h ^= read_le(buf, p, 4) * P64_1
        h = _rotl(h, 23) * P64_2 + P64_3
        p += 4
    while p < end:
        h ^= _U(buf[p]) * P64_5
        h = _rotl(h, 11) * P64_1
        p += 1
    return _avalanche64(h)


@compiled
def _mul_fold(a: Any, b: Any) -> Any:  # pragma: no cover
    """The 128-bit product of ``a`` and ``b``, its halves xor-ed."""
    a_lo, a_hi, b_lo, b_hi = a & LOW32, a >> _U(32), b & LOW32, b >> _U(32)
    lo_lo, hi_lo, lo_hi, hi_hi = a_lo * b_lo, a_hi * b_lo, a_lo * b_hi, a_hi * b_hi
    cross = (lo_lo >> _U(32)) + (hi_lo & LOW32) + lo_hi
    upper = (hi_lo >> _U(32)) + (cross >> _U(32)) + hi_hi
    lower = (cross << _U(32)) | (lo_lo & LOW32)
    return lower ^ upper


@compiled
def _avalanche3(h: Any) -> Any:  # pragma: no cover
    h ^= h >> _U(37)
    h *= MX1
    return h ^ (h >> _U(32))


@compiled
def _mix16(buf: np.ndarray, p: Int, s: Int) -> Any:  # pragma: no cover
    return _mul_fold(
        read_le(buf, p, 8) ^ read_le(SECRET, s, 8), read_le(buf, p + 8, 8) ^ read_le(SECRET, s + 8, 8)
    )


@compiled
def _swap64(x: Any) -> Any:  # pragma: no cover
    out = _U(0)
    for i in range(8):
        out = (out << _U(8)) | ((x >> _U(8 * i)) & _U(0xFF))
    return out


@compiled
def _accumulate(acc: np.ndarray, buf: np.ndarray, p: Int, s: Int) -> None:  # pragma: no cover
    for i in range(8):
        value = read_le(buf, p + 8 * i, 8)
        key = value ^ read_le(SECRET, s + 8 * i, 8)
        acc[i ^ 1] += value
        acc[i] += (key & LOW32) * (key >> _U(32))


@compiled
def _long(buf: np.ndarray, start: Int, size: Int) -> Any:  # pragma: no cover
    acc = np.empty(8, dtype=np.uint64)
    acc[0], acc[1], acc[2], acc[3] = P32_3, P64_1, P64_2, P64_3
    acc[4], acc[5], acc[6], acc[7] = P64_4, P32_2, P64_5, P32_1
    stripes_per_block = (SECRET.size - 64) // 8
    block = 64 * stripes_per_block
    blocks = (size - 1) // block
    for n in range(blocks):
        for s in range(stripes_per_block):
            _accumulate(acc, buf, start + n * block + s * 64, s * 8)
        for i in range(8):  # scramble
            a = acc[i]
            a ^= a >> _U(47)
            a ^= read_le(SECRET, SECRET.size - 64 + 8 * i, 8)
            acc[i] = a * P32_1
    stripes = ((size - 1) - block * blocks) // 64
    for s in range(stripes):
        _accumulate(acc, buf, start + blocks * block + s * 64, s * 8)
    _accumulate(acc, buf, start + size - 64, SECRET.size - 64 - 7)
    result = _U(size) * P64_1
    for i in range(4):
        result += _mul_fold(
            acc[2 * i] ^ read_le(SECRET, 11 + 16 * i, 8), acc[2 * i + 1] ^ read_le(SECRET, 11 + 16 * i + 8, 8)
        )
    return _avalanche3(result)


@compiled
def xxh3(buf: np.ndarray, start: Int, size: Int) -> Any:  # pragma: no cover
    """XXH3-64 with seed 0 and the default secret of ``buf[start:start+size]``."""
    p, n = start, size
    if n == 0:
        return _avalanche64(read_le(SECRET, 56, 8) ^ read_le(SECRET, 64, 8))
    if n <= 3:
        c1, c2, c3 = _U(buf[p]), _U(buf[p + (n >> 1)]), _U(buf[p + n - 1])
        combined = (c1 << _U(16)) | (c2 << _U(24)) | c3 | (_U(n) << _U(8))
        return _avalanche64(combined ^ (read_le(SECRET, 0, 4) ^ read_le(SECRET, 4, 4)))
    if n <= 8:
        bitflip = read_le(SECRET, 8, 8) ^ read_le(SECRET, 16, 8)
        keyed = (read_le(buf, p + n - 4, 4) + (read_le(buf, p, 4) << _U(32))) ^ bitflip
        keyed ^= _rotl(keyed, 49) ^ _rotl(keyed, 24)
        keyed *= MX2
        keyed ^= (keyed >> _U(35)) + _U(n)
        keyed *= MX2
        return keyed ^ (keyed >> _U(28))
    if n <= 16:
        low = read_le(buf, p, 8) ^ (read_le(SECRET, 24, 8) ^ read_le(SECRET, 32, 8))
        high = read_le(buf, p + n - 8, 8) ^ (read_le(SECRET, 40, 8) ^ read_le(SECRET, 48, 8))
        return _avalanche3(_U(n) + _swap64(low) + high + _mul_fold(low, high))
    if n <= 128:
        acc = _U(n) * P64_1
        if n > 32:
            if n > 64:
                if n > 96:
                    acc += _mix16(buf, p + 48, 96)
                    acc += _mix16(buf, p + n - 64, 112)
                acc += _mix16(buf, p + 32, 64)
                acc += _mix16(buf, p + n - 48, 80)
            acc += _mix16(buf, p + 16, 32)
            acc += _mix16(buf, p + n - 32, 48)
        acc += _mix16(buf, p, 0)
        acc += _mix16(buf, p + n - 16, 16)
        return _avalanche3(acc)
    if n <= 240:
        acc = _U(n) * P64_1
        for i in range(8):
            acc += _mix16(buf, p + 16 * i, 16 * i)
        acc = _avalanche3(acc)
        for i in range(8, n // 16):
            acc += _mix16(buf, p + 16 * i, 16 * (i - 8) + 3)
        acc += _mix16(buf, p + n - 16, 136 - 17)
        return _avalanche3(acc)
    return _long(buf, p, n)


@compiled
def _hash_all(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    n = offsets.size - 1
    first = np.empty(n, dtype=np.uint64)
    second = np.empty(n, dtype=np.uint64)
    for i in range(n):
        start, size = offsets[i], offsets[i + 1] - offsets[i]
        first[i] = xxh64(data, start, size)
        second[i] = xxh3(data, start, size)
    return first, second


def hash_strings(strings: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """``xxHash64`` and ``xxh3`` of each string (ClickHouse's functions of those names)."""
    if len(strings) == 0:  # (a batch without spans, on every request)
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.uint64)
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks() if strings.num_chunks != 1 else strings.chunk(0)
    if pa.types.is_large_string(strings.type):
        strings = strings.cast(pa.string())
    n = len(strings)
    _, offsets_buffer, data_buffer = strings.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[strings.offset : strings.offset + n + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(1, np.uint8)
    return _hash_all(data, offsets.astype(np.int64))
