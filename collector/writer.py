"""The event writer: one thread that deduplicates and inserts batches, or spools them.

Requests hand their validated batch to :meth:`EventWriter.submit` and wait on the returned
future; the writer merges what is waiting (up to ``batch_rows`` events) into one commit, so many
small requests share a few large inserts. A small batch waits (up to ``linger_seconds``) while
other requests are still arriving (:meth:`EventWriter.arriving`, from the first byte of a
request to its submit), since an insert has a fixed cost (tens of milliseconds, more for spans)
besides its rows; a lone sender's batch is written at once. A future resolves only once its
events are durable: in ClickHouse, or fsynced in the spool while ClickHouse is unreachable.

A commit drops ids repeated within the batch, checks the rest against the in-memory
:class:`~flowsight.collector.seen_ids.SeenIds` filter (verifying in ClickHouse only the rare ids
whose first hash alone is known),
then inserts once into ``events``, whose materialized view feeds the per-order state. At start,
:meth:`EventWriter.repair_state` re-applies the last minutes of events to that state (min/max:
idempotent), covering a crash between the two parts of an insert being written; after a clean
stop (every commit whole, recorded in the spool directory) there is nothing to re-apply.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowsight.collector import dead_letters
from flowsight.collector.events import EVENT_SCHEMA
from flowsight.collector.otlp import SPAN_SCHEMA
from flowsight.collector.schema import ORDER_STATE_MV, SYSTEM_MINUTES_MV
from flowsight.collector.seen_ids import Prints, SeenIds, fingerprints
from flowsight.collector.spool import Spool, SpoolFull
from flowsight.ddl import Schema
from flowsight.store import Store, StoreUnavailable
from flowsight.timefmt import as_utc

log = logging.getLogger(__name__)

LOOKUP_CHUNK = 20_000
INSERT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"))
"""Upper bounds (seconds) of the insert-latency histogram."""
EMPTY_SPANS = SPAN_SCHEMA.empty_table()
INSERT_SETTINGS = {"optimize_on_insert": 0, "max_partitions_per_insert_block": 0}
"""Rows are unique by then (no merge at insert), and a backfill may span any number of
monthly (events) or daily (spans) partitions in one commit."""
REPAIR_WINDOW = timedelta(minutes=10)
REPAIR_SETTINGS = (
    " SETTINGS max_partitions_per_insert_block = 0, max_threads = 1, max_insert_threads = 1,"
    " max_block_size = 65536, min_insert_block_size_rows = 262144, min_insert_block_size_bytes = 67108864"
)
"""The repair streams in small blocks on one thread: its memory stays flat however many events
the window holds (an import can put millions behind one ingest time)."""
REFRESH_OVERLAP = timedelta(seconds=30)
"""How far back a refresh looks before the last seen ingest time (clock skew between collectors)."""


@dataclass
class _Arrival:
    """One request's mark in :meth:`EventWriter.arriving` (changed with the writer's lock held)."""

    writer: EventWriter
    pending: bool = True


_ARRIVAL: ContextVar[_Arrival | None] = ContextVar("flowsight_writer_arrival", default=None)


@dataclass(frozen=True)
class WriteOutcome:
    """What became of one submitted batch."""

    accepted: int
    duplicates: int
    spooled: bool = False
    spans_accepted: int = 0
    spans_duplicates: int = 0


class Backpressure(Exception):
    """Too much is waiting to be written; the sender should retry after a while."""


@dataclass
class _Pending:
    events: pa.Table
    dead_letters: pa.Table
    future: Future[WriteOutcome]
    hashes: Prints
    spans: pa.Table
    span_hashes: Prints

    @property
    def rows(self) -> int:
        return int(self.events.num_rows + self.spans.num_rows)


@dataclass
class WriterStats:
    """Counters the service exposes about its writer."""

    commits: int = 0
    rows_inserted: int = 0
    spans_inserted: int = 0
    duplicates: int = 0
    spooled_batches: int = 0
    drained_batches: int = 0
    store_failures: int = 0
    commit_seconds: float = 0.0
    insert_seconds: float = 0.0
    dedup_seconds: float = 0.0
    dead_letters: int = 0
    insert_buckets: list[int] = field(default_factory=lambda: [0] * len(INSERT_BUCKETS))
    """Commits whose inserts took at most each of :data:`INSERT_BUCKETS` seconds (not cumulative)."""

    def observe_insert(self, seconds: float) -> None:
        self.insert_seconds += seconds
        self.insert_buckets[bisect.bisect_left(INSERT_BUCKETS, seconds)] += 1


class EventWriter:
    """Group-committing, deduplicating writer with a spool fallback."""

    def __init__(
        self,
        store: Store,
        schema: Schema,
        spool: Spool,
        *,
        batch_rows: int = 50_000,
        linger_seconds: float = 0.0,
        max_pending_rows: int = 500_000,
        retry_seconds: float = 1.0,
        refresh_seconds: float | None = None,
    ):
        self.store = store
        self.schema = schema
        self.spool = spool
        self.batch_rows = batch_rows
        self.linger_seconds = linger_seconds
        self._arriving = 0  # requests begun and not yet submitted (see arriving())
        self.max_pending_rows = max_pending_rows
        self.retry_seconds = retry_seconds
        self.stats = WriterStats()
        self._queue: deque[_Pending] = deque()
        self._pending_rows = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._unclean = False  # a commit failed in a way that may have left an insert half-done
        self._down_until = 0.0  # monotonic time before which the store is assumed down
        self._thread: threading.Thread | None = None
        self.seen = SeenIds()
        self.seen_spans = SeenIds()
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
            if not self._thread.is_alive() and not self._unclean:
                # Every commit ended whole: the next start need not re-apply the last events.
                self.spool.mark_clean_stop()

    @property
    def store_reachable(self) -> bool:
        return time.monotonic() >= self._down_until

    def load_seen(self) -> int:
        """Fill the dedup filter from the stored events; returns how many ids it holds."""
        events = self.schema.table("events")
        self.seen.load(*self._stored_prints(events, "event_id"))
        if len(self.seen):
            [(latest,)] = self.store.rows(f"SELECT max(ingested_at) FROM {events}")
            self._watermark = as_utc(latest)
        self.seen_spans.load(
            *self._stored_prints(self.schema.table("otel_traces"), "concat(TraceId, SpanId)")
        )
        log.info(
            "dedup filter holds %d event ids and %d span ids (%d MiB)",
            len(self.seen),
            len(self.seen_spans),
            (self.seen.nbytes + self.seen_spans.nbytes) >> 20,
        )
        return len(self.seen)

    def _stored_prints(self, table: str, key: str) -> Prints:
        """Both hashes of ``key`` for every row of ``table``, streamed block by block into two
        preallocated arrays: the load costs the filter's own size, not the result's buffers."""
        [(expected,)] = self.store.rows(f"SELECT count() FROM {table}")
        hashes, checks = np.empty(expected, np.uint64), np.empty(expected, np.uint64)
        filled = 0
        for rows in self.store.uint64_rows(f"SELECT xxHash64({key}), xxh3({key}) FROM {table}", columns=2):
            end = filled + rows.shape[0]
            if end > hashes.size:  # rows stored by another collector since the count
                size = max(end, 2 * hashes.size)
                hashes, checks = np.resize(hashes, size), np.resize(checks, size)
            hashes[filled:end] = rows[:, 0]
            checks[filled:end] = rows[:, 1]
            filled = end
        return hashes[:filled], checks[:filled]

    def repair_state(self) -> bool:
        """Re-apply the last minutes of events to the tables their views feed (per-order state,
        system minutes; both idempotent), unless the last writer stopped cleanly; True when it did."""
        if self.spool.take_clean_stop():
            log.info("the last stop was clean: no events to re-apply")
            return False
        if self._watermark is None:
            return False
        log.info(
            "re-applying the events stored since %s to the per-order state", self._watermark - REPAIR_WINDOW
        )
        for view in (ORDER_STATE_MV, SYSTEM_MINUTES_MV):
            self.store.command(
                f"INSERT INTO {self.schema.table(view.target)} "
                + view.select.format(source=self.schema.table("events"))
                + " WHERE ingested_at >= {since:DateTime64(3, 'UTC')}"
                + REPAIR_SETTINGS,
                {"since": (self._watermark - REPAIR_WINDOW).replace(tzinfo=None)},
            )
        return True

    def refresh_seen(self) -> None:
        """Add ids other collectors stored since the last look (a shared ClickHouse server)."""
        since = (self._watermark or datetime(1970, 1, 1, tzinfo=UTC)) - REFRESH_OVERLAP
        table = self.store.arrow(
            f"SELECT xxHash64(event_id) AS h, xxh3(event_id) AS c, ingested_at FROM {self.schema.table('events')} "
            "WHERE ingested_at >= {since:DateTime64(3, 'UTC')}",
            {"since": since.replace(tzinfo=None)},
        )
        if table.num_rows:
            self.seen.add(*_columns(table))
            self._watermark = as_utc(pc.max(table.column("ingested_at")).as_py())

    # -- submitting -----------------------------------------------------------------------

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Mark a request on its way (its body being read, decoded, validated): while any are, a
        small waiting batch lingers for them to share its insert. The mark ends at the request's
        first :meth:`submit` (in this context) or when the block exits, whichever is first."""
        arrival = _Arrival(self)
        with self._cond:
            self._arriving += 1
        token = _ARRIVAL.set(arrival)
        try:
            yield
        finally:
            _ARRIVAL.reset(token)
            with self._cond:
                self._arrived(arrival)
                self._cond.notify()

    def _arrived(self, arrival: _Arrival | None) -> None:
        """End a request's mark, once, if it is this writer's. Called with the condition held."""
        if arrival is not None and arrival.writer is self and arrival.pending:
            arrival.pending = False
            self._arriving -= 1

    def submit(
        self,
        events: pa.Table,
        dead: pa.Table | None = None,
        spans: pa.Table | None = None,
        *,
        hashes: Prints | None = None,
    ) -> Future[WriteOutcome]:
        """Queue a validated batch; the future resolves when it is durable.

        The ids are hashed here, on the caller's thread, to keep the writer's share small
        (``hashes``, when the caller hashed them already).

        Raises:
            Backpressure: too many events are already waiting.
            SpoolFull: ClickHouse is unreachable and the spool has no room.
        """
        future: Future[WriteOutcome] = Future()
        spans = spans if spans is not None else EMPTY_SPANS
        rows = events.num_rows + spans.num_rows
        if hashes is None:
            hashes = fingerprints(events.column("event_id"))
        span_hashes = fingerprints(span_keys(spans))
        with self._cond:
            if self._pending_rows + rows > self.max_pending_rows and self._pending_rows:
                raise Backpressure(f"{self._pending_rows} events are waiting to be written")
            if self.spool.is_full() and not self.spool.is_empty():
                raise SpoolFull("the spool is full while ClickHouse is unreachable")
            self._queue.append(
                _Pending(
                    events,
                    dead if dead is not None else dead_letters.EMPTY,
                    future,
                    hashes,
                    spans,
                    span_hashes,
                )
            )
            self._pending_rows += rows
            self._arrived(_ARRIVAL.get())  # this request has arrived
            self._cond.notify()
        return future

    # -- the writer thread ------------------------------------------------------------------

    def _take(self) -> list[_Pending]:
        with self._cond:
            if not self._queue and not self._stopping:
                self._cond.wait(timeout=self.retry_seconds)
            if self._should_linger():
                deadline = time.monotonic() + self.linger_seconds
                while self._should_linger() and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(timeout=left)
            taken: list[_Pending] = []
            rows = 0
            while self._queue and (not taken or rows + self._queue[0].rows <= self.batch_rows):
                item = self._queue.popleft()
                taken.append(item)
                rows += item.rows
            self._pending_rows -= rows
            return taken

    def _should_linger(self) -> bool:
        """Whether to wait for more: a small batch is waiting and other requests are still
        arriving. Called with the condition held."""
        return (
            self.linger_seconds > 0
            and not self._stopping
            and 0 < self._pending_rows < self.batch_rows // 4
            and self._arriving > 0
        )

    def _run(self) -> None:
        while True:
            items = self._take()
            try:
                self._housekeeping()
                if items:
                    self._write(items)
            except Exception as exc:  # never leave a request waiting on a dead thread
                self._unclean = True
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
        # Drain the whole spool before new requests are committed: they keep the order by
        # queueing behind it, so draining one file a pass would let traffic refill it forever.
        while not self.spool.is_empty() and self.store_reachable and not self._stopping:
            if not self._drain_one():
                break

    def _write(self, items: list[_Pending]) -> None:
        events = pa.concat_tables([i.events for i in items])
        dead = pa.concat_tables([i.dead_letters for i in items])
        spans = pa.concat_tables([i.spans for i in items])
        sizes = [i.events.num_rows for i in items]
        span_sizes = [i.spans.num_rows for i in items]
        if self.spool.is_empty() and self.store_reachable:
            try:
                outcomes = self.commit(
                    events,
                    dead,
                    sizes,
                    _concat([i.hashes for i in items]),
                    spans=spans,
                    span_sizes=span_sizes,
                    span_hashes=_concat([i.span_hashes for i in items]),
                )
            except StoreUnavailable as exc:
                self._mark_down(exc)
            except Exception as exc:
                self._unclean = True
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
            self.spool.append(events, dead, spans)
        except SpoolFull as exc:
            for item in items:
                item.future.set_exception(exc)
            return
        self.stats.spooled_batches += 1
        unique_events = _unique_counts(events.column("event_id").to_pylist(), sizes)
        unique_spans = _unique_counts(span_keys(spans).to_pylist(), span_sizes)
        for item, n, m in zip(items, unique_events, unique_spans, strict=True):
            item.future.set_result(
                WriteOutcome(n, item.events.num_rows - n, True, m, item.spans.num_rows - m)
            )

    def _drain_one(self) -> bool:
        """Write the oldest spooled batch; False when there was none or ClickHouse went away."""
        batch = self.spool.oldest()
        if batch is None:
            return False
        try:
            self.commit(
                batch.events,
                batch.dead_letters,
                [batch.events.num_rows],
                spans=batch.spans,
                span_sizes=[batch.spans.num_rows],
            )
        except StoreUnavailable as exc:
            self._mark_down(exc)
            return False
        except Exception as exc:  # refused for good (a schema it no longer fits): not a reason to stop
            self._unclean = True
            log.exception("a spooled batch was refused by ClickHouse")
            self.spool.set_aside(batch, f"{type(exc).__name__}: {str(exc)[:200]}")
            return True
        self.spool.remove(batch)
        self.stats.drained_batches += 1
        log.info("drained spooled batch %s (%d events)", batch.path.name, batch.events.num_rows)
        return True

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until the spool is empty (used at shutdown and by tests); True when it is."""
        deadline = time.monotonic() + timeout
        while not self.spool.is_empty() and time.monotonic() < deadline:
            with self._cond:
                self._cond.notify()
            time.sleep(0.05)
        return self.spool.is_empty()

    def _mark_down(self, exc: Exception) -> None:
        self._unclean = True  # the connection may have dropped between an insert's parts
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

    def stored_spans(self, keys: Sequence[str]) -> set[str]:
        """Which spans (``trace_id + span_id``) are already stored (an exact check for the filter's hits)."""
        found: set[str] = set()
        table = self.schema.table("otel_traces")
        for start in range(0, len(keys), LOOKUP_CHUNK):
            chunk = keys[start : start + LOOKUP_CHUNK]
            rows = self.store.rows(
                f"SELECT DISTINCT concat(TraceId, SpanId) FROM {table} "
                "WHERE TraceId IN {t:Array(String)} AND SpanId IN {s:Array(String)}",
                {"t": sorted({k[:32] for k in chunk}), "s": sorted({k[32:] for k in chunk})},
            )
            found.update(row[0] for row in rows)
        return found

    def commit(
        self,
        events: pa.Table,
        dead: pa.Table,
        sizes: Sequence[int],
        hashes: Prints | None = None,
        *,
        spans: pa.Table | None = None,
        span_sizes: Sequence[int] | None = None,
        span_hashes: Prints | None = None,
    ) -> list[WriteOutcome]:
        """Deduplicate and insert; returns one outcome per slice of ``sizes`` events (and
        ``span_sizes`` spans).

        ``hashes`` (``span_hashes``) are the fingerprints of the event ids (span keys) when the
        caller computed them already.

        Raises:
            StoreUnavailable: ClickHouse cannot be reached; nothing is acknowledged.
        """
        started = time.perf_counter()
        event_ids = events.column("event_id")
        if hashes is None:
            hashes = fingerprints(event_ids)
        keep = self._fresh(event_ids, hashes, self.seen, self._stored_events(events))
        spans = spans if spans is not None else EMPTY_SPANS
        if span_sizes is None:  # all spans belong to the first slice
            span_sizes = [spans.num_rows] + [0] * (len(sizes) - 1)
        keys = span_keys(spans)
        if span_hashes is None:
            span_hashes = fingerprints(keys)
        keep_spans = self._fresh(keys, span_hashes, self.seen_spans, self.stored_spans)
        fresh = events if keep.all() else events.filter(pa.array(keep))
        fresh_spans = spans if keep_spans.all() else spans.filter(pa.array(keep_spans))
        deduped = time.perf_counter()
        if fresh.num_rows:
            # Rows are unique here, so merging them at insert time would be wasted work.
            self.store.insert_arrow(self.schema.table("events"), fresh, settings=INSERT_SETTINGS)
            self.seen.add(hashes[0][keep], hashes[1][keep])
        if fresh_spans.num_rows:
            self.store.insert_arrow(self.schema.table("otel_traces"), fresh_spans, settings=INSERT_SETTINGS)
            self.seen_spans.add(span_hashes[0][keep_spans], span_hashes[1][keep_spans])
        self.store.insert_arrow(self.schema.table("dead_letters"), dead, settings=INSERT_SETTINGS)
        finished = time.perf_counter()
        self.stats.dedup_seconds += deduped - started
        self.stats.observe_insert(finished - deduped)
        self.stats.dead_letters += dead.num_rows
        self.stats.commit_seconds += finished - started
        self.stats.commits += 1
        self.stats.rows_inserted += fresh.num_rows
        self.stats.spans_inserted += fresh_spans.num_rows
        self.stats.duplicates += events.num_rows - fresh.num_rows
        accepted = _per_slice(keep, sizes)
        spans_accepted = _per_slice(keep_spans, span_sizes)
        return [
            WriteOutcome(n, size - n, False, m, span_size - m)
            for n, size, m, span_size in zip(accepted, sizes, spans_accepted, span_sizes, strict=True)
        ]

    def _stored_events(self, events: pa.Table) -> Callable[[Sequence[str]], set[str]]:
        def stored(ids: Sequence[str]) -> set[str]:
            wanted = set(ids)
            rows = [
                (event_id, correlation_id)
                for event_id, correlation_id in zip(
                    events.column("event_id").to_pylist(),
                    events.column("correlation_id").to_pylist(),
                    strict=True,
                )
                if event_id in wanted
            ]
            return self.stored_ids([r[0] for r in rows], [r[1] for r in rows])

        return stored

    @staticmethod
    def _fresh(
        keys: pa.ChunkedArray | pa.Array,
        prints: Prints,
        seen: SeenIds,
        stored: Callable[[Sequence[str]], set[str]],
    ) -> np.ndarray:
        """A mask of the rows to insert: first in the batch, and not stored before."""
        hashes, checks = prints
        keep = first_occurrences(keys, hashes)
        candidates = np.flatnonzero(keep & seen.contains(hashes))
        if candidates.size:  # resends: both hashes stored
            resent = seen.confirmed(hashes[candidates], checks[candidates])
            keep[candidates[resent]] = False
            candidates = candidates[~resent]
        if candidates.size:  # the first hash alone: a collision, or not; ask ClickHouse
            ids = keys.take(pa.array(candidates)).to_pylist()
            found = stored(ids)
            keep[candidates[np.fromiter((i in found for i in ids), dtype=bool, count=len(ids))]] = False
        return keep


def _columns(table: pa.Table) -> Prints:
    """The ``h`` and ``c`` columns of a query's answer as fingerprints."""
    if not table.num_rows:
        return np.empty(0, np.uint64), np.empty(0, np.uint64)
    return table.column("h").to_numpy(), table.column("c").to_numpy()


def _concat(prints: Sequence[Prints]) -> Prints:
    return np.concatenate([p[0] for p in prints]), np.concatenate([p[1] for p in prints])


def _per_slice(mask: np.ndarray, sizes: Sequence[int]) -> list[int]:
    """How many ``True`` in each consecutive slice of ``sizes`` rows."""
    before = np.concatenate([[0], np.cumsum(mask)])
    bounds = np.cumsum([0, *sizes])
    return [int(n) for n in before[bounds[1:]] - before[bounds[:-1]]]


def span_keys(spans: pa.Table) -> pa.ChunkedArray:
    """``trace_id + span_id`` of each span: its identity."""
    if not spans.num_rows:
        return pa.chunked_array([], pa.string())
    return pc.binary_join_element_wise(spans.column("TraceId"), spans.column("SpanId"), "")


def first_occurrences(keys: pa.ChunkedArray | pa.Array, hashes: np.ndarray) -> np.ndarray:
    """A mask of the rows whose key did not occur earlier in the batch.

    Distinct hashes mean distinct ids (the common case, all in NumPy); rows sharing a hash are
    compared by their ids, so a collision never merges two events.
    """
    keep = np.ones(hashes.size, dtype=bool)
    if hashes.size < 2:
        return keep
    order = np.argsort(hashes, kind="stable")
    ordered = hashes[order]
    same = ordered[1:] == ordered[:-1]
    if not same.any():
        return keep
    involved = np.unique(np.concatenate([order[1:][same], order[:-1][same]]))
    ids = keys.take(pa.array(involved)).to_pylist()
    seen: set[str] = set()
    for row, event_id in sorted(zip(involved.tolist(), ids, strict=True)):
        if event_id in seen:
            keep[row] = False
        seen.add(event_id)
    return keep


def _unique_counts(keys: list[str], sizes: Sequence[int]) -> list[int]:
    """Per slice, the keys not repeated earlier in the same merged batch."""
    seen: set[str] = set()
    counts = []
    offset = 0
    for size in sizes:
        unique = 0
        for key in keys[offset : offset + size]:
            if key not in seen:
                seen.add(key)
                unique += 1
        counts.append(unique)
        offset += size
    return counts


__all__ = ["EVENT_SCHEMA", "Backpressure", "EventWriter", "WriteOutcome"]
