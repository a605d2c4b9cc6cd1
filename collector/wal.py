"""The write-ahead log: every accepted batch is fsynced here before it is acknowledged.

The writer appends one record per group commit (events, dead letters and spans of every request
that waited, as Arrow IPC streams) and fsyncs it; only then are those requests answered. The
loader (:mod:`flowsight.collector.loader`) inserts the records into ClickHouse in order and
releases them; a segment file is deleted once it is sealed and every record in it is loaded.

Layout: a directory of segment files named by a sequence number (``00000000000000000001.wal``).
Each record is a header (payload length, CRC32 of the sequence number and payload, the record's
sequence number) and the payload. A write loops until every byte is on disk and then fsyncs;
any failure (a short write, ``ENOSPC``, a failed fsync) truncates the segment back to where the
record began and is raised before anything is acknowledged, and the next record goes to a new
segment. At start, each segment is read up to its first incomplete or damaged record (a crash
mid-write leaves one only at a tail, and it was never acknowledged) and cut there; the records
before it are handed to the loader again.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from flowsight.collector.dead_letters import DEAD_LETTER_SCHEMA
from flowsight.collector.events import EVENT_SCHEMA
from flowsight.collector.otlp import SPAN_SCHEMA

log = logging.getLogger(__name__)

SUFFIX = ".wal"
_RECORD = struct.Struct("<IIQ")  # payload length, CRC32 of (seq, payload), record sequence number
_SEQ = struct.Struct("<Q")
_TABLES = struct.Struct("<QQQ")  # byte lengths of the three Arrow IPC streams


class WalFull(Exception):
    """The log has no room (its capacity, or its volume); the sender should retry later."""


class WalWriteFailed(Exception):
    """A record could not be written and fsynced; nothing of it was acknowledged."""


@dataclass(frozen=True)
class Batch:
    """What one record holds: accepted events and spans, and dead letters."""

    events: pa.Table
    dead_letters: pa.Table
    spans: pa.Table

    @property
    def rows(self) -> int:
        return int(self.events.num_rows + self.spans.num_rows + self.dead_letters.num_rows)


@dataclass
class _Segment:
    seq: int
    path: Path
    size: int = 0
    records: int = 0  # records appended (or recovered)
    loaded: int = 0  # of which loaded
    sealed: bool = False


@dataclass(frozen=True)
class Record:
    """Where one record lies, and what it holds."""

    seq: int
    segment: int
    offset: int
    length: int
    appended_at: float = field(compare=False)
    """``time.monotonic()`` when it was fsynced (or recovered)."""


def encode(batch: Batch) -> bytes:
    """A batch as three Arrow IPC streams; an empty table takes no bytes (a stream's schema
    alone is a few KB, more than a single event)."""
    streams = [_ipc(batch.events), _ipc(batch.dead_letters), _ipc(batch.spans)]
    return _TABLES.pack(*(len(s) for s in streams)) + b"".join(streams)


def decode(payload: bytes | memoryview) -> Batch:
    lengths = _TABLES.unpack_from(payload, 0)
    start = _TABLES.size
    if start + sum(lengths) != len(payload):
        raise ValueError("length mismatch")
    tables = []
    for length, empty in zip(lengths, _EMPTY, strict=True):
        if length:
            tables.append(pa.ipc.open_stream(pa.py_buffer(payload[start : start + length])).read_all())
        else:
            tables.append(empty)
        start += length
    return Batch(*tables)


_EMPTY = (EVENT_SCHEMA.empty_table(), DEAD_LETTER_SCHEMA.empty_table(), SPAN_SCHEMA.empty_table())


def _ipc(table: pa.Table) -> bytes:
    if not table.num_rows:
        return b""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


class WriteAheadLog:
    """A bounded, segmented log of fsynced records; appended by one thread, released by another."""

    def __init__(self, path: Path, max_bytes: int, segment_bytes: int = 64 << 20):
        self.path = path
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        path.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._segments: dict[int, _Segment] = {}
        self._bytes = 0  # on disk: every segment
        self._unloaded = 0  # of records not yet loaded: what the capacity bounds
        self._next_record = 1
        self._active: _Segment | None = None
        self._fd: int | None = None
        self.fsyncs = 0
        self.fsync_seconds = 0.0

    # -- start ----------------------------------------------------------------------------

    def recover(self) -> Iterator[tuple[Record, Batch]]:
        """The records left by the last run, oldest first; each segment is cut at its first
        incomplete or damaged record. Call once, before the first append."""
        for file in sorted(self.path.glob(f"*{SUFFIX}")):
            segment = _Segment(int(file.stem), file, sealed=True)
            self._segments[segment.seq] = segment
            data = file.read_bytes()
            offset = 0
            while offset < len(data):
                parsed = _parse(data, offset)
                if parsed is None:
                    log.error(
                        "write-ahead log %s: %d bytes from offset %d are an incomplete or damaged "
                        "record (a write the crash interrupted, never acknowledged); cut there",
                        file.name,
                        len(data) - offset,
                        offset,
                    )
                    os.truncate(file, offset)
                    _fsync(file)
                    break
                seq, payload, end = parsed
                record = Record(seq, segment.seq, offset, end - offset, time.monotonic())
                segment.records += 1
                self._unloaded += record.length
                self._next_record = max(self._next_record, seq + 1)
                yield record, decode(payload)
                offset = end
            segment.size = offset
            self._bytes += offset
            if not segment.records:
                self._delete(segment)

    # -- appending (the writer's thread) --------------------------------------------------

    def append(self, batch: Batch) -> Record:
        """Write one record and fsync it.

        Raises:
            WalFull: the log is at capacity, or its volume is full.
            WalWriteFailed: the write or fsync failed otherwise.
        """
        payload = encode(batch)
        with self._lock:
            seq = self._next_record
            header = _RECORD.pack(len(payload), _crc(seq, payload), seq)
            length = len(header) + len(payload)
            if self._unloaded + length > self.max_bytes:
                raise WalFull(
                    f"the write-ahead log holds {self._unloaded} of {self.max_bytes} bytes not yet loaded"
                )
        segment: _Segment | None = None
        offset = 0
        started = time.perf_counter()
        try:
            with self._lock:
                segment = self._writable(length)
            offset = segment.size
            assert self._fd is not None
            _write_all(self._fd, header)
            _write_all(self._fd, payload)
            os.fsync(self._fd)
        except OSError as exc:
            if segment is not None:
                self._abandon(segment, offset)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise WalFull(f"the write-ahead log's volume is full ({exc.strerror})") from exc
            raise WalWriteFailed(f"writing the write-ahead log failed: {exc}") from exc
        self.fsync_seconds += time.perf_counter() - started
        self.fsyncs += 1
        with self._lock:
            self._next_record = seq + 1
            segment.size = offset + length
            segment.records += 1
            self._bytes += length
            self._unloaded += length
        return Record(seq, segment.seq, offset, length, time.monotonic())

    def _writable(self, length: int) -> _Segment:
        """The segment the next record goes to (a new one when the active one is full or gone).
        Called with the lock held."""
        active = self._active
        if active is not None and active.records and active.loaded == active.records:
            self._seal(active)  # wholly loaded: a new segment lets this one go now
            active = None
        if (active is not None and active.size + length <= self.segment_bytes) or (
            active is not None and active.size == 0
        ):
            return active
        if active is not None:
            self._seal(active)
        seq = max(self._segments, default=0) + 1
        segment = _Segment(seq, self.path / f"{seq:020d}{SUFFIX}")
        self._fd = os.open(segment.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        self._segments[seq] = segment
        self._active = segment
        _fsync(self.path)  # the new file's name is durable before any record in it is acknowledged
        return segment

    def _seal(self, segment: _Segment) -> None:
        """Close the active segment; it is deleted once every record in it is loaded."""
        segment.sealed = True
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._active = None
        if segment.loaded == segment.records:
            self._delete(segment)

    def _abandon(self, segment: _Segment, offset: int) -> None:
        """After a failed write: cut the record's bytes off, so nothing follows a partial record,
        and start the next record in a new segment."""
        try:
            if self._fd is not None:
                os.ftruncate(self._fd, offset)
                os.fsync(self._fd)
        except OSError:
            log.exception("cutting a failed record off %s failed; recovery will cut it", segment.path.name)
        with self._lock:
            self._seal(segment)

    # -- releasing (the loader's thread) --------------------------------------------------

    def read(self, record: Record) -> Batch:
        """A record's batch, read back from its segment."""
        with (self.path / f"{record.segment:020d}{SUFFIX}").open("rb") as f:
            f.seek(record.offset)
            data = f.read(record.length)
        parsed = _parse(data, 0)
        if parsed is None or parsed[0] != record.seq:
            raise ValueError(f"record {record.seq} of segment {record.segment} does not read back whole")
        return decode(parsed[1])

    def loaded(self, record: Record) -> None:
        """The record is in ClickHouse; its segment goes once sealed and wholly loaded."""
        with self._lock:
            segment = self._segments.get(record.segment)
            if segment is None:
                return
            segment.loaded += 1
            self._unloaded -= record.length
            if segment.sealed and segment.loaded == segment.records:
                self._delete(segment)

    def _delete(self, segment: _Segment) -> None:
        segment.path.unlink(missing_ok=True)
        _fsync(self.path)
        self._bytes -= segment.size
        del self._segments[segment.seq]

    def close(self) -> None:
        """Seal the active segment (deleted when wholly loaded)."""
        with self._lock:
            if self._active is not None:
                self._seal(self._active)

    # -- state ----------------------------------------------------------------------------

    @property
    def bytes_used(self) -> int:
        return self._bytes

    @property
    def segments(self) -> int:
        return len(self._segments)

    @property
    def unloaded_bytes(self) -> int:
        return self._unloaded

    def is_full(self) -> bool:
        return self._unloaded >= self.max_bytes

    def is_empty(self) -> bool:
        return self._bytes == 0


def _crc(seq: int, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(_SEQ.pack(seq)))


def _parse(data: bytes, offset: int) -> tuple[int, memoryview, int] | None:
    """The record at ``offset``: (sequence number, payload, end); None if incomplete or damaged."""
    if offset + _RECORD.size > len(data):
        return None
    length, crc, seq = _RECORD.unpack_from(data, offset)
    start = offset + _RECORD.size
    end = start + length
    if end > len(data):
        return None
    payload = memoryview(data)[start:end]
    if _crc(seq, payload) != crc:
        return None
    return seq, payload, end


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte: ``os.write`` may write fewer (a filling disk), which is not an error."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, "no byte could be written")
        view = view[written:]


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
