"""Large results stream from ClickHouse in fixed-width rows: whole rows in every block, however
the bytes arrive, the values as the engine computed them."""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np
import pytest

from flowsight.collector.seen_ids import hash_ids
from flowsight.store import Store, StoreUnavailable


def test_rows_stream_in_blocks_with_the_engines_values(engine: Store) -> None:
    blocks = list(
        engine.uint64_rows(
            "SELECT number, xxHash64(toString(number)), number * 3 FROM numbers(100000)",
            columns=3,
            block_bytes=240_000,
        )
    )
    assert len(blocks) >= 10 and all(block.shape[1] == 3 and block.shape[0] <= 10_000 for block in blocks)
    rows = np.concatenate(blocks)
    numbers = np.arange(100_000, dtype=np.uint64)
    assert np.array_equal(rows[:, 0], numbers)
    assert np.array_equal(rows[:, 1], hash_ids([str(n) for n in range(100_000)]))
    assert np.array_equal(rows[:, 2], numbers * np.uint64(3))


class Trickle(io.RawIOBase):
    """A stream that returns at most ``most`` bytes a read, as a network response may."""

    def __init__(self, data: bytes, most: int):
        super().__init__()
        self.data, self.most = data, most

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        piece, self.data = (
            self.data[: min(self.most, size or self.most)],
            self.data[min(self.most, size or self.most) :],
        )
        return piece


class Client:
    def __init__(self, data: bytes, most: int):
        self.data, self.most = data, most

    def raw_stream(self, sql: str, parameters: Any = None, fmt: str | None = None) -> Trickle:
        assert fmt == "RowBinary"
        return Trickle(self.data, self.most)


def test_rows_split_across_reads_are_put_back_together() -> None:
    values = [(n, n * 7 + 1) for n in range(1000)]
    data = b"".join(struct.pack("<QQ", a, b) for a, b in values)
    store = Store(Client(data, most=7), "db", embedded=False)  # type: ignore[arg-type]
    rows = np.concatenate(list(store.uint64_rows("SELECT", columns=2, block_bytes=100)))
    assert rows.tolist() == [list(pair) for pair in values]


def test_a_result_ending_within_a_row_is_an_error() -> None:
    data = struct.pack("<QQ", 1, 2) + b"\x01\x02\x03"
    store = Store(Client(data, most=64), "db", embedded=False)  # type: ignore[arg-type]
    with pytest.raises(StoreUnavailable, match="ended within a row"):
        list(store.uint64_rows("SELECT", columns=2))
