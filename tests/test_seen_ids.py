"""The dedup filter answers exactly what a set of (hash, check) pairs would, however its ids are
spread between the base array and the runs added since."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from flowsight.collector.seen_ids import SeenIds

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
