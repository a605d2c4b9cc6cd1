"""The dedup filter answers exactly what a set of (hash, check) pairs would, however its ids are
spread between the base array and the runs added since."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from flowsight.collector.seen_ids import SeenIds, sort_pairs

hashes = st.integers(0, 40)  # few values: repeats, neighbours and gaps are all common
pairs = st.lists(st.tuples(hashes, st.integers(0, 3)), max_size=60)


def arrays(items: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([h for h, _ in items], dtype=np.uint64), np.array([c for _, c in items], dtype=np.uint64)


@settings(max_examples=300, deadline=None)
@given(base=pairs, added=st.lists(pairs, max_size=12), asked=pairs)
def test_lookups_equal_a_set_of_the_stored_pairs(
    base: list[tuple[int, int]], added: list[list[tuple[int, int]]], asked: list[tuple[int, int]]
) -> None:
    seen = SeenIds()
    seen.load(*arrays(base))
    for run in added:
        seen.add(*arrays(run))
    stored = base + [pair for run in added for pair in run]
    by_hash: dict[int, list[int]] = {}
    for h, c in stored:
        by_hash.setdefault(h, []).append(c)
    needles, checks = arrays(asked)
    assert seen.contains(needles).tolist() == [h in by_hash for h, _ in asked]
    confirmed = seen.confirmed(needles, checks).tolist()
    for (h, c), answer in zip(asked, confirmed, strict=True):
        if answer:  # a resend: the pair is stored
            assert c in by_hash.get(h, [])
        elif h in by_hash and len(set(by_hash[h])) == 1:  # one check stored for the hash: exact
            assert c not in by_hash[h]
    assert len(seen) == len(stored)


def pairs_in_key_order(keys: np.ndarray, values: np.ndarray) -> list[tuple[int, int]]:
    return sorted(zip(keys.tolist(), values.tolist(), strict=True))


@settings(max_examples=200, deadline=None)
@given(
    items=st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)), max_size=300),
    shared_top=st.integers(0, 8),
)
def test_sorting_pairs_in_place_keeps_every_pair_and_orders_the_keys(
    items: list[tuple[int, int]], shared_top: int
) -> None:
    """Split in buckets from as few as 4 keys, with keys sharing their top ``shared_top`` bytes
    (a bucket holding all of them, split again by the next byte)."""
    keys, values = arrays(items)
    if shared_top:
        keep = np.uint64((1 << (64 - 8 * shared_top)) - 1) if shared_top < 8 else np.uint64(0)
        keys = (keys & keep) | np.uint64(0xAB << 56)
    expected = pairs_in_key_order(keys, values)
    sort_pairs(keys, values, split_from=4)
    assert np.all(keys[1:] >= keys[:-1])
    assert pairs_in_key_order(keys, values) == expected


def test_large_arrays_are_sorted_by_bucket_and_match_argsort() -> None:
    rng = np.random.default_rng(5)
    keys = rng.integers(0, 2**64, 300_000, dtype=np.uint64, endpoint=False)
    keys[:1000] = keys[1000:2000]  # duplicates across and within buckets
    values = keys ^ np.uint64(0x5555)
    order = np.argsort(keys, kind="stable")
    expected_keys, expected_values = keys[order], values[order]
    sort_pairs(keys, values, split_from=10_000)
    assert np.array_equal(keys, expected_keys)
    assert np.array_equal(values ^ np.uint64(0x5555), keys)
    assert np.array_equal(np.sort(values), np.sort(expected_values))


def test_the_load_sorts_the_given_arrays_in_place_without_a_copy() -> None:
    """The filter's start costs its own size: the arrays loaded become the filter."""
    rng = np.random.default_rng(9)
    hashes = rng.integers(0, 2**64, 50_000, dtype=np.uint64, endpoint=False)
    checks = hashes + np.uint64(1)
    seen = SeenIds()
    seen.load(hashes, checks)
    assert np.shares_memory(seen._base, hashes) and np.shares_memory(seen._base_checks, checks)
    assert np.all(hashes[1:] >= hashes[:-1]) and np.array_equal(checks, hashes + np.uint64(1))
    assert seen.confirmed(hashes[:5], checks[:5]).all()
