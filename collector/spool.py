"""The local spool: where accepted batches wait, fsynced, while ClickHouse is unreachable.

One file per batch, named by a sequence number so they drain in the order they were written.
A file is written to a temporary name, fsynced, renamed and its directory fsynced, so after a
crash a batch is either wholly in the spool or not at all. Each file carries a CRC32 of its
contents; a file that fails the check is moved aside to ``quarantine/`` with a log line and the
rest still drain.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

log = logging.getLogger(__name__)

_MAGIC = b"FSPOOL2\n"
_HEADER = struct.Struct("<QQQ")  # byte lengths of the three Arrow IPC streams
_TRAILER = struct.Struct("<I")  # CRC32 of everything before it


class SpoolFull(Exception):
    """The spool has no room for the batch; the sender should retry later."""


@dataclass(frozen=True)
class SpooledBatch:
    """One spooled batch: events and spans (before dedup) and dead letters, as written."""

    path: Path
    events: pa.Table
    dead_letters: pa.Table
    spans: pa.Table


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _read_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


CLEAN_STOP = "stopped-cleanly"
"""A file the writer leaves in the spool directory when it stops cleanly."""


class Spool:
    """A bounded directory of batches, drained oldest first."""

    def __init__(self, path: Path, max_bytes: int):
        self.path = path
        self.max_bytes = max_bytes
        self.quarantine = path / "quarantine"
        path.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        for stale in path.glob("*.tmp"):  # a write that crashed before its rename
            stale.unlink()
        files = self._files()
        self._bytes = sum(f.stat().st_size for f in files)
        self._count = len(files)
        self._next = int(files[-1].stem) + 1 if files else 1

    def _files(self) -> list[Path]:
        return sorted(self.path.glob("*.spool"))

    def mark_clean_stop(self) -> None:
        """Record that the writer stopped with every commit whole (see :meth:`take_clean_stop`)."""
        marker = self.path / CLEAN_STOP
        with marker.open("wb") as f:
            os.fsync(f.fileno())
        _fsync_dir(self.path)

    def take_clean_stop(self) -> bool:
        """Whether the last writer stopped cleanly; the record is removed, so a crash of this
        run is not taken for a clean stop at the next start."""
        marker = self.path / CLEAN_STOP
        if not marker.exists():
            return False
        marker.unlink()
        _fsync_dir(self.path)
        return True

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return self._count

    def is_empty(self) -> bool:
        return self._count == 0

    def is_full(self) -> bool:
        return self._bytes >= self.max_bytes

    def append(self, events: pa.Table, dead_letters: pa.Table, spans: pa.Table) -> Path:
        """Write one batch durably.

        Raises:
            SpoolFull: the batch does not fit in ``max_bytes``.
        """
        streams = [_ipc(events), _ipc(dead_letters), _ipc(spans)]
        body = _MAGIC + _HEADER.pack(*(len(s) for s in streams)) + b"".join(streams)
        blob = body + _TRAILER.pack(zlib.crc32(body))
        with self._lock:
            if self._bytes + len(blob) > self.max_bytes:
                raise SpoolFull(f"spool holds {self._bytes} of {self.max_bytes} bytes")
            final = self.path / f"{self._next:020d}.spool"
            self._next += 1
            tmp = final.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, blob)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, final)
            _fsync_dir(self.path)
            self._bytes += len(blob)
            self._count += 1
        return final

    def oldest(self) -> SpooledBatch | None:
        """The oldest readable batch; unreadable files are quarantined on the way."""
        for file in self._files():
            try:
                return self._read(file)
            except (ValueError, OSError, pa.ArrowInvalid) as exc:
                self._quarantine(file, str(exc))
        return None

    def _read(self, file: Path) -> SpooledBatch:
        blob = file.read_bytes()
        if len(blob) < len(_MAGIC) + _HEADER.size + _TRAILER.size or not blob.startswith(_MAGIC):
            raise ValueError("not a spool file (bad header)")
        body, (crc,) = blob[: -_TRAILER.size], _TRAILER.unpack(blob[-_TRAILER.size :])
        if zlib.crc32(body) != crc:
            raise ValueError("checksum mismatch")
        lengths = _HEADER.unpack_from(body, len(_MAGIC))
        start = len(_MAGIC) + _HEADER.size
        if start + sum(lengths) != len(body):
            raise ValueError("length mismatch")
        tables = []
        for length in lengths:
            tables.append(_read_ipc(body[start : start + length]))
            start += length
        return SpooledBatch(file, *tables)

    def remove(self, batch: SpooledBatch) -> None:
        """Forget a batch once it is safely in ClickHouse."""
        with self._lock:
            size = batch.path.stat().st_size
            batch.path.unlink()
            _fsync_dir(self.path)
            self._bytes -= size
            self._count -= 1

    def set_aside(self, batch: SpooledBatch, reason: str) -> None:
        """Move a batch ClickHouse refuses (not for being unreachable) to ``quarantine/``, so
        the batches behind it still drain."""
        self._quarantine(batch.path, reason, "could not be written")

    def _quarantine(self, file: Path, reason: str, what: str = "is corrupt") -> None:
        self.quarantine.mkdir(exist_ok=True)
        target = self.quarantine / file.name
        with self._lock:
            size = file.stat().st_size
            os.rename(file, target)
            _fsync_dir(self.path)
            self._bytes -= size
            self._count -= 1
        log.error("spool file %s %s (%s); moved to %s, the rest still drain", file.name, what, reason, target)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
