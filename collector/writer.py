"""The event writer: one thread that deduplicates batches and commits them to the write-ahead log.

Requests hand their validated batch to :meth:`EventWriter.submit` and wait on the returned
future. The writer takes everything waiting (up to ``batch_rows`` rows) as one group commit:
it drops ids repeated within the group or seen before (the :class:`~.seen_ids.IdWindow` filter
holds every id stored or logged within the dedup window, so the answer is exact whether the
first copy is in ClickHouse or still in the log), appends the rest as one record to the
:class:`~.wal.WriteAheadLog`, fsynced, and only then resolves the futures. While it fsyncs,
the next requests queue up and share the next record, so a sender of one event per request
waits for about one fsync, not for an insert. The record goes on to the
:class:`~.loader.Loader`, which inserts it into ClickHouse.

There is one path whether ClickHouse is up or not: while it is down the log grows, and when the
log is full (its capacity or its volume) senders get 503 with ``Retry-After``.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowsight.collector import dead_letters
from flowsight.collector.events import EVENT_SCHEMA, EventBatch, batches_to_arrow
from flowsight.collector.loader import Loader
from flowsight.collector.otlp import SPAN_SCHEMA, span_keys
from flowsight.collector.seen_ids import IdWindow, Prints, fingerprints
from flowsight.collector.wal import Batch, WalFull, WalWriteFailed, WriteAheadLog
from flowsight.ddl import Schema
from flowsight.store import Store
from flowsight.timefmt import to_ms

log = logging.getLogger(__name__)

FSYNC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, float("inf"))
"""Upper bounds (seconds) of the commit-latency histogram (append and fsync)."""
EMPTY_SPANS = SPAN_SCHEMA.empty_table()
REFRESH_OVERLAP_MS = 30_000
"""How far back a refresh looks before the newest load time it saw (inserts that were under way)."""


@dataclass(frozen=True)
class WriteOutcome:
    """What became of one submitted batch."""

    accepted: int
    duplicates: int
    spans_accepted: int = 0
    spans_duplicates: int = 0


class Backpressure(Exception):
    """Too much is waiting to be written; the sender should retry after a while."""


@dataclass
class _Pending:
    events: pa.Table | EventBatch
    """Validated events: Arrow columns, or a small request's rows (made Arrow with the rest of
    its group commit, in the writer's thread)."""
    dead_letters: pa.Table
    future: Future[WriteOutcome]
    hashes: Prints | None
    spans: pa.Table
    span_hashes: Prints | None

    @property
    def event_rows(self) -> int:
        return self.events.num_rows if isinstance(self.events, pa.Table) else len(self.events)

    @property
    def rows(self) -> int:
        return int(self.event_rows + self.spans.num_rows)


@dataclass
class WriterStats:
    """Counters the service exposes about its writer."""

    commits: int = 0
    events_logged: int = 0
    spans_logged: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    refused: int = 0
    commit_seconds: float = 0.0
    dedup_seconds: float = 0.0
    commit_buckets: list[int] = field(default_factory=lambda: [0] * len(FSYNC_BUCKETS))
    """Commits whose append and fsync took at most each of :data:`FSYNC_BUCKETS` seconds."""

    def observe_commit(self, seconds: float) -> None:
        self.commit_seconds += seconds
        self.commit_buckets[bisect.bisect_left(FSYNC_BUCKETS, seconds)] += 1


class EventWriter:
    """Group-committing, deduplicating writer in front of the write-ahead log."""

    def __init__(
        self,
        store: Store,
        schema: Schema,
        wal: WriteAheadLog,
        loader: Loader,
        clock: Callable[[], datetime],
        *,
        dedup_window_ms: int = 7 * 86_400_000,
        batch_rows: int = 50_000,
        max_pending_rows: int = 500_000,
    ):
        self.store = store
        self.schema = schema
        self.wal = wal
        self.loader = loader
        self.clock = clock
        self.batch_rows = batch_rows
        self.max_pending_rows = max_pending_rows
        self.stats = WriterStats()
        self._queue: deque[_Pending] = deque()
        self._pending_rows = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        # The filters are the writer thread's, but for other collectors' ids (the loader's thread).
        self._seen_lock = threading.Lock()
        self.seen = IdWindow(dedup_window_ms)
        self.seen_spans = IdWindow(dedup_window_ms)
        self._refreshed_to_ms: int | None = None
        loader.on_refused = self.forget

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="flowsight-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Commit what is waiting, then stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _now_ms(self) -> int:
        return to_ms(self.clock())

    def load_seen(self) -> int:
        """Fill the dedup filters with the ids stored within the window (events by ingest time,
        spans by start time); returns how many event ids they hold."""
        now = self._now_ms()
        self._load_window(
            self.seen, self.schema.table("events"), "event_id", "toUnixTimestamp64Milli(ingested_at)", now
        )
        self._load_window(
            self.seen_spans,
            self.schema.table("otel_traces"),
            "concat(TraceId, SpanId)",
            "intDiv(toUnixTimestamp64Nano(Timestamp), 1000000)",
            now,
        )
        [(latest,)] = self.store.rows(
            f"SELECT toUnixTimestamp64Milli(max(loaded_at)) FROM {self.schema.table('events')}"
        )
        self._refreshed_to_ms = int(latest)
        log.info(
            "dedup filter holds %d event ids and %d span ids (%d MiB) of the last %s",
            len(self.seen),
            len(self.seen_spans),
            (self.seen.nbytes + self.seen_spans.nbytes) >> 20,
            f"{self.seen.window_ms / 3_600_000:g} h",
        )
        return len(self.seen)

    def _load_window(self, window: IdWindow, table: str, key: str, time_ms: str, now_ms: int) -> None:
        """Stream both hashes of ``key`` for the rows of ``table`` within the window straight
        into one preallocated pair of arrays per generation: the load costs the filter's own
        size, not the result's buffers."""
        params = {"since": now_ms - window.window_ms, "span": window.span_ms}
        where = f"FROM {table} WHERE {time_ms} >= {{since:Int64}}"
        generation = f"intDiv({time_ms}, {{span:Int64}})"
        sizes = {
            int(g): int(n)
            for g, n in self.store.rows(f"SELECT {generation} AS g, count() {where} GROUP BY g", params)
        }
        arrays = {int(g): (np.empty(n, np.uint64), np.empty(n, np.uint64)) for g, n in sizes.items()}
        filled = dict.fromkeys(arrays, 0)
        sql = f"SELECT xxHash64({key}), xxh3({key}), toUInt64({generation}) {where}"
        for rows in self.store.uint64_rows(sql, columns=3, parameters=params):
            gens = rows[:, 2]
            for g in np.unique(gens).tolist():
                chosen = rows[gens == g]
                hashes, checks = arrays.setdefault(g, (np.empty(0, np.uint64), np.empty(0, np.uint64)))
                start, end = filled.get(g, 0), filled.get(g, 0) + chosen.shape[0]
                if end > hashes.size:  # rows stored by another collector since the count
                    hashes, checks = np.resize(hashes, 2 * end), np.resize(checks, 2 * end)
                    arrays[g] = hashes, checks
                hashes[start:end] = chosen[:, 0]
                checks[start:end] = chosen[:, 1]
                filled[g] = end
        for g, (hashes, checks) in arrays.items():
            window.load(g, hashes[: filled.get(g, 0)], checks[: filled.get(g, 0)])

    def recover(self) -> int:
        """Hand the log's records left by the last run to the loader (to be verified against
        ClickHouse before they are inserted) and count their ids as seen; returns how many."""
        count = 0
        now = self._now_ms()
        for record, batch in self.wal.recover():
            self.seen.add(*fingerprints(batch.events.column("event_id")), now)
            self.seen_spans.add(*fingerprints(span_keys(batch.spans)), now)
            self.loader.add(record, batch, correlations_of(batch.events, batch.spans), verify=True)
            count += 1
        if count:
            log.info("the write-ahead log holds %d records not known to be loaded; loading them again", count)
        return count

    def refresh_seen(self) -> None:
        """Learn the ids other collectors loaded since the last look (a shared ClickHouse
        server), by the database's own load time: an event loaded late after an outage is
        learnt when it is loaded, whatever its ingest time."""
        since = (self._refreshed_to_ms or 0) - REFRESH_OVERLAP_MS
        table = self.store.arrow(
            f"SELECT xxHash64(event_id) AS h, xxh3(event_id) AS c, "
            f"toUnixTimestamp64Milli(ingested_at) AS at, toUnixTimestamp64Milli(loaded_at) AS loaded "
            f"FROM {self.schema.table('events')} "
            "WHERE loaded_at >= fromUnixTimestamp64Milli({since:Int64}, 'UTC')",
            {"since": since},
        )
        if not table.num_rows:
            return
        hashes, checks = table.column("h").to_numpy(), table.column("c").to_numpy()
        at = table.column("at").to_numpy()
        with self._seen_lock:
            known = self.seen.confirmed(hashes, checks)
            for g in np.unique(at[~known] // self.seen.span_ms).tolist():
                chosen = ~known & (at // self.seen.span_ms == g)
                self.seen.add(hashes[chosen], checks[chosen], int(g) * self.seen.span_ms)
        self._refreshed_to_ms = int(table.column("loaded").to_numpy().max())

    def forget(self, table: str, rows: pa.Table) -> None:
        """Forget the ids of rows ClickHouse refused: they are dead letters now, and replaying
        them must store them, not count them as duplicates of themselves."""
        keys = rows.column("event_id") if table == "events" else span_keys(rows)
        with self._seen_lock:
            (self.seen if table == "events" else self.seen_spans).forget(*fingerprints(keys))

    # -- submitting -----------------------------------------------------------------------

    def submit(
        self,
        events: pa.Table | EventBatch,
        dead: pa.Table | None = None,
        spans: pa.Table | None = None,
        *,
        hashes: Prints | None = None,
        span_hashes: Prints | None = None,
    ) -> Future[WriteOutcome]:
        """Queue a validated batch; the future resolves once it is fsynced in the log.

        ``hashes`` (``span_hashes``): the ids' fingerprints, when the caller computed them off
        the event loop already; otherwise the writer computes them, once for its whole group.

        Raises:
            Backpressure: too many events are already waiting.
            WalFull: the write-ahead log has no room (the future raises it too, when the log
                fills while the batch waits).
        """
        future: Future[WriteOutcome] = Future()
        item = _Pending(
            events,
            dead if dead is not None else dead_letters.EMPTY,
            future,
            hashes,
            spans if spans is not None else EMPTY_SPANS,
            span_hashes,
        )
        rows = item.rows
        with self._cond:
            if self._pending_rows + rows > self.max_pending_rows and self._pending_rows:
                raise Backpressure(f"{self._pending_rows} events are waiting to be written")
            if self.wal.is_full():
                self.stats.refused += 1
                raise WalFull("the write-ahead log is full while ClickHouse catches up")
            self._queue.append(item)
            self._pending_rows += rows
            self._cond.notify()
        return future

    # -- the writer thread ----------------------------------------------------------------

    def _take(self) -> list[_Pending]:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            taken: list[_Pending] = []
            rows = 0
            while self._queue and (not taken or rows + self._queue[0].rows <= self.batch_rows):
                item = self._queue.popleft()
                taken.append(item)
                rows += item.rows
            self._pending_rows -= rows
            return taken

    def _run(self) -> None:
        while True:
            items = self._take()
            if items:
                try:
                    outcomes = self.commit(items)
                except (WalFull, WalWriteFailed) as exc:
                    self.stats.refused += len(items)  # each answered 503
                    for item in items:
                        item.future.set_exception(exc)
                except Exception as exc:  # never leave a request waiting on a dead thread
                    log.exception("the writer failed a batch")
                    for item in items:
                        if not item.future.done():
                            item.future.set_exception(exc)
                else:
                    for item, outcome in zip(items, outcomes, strict=True):
                        item.future.set_result(outcome)
            with self._cond:
                if self._stopping and not self._queue:
                    return

    def commit(self, items: Sequence[_Pending]) -> list[WriteOutcome]:
        """Deduplicate the items' rows and append what is new as one fsynced record; returns
        one outcome per item.

        Raises:
            WalFull, WalWriteFailed: nothing was logged; nothing may be acknowledged.
        """
        started = time.perf_counter()
        events, hashes = _merged_events(items)
        spans = pa.concat_tables([i.spans for i in items])
        span_hashes = _concat([_span_prints(i) for i in items])
        now = self._now_ms()
        with self._seen_lock:
            self.seen.expire(now)
            self.seen_spans.expire(now)
            keep = fresh(events.column("event_id"), hashes, self.seen)
            keep_spans = fresh(span_keys(spans), span_hashes, self.seen_spans)
        new_events = events if keep.all() else events.filter(pa.array(keep))
        new_spans = spans if keep_spans.all() else spans.filter(pa.array(keep_spans))
        batch = Batch(new_events, pa.concat_tables([i.dead_letters for i in items]), new_spans)
        deduped = time.perf_counter()
        self.stats.dedup_seconds += deduped - started
        if batch.rows:
            record = self.wal.append(batch)
            with self._seen_lock:
                self.seen.add(hashes[0][keep], hashes[1][keep], now)
                self.seen_spans.add(span_hashes[0][keep_spans], span_hashes[1][keep_spans], now)
            self.loader.add(record, batch, correlations_of(new_events, new_spans))
            self.stats.observe_commit(time.perf_counter() - deduped)
        stats = self.stats
        stats.commits += 1
        stats.events_logged += new_events.num_rows
        stats.spans_logged += new_spans.num_rows
        stats.duplicates += events.num_rows - new_events.num_rows
        stats.dead_letters += batch.dead_letters.num_rows
        accepted = _per_slice(keep, [i.event_rows for i in items])
        spans_accepted = _per_slice(keep_spans, [i.spans.num_rows for i in items])
        return [
            WriteOutcome(n, i.event_rows - n, m, i.spans.num_rows - m)
            for i, n, m in zip(items, accepted, spans_accepted, strict=True)
        ]

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is queued and the loader has loaded everything (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                queued = bool(self._queue)
            if not queued:
                try:
                    self.loader.wait_all(max(0.0, deadline - time.monotonic()))
                except Exception:
                    return False
                return True
            time.sleep(0.01)
        return False


_NO_PRINTS: Prints = (np.empty(0, np.uint64), np.empty(0, np.uint64))


def _span_prints(item: _Pending) -> Prints:
    if not item.spans.num_rows:
        return _NO_PRINTS
    return item.span_hashes or fingerprints(span_keys(item.spans))


def _merged_events(items: Sequence[_Pending]) -> tuple[pa.Table, Prints]:
    """The items' events as one table, in order, and their ids' fingerprints: consecutive
    small requests' rows become Arrow together, and are hashed together."""
    tables: list[pa.Table] = []
    prints: list[Prints] = []
    rows: list[EventBatch] = []

    def flush() -> None:
        if rows:
            table = batches_to_arrow(rows)
            tables.append(table)
            prints.append(fingerprints(table.column("event_id")))
            rows.clear()

    for item in items:
        if isinstance(item.events, EventBatch):
            if len(item.events):
                rows.append(item.events)
            continue
        flush()
        tables.append(item.events)
        prints.append(item.hashes or fingerprints(item.events.column("event_id")))
    flush()
    if not tables:
        return EVENT_SCHEMA.empty_table(), _NO_PRINTS
    return pa.concat_tables(tables), _concat(prints)


def correlations_of(events: pa.Table, spans: pa.Table) -> np.ndarray:
    """Sorted distinct ``xxHash64`` of the correlation IDs of a batch's events and spans (what
    :meth:`Loader.wait_for` looks an order up in)."""
    parts = [np.empty(0, np.uint64)]
    if events.num_rows:
        parts.append(fingerprints(events.column("correlation_id"))[0])
    if spans.num_rows:
        ids = spans.column("CorrelationId")
        parts.append(fingerprints(ids.filter(pc.not_equal(ids, "")))[0])
    return np.unique(np.concatenate(parts))


def fresh(keys: pa.ChunkedArray | pa.Array, prints: Prints, seen: IdWindow) -> np.ndarray:
    """A mask of the rows to log: first in the batch, and not seen before."""
    hashes, checks = prints
    keep = first_occurrences(keys, hashes)
    candidates = np.flatnonzero(keep)
    if candidates.size:
        keep[candidates[seen.confirmed(hashes[candidates], checks[candidates])]] = False
    return keep


def _concat(prints: Sequence[Prints]) -> Prints:
    return np.concatenate([p[0] for p in prints]), np.concatenate([p[1] for p in prints])


def _per_slice(mask: np.ndarray, sizes: Sequence[int]) -> list[int]:
    """How many ``True`` in each consecutive slice of ``sizes`` rows."""
    before = np.concatenate([[0], np.cumsum(mask)])
    bounds = np.cumsum([0, *sizes])
    return [int(n) for n in before[bounds[1:]] - before[bounds[:-1]]]


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


__all__ = ["EVENT_SCHEMA", "Backpressure", "EventWriter", "WalFull", "WriteOutcome"]
