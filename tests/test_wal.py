"""The write-ahead log on its own: records round-trip, a write is whole or absent, a damaged tail
is cut at start, capacity and a full volume refuse before anything is acknowledged, and segments
go once sealed and loaded."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from flowsight.collector import dead_letters, wal
from flowsight.collector.events import EventBatch
from flowsight.collector.wal import Batch, WalFull, WalWriteFailed, WriteAheadLog
from flowsight.collector.writer import EMPTY_SPANS
from flowsight.workflows import DEFAULT_WORKFLOWS
from tests.conftest import event


def batch(n: int, start: int = 0) -> Batch:
    events = EventBatch(DEFAULT_WORKFLOWS, "api", 1_795_600_000_000)
    for i in range(start, start + n):
        assert events.add(i, event(i))
    letters = dead_letters.build(1_795_600_000_000, "api", [("x", "system: bad", b"{}")])
    return Batch(events.to_arrow(), letters, EMPTY_SPANS)


def ids(b: Batch) -> list[str]:
    return b.events.column("event_id").to_pylist()  # type: ignore[no-any-return]


def test_records_round_trip_and_recover_in_order(tmp_path: Path) -> None:
    log = WriteAheadLog(tmp_path, 10_000_000)
    written = [batch(3, 0), batch(2, 3), batch(4, 5)]
    records = [log.append(b) for b in written]
    assert [r.seq for r in records] == [1, 2, 3]
    assert ids(log.read(records[1])) == ids(written[1])
    recovered = list(WriteAheadLog(tmp_path, 10_000_000).recover())
    assert [r.seq for r, _ in recovered] == [1, 2, 3]
    assert [ids(b) for _, b in recovered] == [ids(b) for b in written]
    assert recovered[0][1].dead_letters.column("reason").to_pylist() == ["system: bad"]


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(7, id="a record cut within its header is dropped"),
        pytest.param(200, id="a record cut within its payload is dropped"),
        pytest.param(-1, id="a record whose last byte is missing is dropped"),
    ],
)
def test_a_torn_tail_is_cut_at_start_and_the_records_before_it_load(tmp_path: Path, cut: int) -> None:
    log = WriteAheadLog(tmp_path, 10_000_000)
    log.append(batch(2, 0))
    last = log.append(batch(2, 2))
    [segment] = tmp_path.glob("*.wal")
    size = last.offset + (cut if cut > 0 else last.length + cut)
    os.truncate(segment, size)
    again = WriteAheadLog(tmp_path, 10_000_000)
    assert [ids(b) for _, b in again.recover()] == [["evt-0", "evt-1"]]
    assert segment.stat().st_size == last.offset  # the partial record is gone from the file
    assert again.append(batch(1, 9)).seq == 2  # numbering goes on after the last whole record


def test_a_damaged_record_is_not_loaded(tmp_path: Path) -> None:
    log = WriteAheadLog(tmp_path, 10_000_000)
    first = log.append(batch(2, 0))
    log.append(batch(2, 2))
    [segment] = tmp_path.glob("*.wal")
    data = bytearray(segment.read_bytes())
    data[first.length + 40] ^= 0xFF  # a byte of the second record's payload
    segment.write_bytes(bytes(data))
    assert [ids(b) for _, b in WriteAheadLog(tmp_path, 10_000_000).recover()] == [["evt-0", "evt-1"]]


def test_a_short_write_is_written_on_until_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.write
    calls = []

    def a_few_bytes_at_a_time(fd: int, data: Any) -> int:
        calls.append(len(data))
        return real(fd, bytes(data)[:1000])

    monkeypatch.setattr(wal.os, "write", a_few_bytes_at_a_time)
    log = WriteAheadLog(tmp_path, 10_000_000)
    record = log.append(batch(20))
    monkeypatch.undo()
    assert len(calls) > 3
    assert ids(WriteAheadLog(tmp_path, 10_000_000).read(record)) == [f"evt-{i}" for i in range(20)]


def test_a_full_volume_refuses_the_record_and_leaves_no_partial_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = WriteAheadLog(tmp_path, 10_000_000)
    log.append(batch(2, 0))
    real = os.write
    written = [0]

    def fills_up(fd: int, data: Any) -> int:
        if written[0] >= 300:  # the volume is full after 300 more bytes
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real(fd, bytes(data)[: 300 - written[0]])
        written[0] += n
        return n

    monkeypatch.setattr(wal.os, "write", fills_up)
    with pytest.raises(WalFull, match="volume is full"):
        log.append(batch(50, 2))
    monkeypatch.undo()
    assert log.append(batch(1, 60)).seq == 2  # the refused record took no number
    recovered = list(WriteAheadLog(tmp_path, 10_000_000).recover())
    assert [ids(b) for _, b in recovered] == [["evt-0", "evt-1"], ["evt-60"]]


def test_a_failed_fsync_is_an_error_and_the_record_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = WriteAheadLog(tmp_path, 10_000_000)

    def fails(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(wal.os, "fsync", fails)
    with pytest.raises(WalWriteFailed, match="Input/output error"):
        log.append(batch(2))
    monkeypatch.undo()
    assert list(WriteAheadLog(tmp_path, 10_000_000).recover()) == []


def test_capacity_refuses_a_record_that_does_not_fit(tmp_path: Path) -> None:
    one = len(wal.encode(batch(10))) + 16
    log = WriteAheadLog(tmp_path, int(one * 2.5))
    log.append(batch(10, 0))
    log.append(batch(10, 10))
    with pytest.raises(WalFull, match="holds"):
        log.append(batch(10, 20))


def test_a_segment_goes_once_sealed_and_every_record_in_it_is_loaded(tmp_path: Path) -> None:
    one = len(wal.encode(batch(10))) + 16
    log = WriteAheadLog(tmp_path, 10_000_000, segment_bytes=one * 2 + 100)
    records = [log.append(batch(10, 10 * i)) for i in range(5)]
    assert [r.segment for r in records] == [1, 1, 2, 2, 3]
    assert log.segments == 3
    log.loaded(records[0])
    assert log.segments == 3  # one record of segment 1 is still waiting
    log.loaded(records[1])
    assert sorted(p.name for p in tmp_path.glob("*.wal")) == [f"{n:020d}.wal" for n in (2, 3)]
    for record in records[2:]:
        log.loaded(record)
    assert log.segments == 1  # the active segment stays until it is sealed
    log.close()
    assert list(tmp_path.glob("*.wal")) == [] and log.bytes_used == 0


def test_a_record_larger_than_a_segment_gets_a_segment_of_its_own(tmp_path: Path) -> None:
    log = WriteAheadLog(tmp_path, 10_000_000, segment_bytes=100)
    a, b = log.append(batch(30)), log.append(batch(30, 30))
    assert (a.segment, b.segment) == (1, 2)
    assert [ids(x) for _, x in WriteAheadLog(tmp_path, 10_000_000).recover()] == [
        ids(batch(30)),
        ids(batch(30, 30)),
    ]


def test_empty_tables_round_trip(tmp_path: Path) -> None:
    empty = Batch(batch(0).events, dead_letters.EMPTY, EMPTY_SPANS)
    log = WriteAheadLog(tmp_path, 10_000_000)
    record = log.append(empty)
    read = log.read(record)
    assert (read.events.num_rows, read.spans.num_rows, read.dead_letters.num_rows) == (0, 0, 0)
    assert read.spans.schema == EMPTY_SPANS.schema and isinstance(read.events, pa.Table)
