"""The loader: inserts the write-ahead log's records into ClickHouse, in order, retrying forever.

Acknowledged records arrive from the writer (with their tables, while memory allows) or from
the log itself after a restart. The loader merges waiting records into inserts of up to
``batch_rows`` rows (lingering briefly while fewer wait, as each insert makes parts for the
engine to merge) and releases each record once its rows are in ``events``, ``otel_traces`` and
``dead_letters``.

Failures:
- an insert refused for its content (:class:`~flowsight.store.StoreRejected`) is retried record
  by record; a record still refused has its rows kept as dead letters with the error, whole,
  replayable like any other;
- any other failure is retried with backoff, forever, without letting later records pass;
- an insert that failed may have partly committed, and a record recovered after a crash may
  already be stored: such records are *verified*, their rows already in ClickHouse dropped
  (an exact look-up by id), so nothing is stored twice.

Reads wait on it (:meth:`Loader.wait_all`, :meth:`Loader.wait_for`) so what was acknowledged
before a read is in what the read sees.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from flowsight.collector import dead_letters
from flowsight.collector.events import EVENT_SCHEMA
from flowsight.collector.otlp import SPAN_SCHEMA, span_keys
from flowsight.collector.schema import ORDER_STATE_MV, SYSTEM_MINUTES_MV
from flowsight.collector.seen_ids import hash_ids
from flowsight.collector.wal import Batch, Record, WriteAheadLog
from flowsight.ddl import Schema
from flowsight.store import Store, StoreRejected

log = logging.getLogger(__name__)

LOOKUP_CHUNK = 20_000
INSERT_SETTINGS = {"optimize_on_insert": 0, "max_partitions_per_insert_block": 0}
"""Rows are unique by then (no merge at insert), and a backfill may span any number of
monthly (events) or daily (spans) partitions in one insert."""
REPAIR_SETTINGS = (
    " SETTINGS max_partitions_per_insert_block = 0, max_threads = 1, max_insert_threads = 1,"
    " max_block_size = 65536, min_insert_block_size_rows = 262144, min_insert_block_size_bytes = 67108864"
)
"""Re-applying views streams in small blocks on one thread: its memory stays flat however many
events it re-applies."""
SPANS_REFUSED = "otlp_traces"
"""The dead-letter source of spans ClickHouse refused (their payload is the span's row)."""


class NotYetLoaded(Exception):
    """Acknowledged events are not in ClickHouse yet and did not arrive within the wait."""

    def __init__(self, lag_seconds: float, reason: str | None):
        self.lag_seconds = lag_seconds
        self.reason = reason
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"acknowledged events are not loaded into ClickHouse yet: the loader is "
            f"{lag_seconds:.1f} s behind{why}"
        )


@dataclass
class Pending:
    """One acknowledged record waiting to be loaded."""

    record: Record
    batch: Batch | None
    """The record's tables, or None to read them back from the log."""
    rows: int
    correlations: np.ndarray
    """Sorted ``xxHash64`` of the correlation IDs its events and spans carry."""
    verify: bool = False
    """Its rows may be in ClickHouse already (recovered after a crash, or behind a failed insert)."""


@dataclass
class LoaderStats:
    """Counters the service exposes about its loader."""

    inserts: int = 0
    records_loaded: int = 0
    events_loaded: int = 0
    spans_loaded: int = 0
    dead_letters_loaded: int = 0
    rows_refused: int = 0
    already_stored: int = 0
    retries: int = 0
    insert_seconds: float = 0.0
    last_error: str | None = None
    failing_since: float | None = field(default=None)
    """``time.monotonic()`` of the first failure of the insert being retried, if one is."""


class Loader:
    """One thread that moves acknowledged records from the write-ahead log into ClickHouse."""

    def __init__(
        self,
        store: Store,
        schema: Schema,
        wal: WriteAheadLog,
        *,
        batch_rows: int = 50_000,
        linger_seconds: float = 0.1,
        retry_seconds: float = 0.25,
        retry_max_seconds: float = 5.0,
        memory_bytes: int = 256 << 20,
        housekeeping: Callable[[], None] | None = None,
        on_refused: Callable[[str, pa.Table], None] | None = None,
    ):
        self.store = store
        self.schema = schema
        self.wal = wal
        self.batch_rows = batch_rows
        self.linger_seconds = linger_seconds
        self.retry_seconds = retry_seconds
        self.retry_max_seconds = retry_max_seconds
        self.memory_bytes = memory_bytes
        self.housekeeping = housekeeping
        self.on_refused = on_refused
        """Told of the rows of each table ClickHouse refused (the writer forgets their ids)."""
        self.stats = LoaderStats()
        self._pending: deque[Pending] = deque()
        self._pending_rows = 0
        self._held_bytes = 0
        self._appended = 0  # sequence number of the last record handed over
        self._loaded = 0  # sequence number of the last record loaded
        self._cond = threading.Condition()
        self._readers = 0  # reads waiting for the loader: it does not linger while any do
        self._stopping = False
        self._deadline = float("inf")
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="flowsight-loader", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Load what is waiting (for up to ``timeout`` s), then stop; True when nothing is left
        (what is left stays in the log for the next start)."""
        with self._cond:
            self._stopping = True
            self._deadline = time.monotonic() + timeout
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout + 5)
        with self._cond:
            return not self._pending

    # -- handing over (the writer's thread, and recovery at start) -------------------------

    def add(self, record: Record, batch: Batch, correlations: np.ndarray, *, verify: bool = False) -> None:
        """Queue an acknowledged record; its tables are kept in memory while they fit (their size
        taken as the record's: Arrow's own count walks every buffer of every chunk)."""
        size = record.length
        with self._cond:
            keep = self._held_bytes + size <= self.memory_bytes
            if keep:
                self._held_bytes += size
            self._pending.append(Pending(record, batch if keep else None, batch.rows, correlations, verify))
            self._pending_rows += batch.rows
            self._appended = max(self._appended, record.seq)
            self._cond.notify_all()

    # -- reads wait here ------------------------------------------------------------------

    def wait_all(self, timeout: float) -> None:
        """Return once every record acknowledged before the call is loaded.

        Raises:
            NotYetLoaded: not within ``timeout`` seconds.
        """
        with self._cond:
            self._wait(self._appended, timeout)

    def wait_for(self, correlation_id: str, timeout: float) -> None:
        """Return once every acknowledged record carrying ``correlation_id`` is loaded.

        Raises:
            NotYetLoaded: not within ``timeout`` seconds.
        """
        wanted = np.uint64(hash_ids([correlation_id])[0])
        with self._cond:
            target = 0
            for pending in self._pending:
                hashes = pending.correlations
                at = int(np.searchsorted(hashes, wanted))
                if at < hashes.size and hashes[at] == wanted:
                    target = pending.record.seq
            self._wait(target, timeout)

    def _wait(self, target: int, timeout: float) -> None:
        """Called with the condition held."""
        if self._loaded >= target:
            return
        self._readers += 1
        self._cond.notify_all()  # a lingering loader goes now
        try:
            if not self._cond.wait_for(lambda: self._loaded >= target, timeout):
                raise NotYetLoaded(self._lag(), self.stats.last_error)
        finally:
            self._readers -= 1

    def lag_seconds(self) -> float:
        """How long the oldest record waiting to be loaded has waited (0 when none waits)."""
        with self._cond:
            return self._lag()

    def _lag(self) -> float:
        return time.monotonic() - self._pending[0].record.appended_at if self._pending else 0.0

    @property
    def waiting_rows(self) -> int:
        return self._pending_rows

    # -- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            group = self._take()
            if group is None:
                return
            if self.housekeeping is not None:
                try:
                    self.housekeeping()
                except Exception:  # housekeeping (learning other collectors' ids) may fail; loading goes on
                    log.warning("the loader's housekeeping failed", exc_info=True)
            if not group:
                continue
            try:
                loaded = self._load(group)
            except Exception as exc:  # a record that does not read back, a bug: retry, loudly
                log.exception("loading records %d-%d failed", group[0].record.seq, group[-1].record.seq)
                for pending in group:
                    pending.verify = True
                if self._back_off("ClickHouse", exc, 1):
                    continue
                return
            if not loaded:
                return  # stopping while the database refuses: the records stay in the log
            self._release(group)

    def _take(self) -> list[Pending] | None:
        """The next records to load (in order, up to ``batch_rows`` rows); an empty list when
        only housekeeping is due; None when stopping with nothing left."""
        with self._cond:
            while True:
                if self._stopping and time.monotonic() >= self._deadline:
                    return None  # out of time: what is left stays in the log for the next start
                if self._pending:
                    oldest = self._pending[0].record.appended_at
                    linger = oldest + self.linger_seconds - time.monotonic()
                    if (
                        self._stopping
                        or self._readers
                        or self._pending_rows >= self.batch_rows
                        or linger <= 0
                    ):
                        break
                    self._cond.wait(linger)
                elif self._stopping:
                    return None
                elif not self._cond.wait(1.0):
                    return []
            group: list[Pending] = []
            rows = 0
            for pending in self._pending:
                if group and rows + pending.rows > self.batch_rows:
                    break
                group.append(pending)
                rows += pending.rows
            return group

    def _release(self, group: list[Pending]) -> None:
        for pending in group:
            self.wal.loaded(pending.record)
        with self._cond:
            for pending in group:
                self._pending.popleft()
                self._pending_rows -= pending.rows
                if pending.batch is not None:
                    self._held_bytes -= pending.record.length
            self._loaded = group[-1].record.seq
            self._cond.notify_all()
        self.stats.records_loaded += len(group)

    def _load(self, group: list[Pending]) -> bool:
        """Insert the group's rows, retrying until they are in; False when stopping first."""
        batches = [p.batch if p.batch is not None else self.wal.read(p.record) for p in group]
        parts = {
            "events": pa.concat_tables([b.events for b in batches]),
            "otel_traces": pa.concat_tables([b.spans for b in batches]),
        }
        refused: list[pa.Table] = []
        for table, rows in parts.items():
            try:
                outcome = self._insert(table, rows, group)
            except StoreRejected as exc:
                if len(group) > 1:  # find the record at fault: each alone, the loaded rows verified
                    for pending in group:
                        pending.verify = True
                    return all(self._load([pending]) for pending in group)
                refused.append(self._refused(table, rows, group, exc))
                continue
            if outcome is None:
                return False
        dead = pa.concat_tables([b.dead_letters for b in batches] + refused)
        try:
            return self._insert("dead_letters", dead, group) is not None
        except StoreRejected as exc:  # our own table refusing our own rows: keep retrying, loudly
            log.error("ClickHouse refuses dead letters (%s); retrying", exc)
            return self._retry_forever("dead_letters", dead, group)

    def _insert(self, table: str, rows: pa.Table, group: Sequence[Pending]) -> bool | None:
        """Insert ``rows`` into ``table``, retrying transient failures; None when stopping first.

        Raises:
            StoreRejected: the rows do not fit the table.
        """
        attempt = 0
        while True:
            try:
                if any(p.verify for p in group):  # a look-up that may fail like the insert
                    rows = self._not_stored(table, rows)
                started = time.perf_counter()
                self.store.insert_arrow(self.schema.table(table), rows, settings=INSERT_SETTINGS)
            except StoreRejected:
                raise
            except Exception as exc:  # StoreUnavailable, or anything the driver raises: retry
                for pending in group:
                    pending.verify = True  # the insert may have committed before it failed
                if not self._back_off(table, exc, attempt):
                    return None
                attempt += 1
                continue
            self._count(table, rows, time.perf_counter() - started)
            return True

    def _retry_forever(self, table: str, rows: pa.Table, group: Sequence[Pending]) -> bool:
        attempt = 0
        while True:
            try:
                return self._insert(table, rows, group) is not None
            except StoreRejected as exc:
                if not self._back_off(table, exc, attempt):
                    return False
                attempt += 1

    def _back_off(self, table: str, exc: Exception, attempt: int) -> bool:
        """Wait before the next attempt; False when stopping and out of time."""
        now = time.monotonic()
        self.stats.retries += 1
        self.stats.last_error = f"{type(exc).__name__}: {str(exc)[:300]}"
        if self.stats.failing_since is None:
            self.stats.failing_since = now
        delay = min(self.retry_max_seconds, self.retry_seconds * 2 ** min(attempt, 16))
        if attempt == 0 or attempt % 10 == 0:
            log.warning(
                "loading into %s failed (%s); retrying in %.2f s", table, self.stats.last_error, delay
            )
        with self._cond:
            if self._stopping and now + delay > self._deadline:
                return False
            self._cond.wait_for(lambda: self._stopping and time.monotonic() >= self._deadline, delay)
            return not (self._stopping and time.monotonic() >= self._deadline)

    def _count(self, table: str, rows: pa.Table, seconds: float) -> None:
        stats = self.stats
        if stats.failing_since is not None:
            log.info(
                "loading into %s succeeded again after %.1f s", table, time.monotonic() - stats.failing_since
            )
        stats.failing_since = None
        stats.last_error = None
        if not rows.num_rows:
            return
        stats.inserts += 1
        stats.insert_seconds += seconds
        if table == "events":
            stats.events_loaded += rows.num_rows
        elif table == "otel_traces":
            stats.spans_loaded += rows.num_rows
        else:
            stats.dead_letters_loaded += rows.num_rows

    # -- verifying and refusing -----------------------------------------------------------

    def _not_stored(self, table: str, rows: pa.Table) -> pa.Table:
        """``rows`` without those ClickHouse holds already (exact, by id)."""
        if not rows.num_rows or table == "dead_letters":  # dead letters: replaced by id on merge
            return rows
        if table == "events":
            keys = rows.column("event_id")
            correlations = rows.column("correlation_id").to_pylist()
            stored = self.stored_events(keys.to_pylist(), correlations)
            if stored:  # the insert that stored them may have died before its views' parts
                self.reapply_views(sorted(stored), sorted(set(correlations)))
        else:
            keys = span_keys(rows)
            stored = self.stored_spans(keys.to_pylist())
        if not stored:
            return rows
        keep = pc.invert(pc.is_in(keys, pa.array(sorted(stored), pa.string())))
        self.stats.already_stored += len(stored)
        return rows.filter(keep)

    def stored_events(self, event_ids: Sequence[str], correlation_ids: Sequence[str]) -> set[str]:
        """Which of these events ``events`` holds (by the primary key: correlation, then id)."""
        events = self.schema.table("events")
        found: set[str] = set()
        for start in range(0, len(event_ids), LOOKUP_CHUNK):
            rows = self.store.rows(
                f"SELECT DISTINCT event_id FROM {events} "
                "WHERE correlation_id IN {cs:Array(String)} AND event_id IN {ids:Array(String)}",
                {
                    "cs": sorted(set(correlation_ids[start : start + LOOKUP_CHUNK])),
                    "ids": list(event_ids[start : start + LOOKUP_CHUNK]),
                },
            )
            found.update(row[0] for row in rows)
        return found

    def reapply_views(self, event_ids: Sequence[str], correlation_ids: Sequence[str]) -> None:
        """Feed stored events to the tables their views feed once more (per-order state and
        system minutes: min/max and flags, so a second time changes nothing): an insert killed
        between writing ``events`` and its views' parts leaves them behind."""
        events = self.schema.table("events")
        for view in (ORDER_STATE_MV, SYSTEM_MINUTES_MV):
            self.store.command(
                f"INSERT INTO {self.schema.table(view.target)} "
                + view.select.format(source=events)
                + " WHERE correlation_id IN {cs:Array(String)} AND event_id IN {ids:Array(String)}"
                + REPAIR_SETTINGS,
                {"cs": list(correlation_ids), "ids": list(event_ids)},
            )

    def stored_spans(self, keys: Sequence[str]) -> set[str]:
        """Which spans (``trace_id + span_id``) ``otel_traces`` holds."""
        found: set[str] = set()
        table = self.schema.table("otel_traces")
        for start in range(0, len(keys), LOOKUP_CHUNK):
            chunk = keys[start : start + LOOKUP_CHUNK]
            rows = self.store.rows(
                f"SELECT DISTINCT concat(TraceId, SpanId) FROM {table} "
                "WHERE TraceId IN {t:Array(String)} AND SpanId IN {s:Array(String)}",
                {"t": sorted({k[:32] for k in chunk}), "s": sorted({k[32:] for k in chunk})},
            )
            found.update(k for (k,) in rows if k in set(chunk))
        return found

    def _refused(self, table: str, rows: pa.Table, group: Sequence[Pending], exc: StoreRejected) -> pa.Table:
        """The rows of one record ClickHouse refuses, as dead letters carrying the error."""
        rows = self._not_stored(table, rows)  # the insert may have stored some partitions
        self.stats.rows_refused += rows.num_rows
        if self.on_refused is not None:
            self.on_refused(table, rows)
        reason = f"ClickHouse refused the {table} insert: {str(exc)[:500]}"
        log.error("record %d: %d rows %s", group[0].record.seq, rows.num_rows, reason)
        received = int(time.time() * 1000)
        if table == "events":
            payloads = event_payloads(rows)
            return dead_letters.build_from(
                received,
                [
                    (s, eid, reason, p)
                    for s, eid, p in zip(
                        rows.column("source").to_pylist(),
                        rows.column("event_id").to_pylist(),
                        payloads,
                        strict=True,
                    )
                ],
            )
        keys = span_keys(rows).to_pylist()
        return dead_letters.build_from(
            received,
            [(SPANS_REFUSED, key, reason, p) for key, p in zip(keys, span_payloads(rows), strict=True)],
        )


def event_payloads(events: pa.Table) -> list[bytes]:
    """Each event in the contract's JSON (what replaying it validates)."""
    out = []
    for row in events.select(
        [f.name for f in EVENT_SCHEMA if f.name not in ("source", "ingested_at")]
    ).to_pylist():
        row["occurred_at"] = row["occurred_at"].isoformat(timespec="milliseconds").replace("+00:00", "Z")
        row["attributes"] = dict(row["attributes"])
        out.append(orjson.dumps({k: v for k, v in row.items() if v != "" and v != {}}))
    return out


def span_payloads(spans: pa.Table) -> list[bytes]:
    """Each span's row as JSON, times in nanoseconds (what :func:`spans_from_payloads` reads)."""
    as_ints = spans.cast(_INT_TIMES)
    return [orjson.dumps(row) for row in as_ints.to_pylist()]


def spans_from_payloads(payloads: Sequence[str]) -> pa.Table:
    """The span rows :func:`span_payloads` wrote.

    Raises:
        ValueError: a payload is not such a row.
    """
    rows = []
    for payload in payloads:
        row = orjson.loads(payload)
        for name, value in row.items():
            if (
                isinstance(value, list)
                and value
                and isinstance(value[0], list)
                and name.endswith("Attributes")
            ):
                row[name] = [tuple(pair) for pair in value]
        for name in ("Events.Attributes", "Links.Attributes"):
            row[name] = [[tuple(pair) for pair in entry] for entry in row.get(name, [])]
        rows.append(row)
    try:
        return pa.Table.from_pylist(rows, schema=_INT_TIMES).cast(SPAN_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as exc:
        raise ValueError(f"not a span row: {exc}") from exc


def _int_times(schema: pa.Schema) -> pa.Schema:
    def plain(t: pa.DataType) -> pa.DataType:
        if pa.types.is_timestamp(t):
            return pa.int64()
        if pa.types.is_list(t):
            return pa.list_(plain(t.value_type))
        return t

    return pa.schema([pa.field(f.name, plain(f.type), nullable=f.nullable) for f in schema])


_INT_TIMES = _int_times(SPAN_SCHEMA)


__all__ = ["Loader", "NotYetLoaded", "Pending"]
