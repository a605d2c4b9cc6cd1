"""The event writer: one thread that deduplicates and inserts batches, or spools them.

Requests hand their validated batch to :meth:`EventWriter.submit` and wait on the returned
future; the writer merges what is waiting (up to ``batch_rows`` events) into one commit, so many
small requests share a few large inserts. A future resolves only once its events are durable:
in ClickHouse, or fsynced in the spool while ClickHouse is unreachable.

A commit drops ids repeated within the batch, checks the rest against the in-memory
:class:`~flowsight.collector.seen_ids.SeenIds` filter (verifying its rare hits in ClickHouse),
then inserts into ``events_in`` (per-order state: min/max, idempotent) and then ``events``. If
the process dies between the two inserts, a resend finds nothing in ``events`` and writes both
again, which the min/max state absorbs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowsight.collector import dead_letters
from flowsight.collector.events import EVENT_SCHEMA
from flowsight.collector.seen_ids import SeenIds, hash_ids
from flowsight.collector.spool import Spool, SpoolFull
from flowsight.ddl import Schema
from flowsight.store import Store, StoreUnavailable

log = logging.getLogger(__name__)

LOOKUP_CHUNK = 20_000
REFRESH_OVERLAP = timedelta(seconds=30)
"""How far back a refresh looks before the last seen ingest time (clock skew between collectors)."""


@dataclass(frozen=True)
class WriteOutcome:
    """What became of one submitted batch."""

    accepted: int
    duplicates: int
    spooled: bool = False


class Backpressure(Exception):
    """Too much is waiting to be written; the sender should retry after a while."""


@dataclass
class _Pending:
    events: pa.Table
    dead_letters: pa.Table
    future: Future[WriteOutcome]


@dataclass
class WriterStats:
    """Counters the service exposes about its writer."""

    commits: int = 0
    rows_inserted: int = 0
    duplicates: int = 0
    spooled_batches: int = 0
    drained_batches: int = 0
    store_failures: int = 0


class EventWriter:
    """Group-committing, deduplicating writer with a spool fallback."""

    def __init__(
        self,
        store: Store,
        schema: Schema,
        spool: Spool,
        *,
        batch_rows: int = 50_000,
        max_pending_rows: int = 500_000,
        retry_seconds: float = 1.0,
        refresh_seconds: float | None = None,
    ):
        self.store = store
        self.schema = schema
        self.spool = spool
        self.batch_rows = batch_rows
        self.max_pending_rows = max_pending_rows
        self.retry_seconds = retry_seconds
        self.stats = WriterStats()
        self._queue: deque[_Pending] = deque()
        self._pending_rows = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._down_until = 0.0  # monotonic time before which the store is assumed down
        self._thread: threading.Thread | None = None
        self.seen = SeenIds()
        self._watermark: datetime | None = None
        self.refresh_seconds = refresh_seconds
        self._next_refresh = 0.0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="flowsight-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is waiting, then stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def store_reachable(self) -> bool:
        return time.monotonic() >= self._down_until

    def load_seen(self) -> int:
        """Fill the dedup filter from the stored events; returns how many ids it holds."""
        events = self.schema.table("events")
        table = self.store.arrow(f"SELECT xxHash64(event_id) AS h, ingested_at FROM {events}")
        hashes = table.column("h").to_numpy() if table.num_rows else np.empty(0, np.uint64)
        self.seen.load(hashes)
        if table.num_rows:
            self._watermark = pc.max(table.column("ingested_at")).as_py()
        log.info("dedup filter holds %d event ids (%d MiB)", len(self.seen), self.seen.nbytes >> 20)
        return len(self.seen)

    def refresh_seen(self) -> None:
        """Add ids other collectors stored since the last look (a shared ClickHouse server)."""
        since = (self._watermark or datetime(1970, 1, 1, tzinfo=UTC)) - REFRESH_OVERLAP
        table = self.store.arrow(
            f"SELECT xxHash64(event_id) AS h, ingested_at FROM {self.schema.table('events')} "
            "WHERE ingested_at >= {since:DateTime64(3)}",
            {"since": since.replace(tzinfo=None)},
        )
        if table.num_rows:
            self.seen.add(table.column("h").to_numpy())
            self._watermark = pc.max(table.column("ingested_at")).as_py()

    # -- submitting -----------------------------------------------------------------------

    def submit(self, events: pa.Table, dead: pa.Table | None = None) -> Future[WriteOutcome]:
        """Queue a validated batch; the future resolves when it is durable.

        Raises:
            Backpressure: too many events are already waiting.
            SpoolFull: ClickHouse is unreachable and the spool has no room.
        """
        future: Future[WriteOutcome] = Future()
        rows = events.num_rows
        with self._cond:
            if self._pending_rows + rows > self.max_pending_rows and self._pending_rows:
                raise Backpressure(f"{self._pending_rows} events are waiting to be written")
            if self.spool.is_full() and not self.spool.is_empty():
                raise SpoolFull("the spool is full while ClickHouse is unreachable")
            self._queue.append(_Pending(events, dead if dead is not None else dead_letters.EMPTY, future))
            self._pending_rows += rows
            self._cond.notify()
        return future

    # -- the writer thread ------------------------------------------------------------------

    def _take(self) -> list[_Pending]:
        with self._cond:
            if not self._queue and not self._stopping:
                self._cond.wait(timeout=self.retry_seconds)
            taken: list[_Pending] = []
            rows = 0
            while self._queue and (not taken or rows + self._queue[0].events.num_rows <= self.batch_rows):
                item = self._queue.popleft()
                taken.append(item)
                rows += item.events.num_rows
            self._pending_rows -= rows
            return taken

    def _run(self) -> None:
        while True:
            items = self._take()
            try:
                self._housekeeping()
                if items:
                    self._write(items)
            except Exception as exc:  # never leave a request waiting on a dead thread
                log.exception("the writer failed a batch")
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(exc)
            with self._cond:
                if self._stopping and not self._queue:
                    return

    def _housekeeping(self) -> None:
        """Between commits: learn other collectors' ids, drain one spooled batch."""
        if self.refresh_seconds and time.monotonic() >= self._next_refresh and self.store_reachable:
            self._next_refresh = time.monotonic() + self.refresh_seconds
            try:
                self.refresh_seen()
            except StoreUnavailable as exc:
                self._mark_down(exc)
        if not self.spool.is_empty() and self.store_reachable:
            self._drain_one()

    def _write(self, items: list[_Pending]) -> None:
        events = pa.concat_tables([i.events for i in items])
        dead = pa.concat_tables([i.dead_letters for i in items])
        sizes = [i.events.num_rows for i in items]
        if self.spool.is_empty() and self.store_reachable:
            try:
                outcomes = self.commit(events, dead, sizes)
            except StoreUnavailable as exc:
                self._mark_down(exc)
            except Exception as exc:
                log.exception("writing a batch failed")
                for item in items:
                    item.future.set_exception(exc)
                return
            else:
                for item, outcome in zip(items, outcomes, strict=True):
                    item.future.set_result(outcome)
                return
        # ClickHouse is unreachable, or older batches wait in the spool: keep the order.
        try:
            self.spool.append(events, dead)
        except SpoolFull as exc:
            for item in items:
                item.future.set_exception(exc)
            return
        self.stats.spooled_batches += 1
        for item, unique in zip(items, _unique_counts(events, sizes), strict=True):
            item.future.set_result(WriteOutcome(unique, item.events.num_rows - unique, spooled=True))

    def _drain_one(self) -> None:
        batch = self.spool.oldest()
        if batch is None:
            return
        try:
            self.commit(batch.events, batch.dead_letters, [batch.events.num_rows])
        except StoreUnavailable as exc:
            self._mark_down(exc)
            return
        self.spool.remove(batch)
        self.stats.drained_batches += 1
        log.info("drained spooled batch %s (%d events)", batch.path.name, batch.events.num_rows)

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until the spool is empty (used at shutdown and by tests); True when it is."""
        deadline = time.monotonic() + timeout
        while not self.spool.is_empty() and time.monotonic() < deadline:
            with self._cond:
                self._cond.notify()
            time.sleep(0.05)
        return self.spool.is_empty()

    def _mark_down(self, exc: Exception) -> None:
        self.stats.store_failures += 1
        self._down_until = time.monotonic() + self.retry_seconds
        log.warning("ClickHouse unreachable (%s); spooling until it is back", exc)

    # -- the commit -----------------------------------------------------------------------

    def stored_ids(self, event_ids: Sequence[str], correlation_ids: Sequence[str]) -> set[str]:
        """Which of these events are already stored (an exact check for the filter's hits)."""
        events = self.schema.table("events")
        found: set[str] = set()
        for start in range(0, len(event_ids), LOOKUP_CHUNK):
            ids = list(event_ids[start : start + LOOKUP_CHUNK])
            rows = self.store.rows(
                f"SELECT DISTINCT event_id FROM {events} "
                "WHERE correlation_id IN {cs:Array(String)} AND event_id IN {ids:Array(String)}",
                {"cs": sorted(set(correlation_ids[start : start + LOOKUP_CHUNK])), "ids": ids},
            )
            found.update(row[0] for row in rows)
        rest = [i for i in event_ids if i not in found]
        if rest:  # a collision, or an id reused under another correlation ID: look by id alone
            for start in range(0, len(rest), LOOKUP_CHUNK):
                rows = self.store.rows(
                    f"SELECT DISTINCT event_id FROM {events} WHERE event_id IN {{ids:Array(String)}}",
                    {"ids": rest[start : start + LOOKUP_CHUNK]},
                )
                found.update(row[0] for row in rows)
        return found

    def commit(self, events: pa.Table, dead: pa.Table, sizes: Sequence[int]) -> list[WriteOutcome]:
        """Deduplicate and insert; returns one outcome per slice of ``sizes`` rows.

        Raises:
            StoreUnavailable: ClickHouse cannot be reached; nothing is acknowledged.
        """
        ids: list[str] = events.column("event_id").to_pylist()
        first: dict[str, int] = {}
        for index, event_id in enumerate(ids):
            first.setdefault(event_id, index)
        unique_index = np.fromiter(first.values(), dtype=np.int64, count=len(first))
        hashes = hash_ids(list(first))
        hits = self.seen.contains(hashes)
        stored: set[str] = set()
        if hits.any():
            hit_index = unique_index[hits]
            correlations = events.column("correlation_id").take(pa.array(hit_index)).to_pylist()
            stored = self.stored_ids([ids[i] for i in hit_index], correlations)
        keep = np.zeros(len(ids), dtype=bool)
        fresh_mask = np.array([event_id not in stored for event_id in first], dtype=bool) if stored else None
        keep[unique_index if fresh_mask is None else unique_index[fresh_mask]] = True
        fresh = events if len(first) == len(ids) and not stored else events.filter(pa.array(keep))
        if fresh.num_rows:
            self.store.insert_arrow(self.schema.table("events_in"), fresh)
            self.store.insert_arrow(self.schema.table("events"), fresh)
            self.seen.add(hashes if fresh_mask is None else hashes[fresh_mask])
        self.store.insert_arrow(self.schema.table("dead_letters"), dead)
        self.stats.commits += 1
        self.stats.rows_inserted += fresh.num_rows
        self.stats.duplicates += len(ids) - fresh.num_rows
        outcomes = []
        offset = 0
        for size in sizes:
            accepted = int(keep[offset : offset + size].sum())
            outcomes.append(WriteOutcome(accepted, size - accepted))
            offset += size
        return outcomes


def _unique_counts(events: pa.Table, sizes: Sequence[int]) -> list[int]:
    """Per slice, the events not repeated earlier in the same merged batch."""
    seen: set[str] = set()
    counts = []
    ids = events.column("event_id").to_pylist()
    offset = 0
    for size in sizes:
        unique = 0
        for event_id in ids[offset : offset + size]:
            if event_id not in seen:
                seen.add(event_id)
                unique += 1
        counts.append(unique)
        offset += size
    return counts


__all__ = ["EVENT_SCHEMA", "Backpressure", "EventWriter", "WriteOutcome"]
