"""The in-memory dedup filter: two 64-bit hashes of every id seen within a window.

Looking each batch's ids up in ClickHouse reads more of the table the more it holds (ids are
random, so every granule qualifies), and cannot see what waits in the write-ahead log. Instead
the writer keeps ``xxHash64(id)`` of every id stored or logged in memory as sorted NumPy
arrays, with ``xxh3(id)`` beside each (16 bytes an id), loaded at start with the same hashes
ClickHouse computes. A batch is checked in ascending order, each id searched for from where the
last was found (compiled, galloping then halving), and every stored entry sharing its first
hash is compared on the second: an id is a resend when both are stored together (two
independent 64-bit hashes agreeing by chance: about one in 2^128), so the answer is exact
without asking ClickHouse, whether the first copy is loaded or still in the log.

New hashes go to small sorted runs that are merged into the main array in the background of
commits, like an LSM tree, so adding stays cheap. :class:`IdWindow` keeps them in generations
of an eighth of the dedup window each and drops whole generations as they leave the window, so
memory holds the window's ids and no more.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from flowsight.collector.compiled import compiled
from flowsight.collector.id_hash import hash_strings

MAX_RUNS = 8

Prints = tuple[np.ndarray, np.ndarray]
"""Fingerprints of ids: (``xxHash64``, ``xxh3``), one uint64 array each."""


def hash_ids(ids: Sequence[str]) -> np.ndarray:
    """``xxHash64`` of each id, as ClickHouse's ``xxHash64(event_id)`` computes it."""
    return fingerprints(ids)[0]


def fingerprints(ids: Sequence[str] | pa.Array | pa.ChunkedArray) -> Prints:
    """``xxHash64`` and ``xxh3`` of each id (ClickHouse's functions of the same names), computed
    over the Arrow strings without the GIL (:mod:`.id_hash`)."""
    if not isinstance(ids, pa.Array | pa.ChunkedArray):
        ids = pa.array(ids, pa.string())
    return hash_strings(ids)


class SeenIds:
    """A set of (hash, check) pairs of uint64, sorted by hash, with vectorised lookups."""

    def __init__(self) -> None:
        self._base = np.empty(0, dtype=np.uint64)
        self._base_checks = np.empty(0, dtype=np.uint64)
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return int(self._base.size + sum(run.size for run, _ in self._runs))

    @property
    def nbytes(self) -> int:
        return int(2 * len(self) * 8)

    def load(self, hashes: np.ndarray, checks: np.ndarray) -> None:
        """Replace the contents (any order, duplicates allowed). The arrays are taken over and
        sorted in place: the load costs the filter's own size and no more."""
        hashes, checks = hashes.astype(np.uint64, copy=False), checks.astype(np.uint64, copy=False)
        sort_pairs(hashes, checks)
        self._base, self._base_checks = hashes, checks
        self._runs = []

    def _arrays(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(self._base, self._base_checks), *self._runs]

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        """A boolean mask: which of ``hashes`` are stored as a first hash."""
        return _lookup(self._arrays(), hashes, None)

    def confirmed(self, hashes: np.ndarray, checks: np.ndarray) -> np.ndarray:
        """A boolean mask: which ids have both hashes stored together (resends)."""
        return _lookup(self._arrays(), hashes, checks)

    def add(self, hashes: np.ndarray, checks: np.ndarray) -> None:
        """Record newly stored ids."""
        if not hashes.size:
            return
        self._runs.append(_sorted(hashes, checks))
        if len(self._runs) > MAX_RUNS:
            merged = _merge(self._runs)
            # Fold the runs into the base once they are an eighth of it: each hash is copied
            # a bounded number of times, and merging sorted arrays is linear.
            if merged[0].size * 8 > self._base.size:
                self._base, self._base_checks = _merge_two(self._base, self._base_checks, *merged)
                self._runs = []
            else:
                self._runs = [merged]


def _lookup(
    arrays: list[tuple[np.ndarray, np.ndarray]], hashes: np.ndarray, checks: np.ndarray | None
) -> np.ndarray:
    # The ids are searched in ascending order, each search galloping on from where the last
    # ended (compiled, without the GIL): a batch's ids are a sparse sample of the stored ones,
    # so the probes stay near each other instead of each binary search crossing the whole array
    # (with 49M stored ids: ~130 ms a 30k-id commit with NumPy's searchsorted).
    order = np.argsort(hashes)
    ordered = hashes[order]
    ordered_checks = checks[order] if checks is not None else ordered
    found = np.zeros(hashes.size, dtype=bool)
    for array, array_checks in arrays:
        if array.size:
            _probe(array, array_checks, ordered, ordered_checks, checks is not None, found)
    out = np.empty_like(found)
    out[order] = found
    return out


class IdWindow:
    """The ids seen within ``window_ms``, in :data:`GENERATIONS` generations by time (ingest
    time at run time; what the start loads from ClickHouse says which time), each a
    :class:`SeenIds`; a generation goes whole once it is older than the window."""

    def __init__(self, window_ms: int):
        self.window_ms = window_ms
        self.span_ms = max(1, -(-window_ms // GENERATIONS))
        self._generations: dict[int, SeenIds] = {}
        self._forgotten: set[tuple[int, int]] = set()

    def __len__(self) -> int:
        return sum(len(g) for g in self._generations.values())

    @property
    def nbytes(self) -> int:
        return sum(g.nbytes for g in self._generations.values())

    @property
    def generations(self) -> int:
        return len(self._generations)

    def generation(self, ms: int) -> int:
        """The generation an id seen at ``ms`` (milliseconds since the epoch) belongs to."""
        return ms // self.span_ms

    def oldest_kept(self, now_ms: int) -> int:
        """The oldest generation still (partly) within the window at ``now_ms``."""
        return self.generation(now_ms - self.window_ms)

    def load(self, generation: int, hashes: np.ndarray, checks: np.ndarray) -> None:
        """Set one generation's ids (any order; the arrays are taken over, see :meth:`SeenIds.load`)."""
        seen = SeenIds()
        seen.load(hashes, checks)
        self._generations[generation] = seen

    def add(self, hashes: np.ndarray, checks: np.ndarray, now_ms: int) -> None:
        """Record ids seen at ``now_ms``."""
        if hashes.size:
            self._generations.setdefault(self.generation(now_ms), SeenIds()).add(hashes, checks)
            if self._forgotten:
                self._forgotten.difference_update(zip(hashes.tolist(), checks.tolist(), strict=True))

    def forget(self, hashes: np.ndarray, checks: np.ndarray) -> None:
        """Take ids back out (rows ClickHouse refused, which a replay must be able to store).
        Rare, so a set beside the arrays, consulted only while it holds anything."""
        self._forgotten.update(zip(hashes.tolist(), checks.tolist(), strict=True))

    def expire(self, now_ms: int) -> int:
        """Drop the generations wholly older than the window; how many ids went."""
        oldest = self.oldest_kept(now_ms)
        gone = [g for g in self._generations if g < oldest]
        dropped = sum(len(self._generations[g]) for g in gone)
        for g in gone:
            del self._generations[g]
        return dropped

    def _arrays(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [a for g in self._generations.values() for a in g._arrays()]

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        """A boolean mask: which of ``hashes`` are stored as a first hash."""
        return _lookup(self._arrays(), hashes, None)

    def confirmed(self, hashes: np.ndarray, checks: np.ndarray) -> np.ndarray:
        """A boolean mask: which ids have both hashes stored together (seen before)."""
        found = _lookup(self._arrays(), hashes, checks)
        if self._forgotten:
            for i in np.flatnonzero(found).tolist():
                if (int(hashes[i]), int(checks[i])) in self._forgotten:
                    found[i] = False
        return found


GENERATIONS = 8


@compiled
def _probe(
    array: np.ndarray,
    array_checks: np.ndarray,
    needles: np.ndarray,
    needle_checks: np.ndarray,
    with_checks: bool,
    found: np.ndarray,
) -> None:  # pragma: no cover
    """Mark in ``found`` the ascending ``needles`` that ``array`` (ascending) holds: at the first
    position holding the needle, the check must match too when ``with_checks``."""
    n = array.size
    lo = 0
    for i in range(needles.size):
        x = needles[i]
        if lo >= n:
            return
        if array[lo] < x:  # gallop to a bound, then halve: the first position holding >= x
            step = 1
            while lo + step < n and array[lo + step] < x:
                step *= 2
            left, right = lo + step // 2 + 1, min(lo + step, n)
            while left < right:
                mid = (left + right) // 2
                if array[mid] < x:
                    left = mid + 1
                else:
                    right = mid
            lo = left
        if lo < n and array[lo] == x:
            if not with_checks:
                found[i] = True
            else:  # every entry with this first hash: two ids may share it
                k = lo
                while k < n and array[k] == x:
                    if array_checks[k] == needle_checks[i]:
                        found[i] = True
                        break
                    k += 1


def sort_pairs(keys: np.ndarray, values: np.ndarray, split_from: int | None = None, shift: int = 56) -> None:
    """Sort ``keys`` in place, ``values`` moved with them, with no copy of the arrays.

    Arrays of ``split_from`` keys and more (default :data:`SPLIT_FROM`) are first split in
    place into 256 buckets by the key's byte at ``shift`` (American flag sort, compiled), each
    bucket then sorted on its own: a temporary the size of a bucket, not three the size of the
    arrays as argsort and two gathers take (49M ids: 1.2 GB less at start), and about three
    times faster. A bucket still that large (keys sharing their top bytes) is split again by
    the next byte."""
    split_from = SPLIT_FROM if split_from is None else split_from
    if keys.size < split_from or shift < 0:
        order = np.argsort(keys)  # unstable: twice as fast, and equal keys may go in any order
        keys[:] = keys[order]
        values[:] = values[order]
        return
    bounds = _partition(keys, values, np.uint64(shift))
    for bucket in range(256):
        lo, hi = bounds[bucket], bounds[bucket + 1]
        if hi - lo > 1:
            sort_pairs(keys[lo:hi], values[lo:hi], split_from, shift - 8)


SPLIT_FROM = 1 << 22
"""Arrays from this size (64 MB of keys) are sorted bucket by bucket (:func:`sort_pairs`)."""


@compiled
def _partition(keys: np.ndarray, values: np.ndarray, shift: np.uint64) -> np.ndarray:  # pragma: no cover
    """Reorder both arrays in place by the keys' byte at ``shift``; the 257 bucket bounds."""
    counts = np.zeros(257, dtype=np.int64)
    for i in range(keys.size):
        counts[((keys[i] >> shift) & 0xFF) + 1] += 1
    bounds = np.cumsum(counts)
    cursor = bounds[:256].copy()
    for bucket in range(256):
        end = bounds[bucket + 1]
        while cursor[bucket] < end:
            i = cursor[bucket]
            key, value = keys[i], values[i]
            home = (key >> shift) & 0xFF
            while home != bucket:  # carry it to its bucket, taking up the one there
                j = cursor[home]
                cursor[home] += 1
                keys[j], key = key, keys[j]
                values[j], value = value, values[j]
                home = (key >> shift) & 0xFF
            keys[i], values[i] = key, value
            cursor[bucket] += 1
    return bounds


@compiled
def _merge_two(
    a: np.ndarray, a_checks: np.ndarray, b: np.ndarray, b_checks: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """Merge two sorted arrays (and their checks) into new ones, in one linear pass."""
    n = a.size + b.size
    out, out_checks = np.empty(n, dtype=np.uint64), np.empty(n, dtype=np.uint64)
    i = j = 0
    for k in range(n):
        if j >= b.size or (i < a.size and a[i] <= b[j]):
            out[k], out_checks[k] = a[i], a_checks[i]
            i += 1
        else:
            out[k], out_checks[k] = b[j], b_checks[j]
            j += 1
    return out, out_checks


def _sorted(hashes: np.ndarray, checks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hashes, checks = hashes.astype(np.uint64, copy=False), checks.astype(np.uint64, copy=False)
    order = np.argsort(hashes, kind="stable")
    return hashes[order], checks[order]


def _merge(arrays: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Merge sorted runs into one (timsort finds the runs: linear time)."""
    return _sorted(np.concatenate([a for a, _ in arrays]), np.concatenate([c for _, c in arrays]))


def compile_lookup() -> None:
    """Compile the lookup now (or load it from numba's cache), not in the writer's first commit."""
    seen = SeenIds()
    seen.load(np.zeros(1, dtype=np.uint64), np.zeros(1, dtype=np.uint64))
    seen.confirmed(np.zeros(1, dtype=np.uint64), np.zeros(1, dtype=np.uint64))
    one = np.zeros(1, dtype=np.uint64)
    _partition(one, one.copy(), np.uint64(56))
    _merge_two(one, one, one, one)
