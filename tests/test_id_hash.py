"""The compiled id hashes equal ClickHouse's ``xxHash64`` and ``xxh3`` (which fill the dedup filter
at start) and the reference implementation, at every length class of both algorithms."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from flowsight.collector.id_hash import hash_strings
from flowsight.collector.seen_ids import fingerprints
from flowsight.store import Store

LENGTHS = [*range(0, 300), 511, 512, 1023, 1024, 1025, 1088, 2047, 2048, 2049, 4500]
"""Bytes: XXH64's tail and 32-byte stripes; XXH3's 0, 1-3, 4-8, 9-16, 17-128, 129-240 and long
inputs, the latter across its 1,024-byte blocks."""


def texts() -> list[str]:
    rng = random.Random(20261127)
    out = []
    for length in LENGTHS:
        out.append("".join(chr(rng.randrange(32, 127)) for _ in range(length)))
        out.append(
            bytes(rng.randrange(256) for _ in range(length)).decode("latin-1")
        )  # 2 bytes a char above 127
    return out


def reference(values: list[str]) -> tuple[np.ndarray, np.ndarray]:
    encoded = [v.encode() for v in values]
    return (
        np.array([xxhash.xxh64_intdigest(e) for e in encoded], dtype=np.uint64),
        np.array([xxhash.xxh3_64_intdigest(e) for e in encoded], dtype=np.uint64),
    )


def test_the_hashes_equal_the_reference_implementation_at_every_length() -> None:
    values = texts()
    first, second = hash_strings(pa.array(values, pa.string()))
    expected_first, expected_second = reference(values)
    assert [len(v.encode()) for v, a, b in zip(values, first, expected_first, strict=True) if a != b] == []
    assert [len(v.encode()) for v, a, b in zip(values, second, expected_second, strict=True) if a != b] == []


def test_the_hashes_equal_what_clickhouse_computes(engine: Store) -> None:
    values = texts()
    rows = engine.rows(
        "SELECT xxHash64(v), xxh3(v) FROM (SELECT arrayJoin({values:Array(String)}) AS v)", {"values": values}
    )
    first, second = fingerprints(values)
    assert [int(x) for x in first] == [r[0] for r in rows]
    assert [int(x) for x in second] == [r[1] for r in rows]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=80), max_size=20), st.integers(0, 5))
def test_slices_and_chunks_of_arrow_arrays_hash_as_their_strings(values: list[str], cut: int) -> None:
    array = pa.array(values, pa.string())
    sliced = array.slice(min(cut, len(values)))
    chunked = pa.chunked_array([array.slice(0, cut), array.slice(cut)], pa.string())
    expected = reference(values)
    for got, want in ((hash_strings(array), expected), (hash_strings(chunked), expected)):
        assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()
    tail = reference(values[min(cut, len(values)) :])
    got = hash_strings(sliced)
    assert got[0].tolist() == tail[0].tolist() and got[1].tolist() == tail[1].tolist()


def test_compiled_code_is_cached_beside_the_sources_or_in_the_temporary_directory_or_not_at_all(
    tmp_path: Any, monkeypatch: Any
) -> None:
    import numba

    from flowsight.collector import compiled

    monkeypatch.setattr(numba.config, "CACHE_DIR", "", raising=False)
    monkeypatch.setattr(compiled.tempfile, "gettempdir", lambda: str(tmp_path))
    assert compiled.cache_location(tmp_path) is None  # writable sources: numba's own __pycache__
    read_only = tmp_path / "site-packages"
    monkeypatch.setattr(compiled.os, "access", lambda path, mode: Path(path) != read_only)
    assert compiled.cache_location(read_only) == str(tmp_path / "flowsight-numba")
    assert (tmp_path / "flowsight-numba").is_dir()
    monkeypatch.setattr(compiled.os, "access", lambda path, mode: False)
    assert compiled.cache_location(read_only) == ""  # nothing writable: compiled, not cached
