"""Lifecycle-event ingestion: decode a body, validate each event, hand the batch to the writer."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa

from flowsight.auth import Principal
from flowsight.collector import dead_letters
from flowsight.collector.columnar import ColumnarBatch, TooMany, validate_ndjson
from flowsight.collector.dead_letters import DeadLetterStore
from flowsight.collector.events import DEFAULT_LIMITS, EventBatch, EventLimits
from flowsight.collector.loader import SPANS_REFUSED, spans_from_payloads
from flowsight.collector.seen_ids import fingerprints
from flowsight.collector.writer import EventWriter
from flowsight.timefmt import to_ms
from flowsight.workflows import WorkflowCatalog

log = logging.getLogger(__name__)

MAX_ERRORS_LISTED = 1000
COLUMNAR_MIN_BYTES = 16_384
"""NDJSON bodies from this size (about 80 events) are validated as columns, off the event loop;
below it the row path is faster."""
NDJSON_TYPES = (
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/json-seq",
)


class BadBody(Exception):
    """The body as a whole cannot be read as events (answered with 400)."""


class TooManyEvents(Exception):
    """More events in one request than allowed (answered with 413)."""


@dataclass
class IngestResult:
    """The answer to one ingest request, in the contract's shape."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "errors": self.errors[:MAX_ERRORS_LISTED],
        }
        if len(self.errors) > MAX_ERRORS_LISTED:
            body["errors_truncated"] = len(self.errors) - MAX_ERRORS_LISTED
        return body


def media_type(content_type: str | None) -> str:
    return (content_type or "application/json").split(";")[0].strip().lower()


def decode_events(body: bytes, content_type: str | None) -> list[Any]:
    """Decoded events of a JSON-array or NDJSON body.

    An NDJSON line that is not JSON comes back as :class:`RawLine`, to be rejected on its own.

    Raises:
        BadBody: the body is not JSON (or no NDJSON line is).
    """
    if media_type(content_type) in NDJSON_TYPES:
        # Line by line: joining lines into one array could read lines that are not JSON on
        # their own as other events. Large bodies take the columnar path before this.
        lines = [line for line in body.split(b"\n") if line.strip()]
        events: list[Any] = []
        bad = 0
        for line in lines:
            try:
                events.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                events.append(RawLine(line, str(exc)))
                bad += 1
        if lines and bad == len(lines):
            raise BadBody("no line of the NDJSON body is valid JSON")
        return events
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadBody(f"body is not valid JSON: {exc}") from None
    if not isinstance(decoded, list):
        raise BadBody(
            "body must be a JSON array of events (or NDJSON with Content-Type application/x-ndjson)"
        )
    return decoded


def batch_for(
    catalog: WorkflowCatalog, source: str, now_ms: int, limits: EventLimits, sender: Principal | None
) -> EventBatch:
    """An empty batch under ``limits``, limited to the systems of ``sender``'s token, if any."""
    return EventBatch(
        catalog,
        source,
        now_ms,
        limits=limits,
        systems=sender.systems if sender else None,
        sender=f"token {sender.name!r}" if sender else "",
    )


@dataclass(frozen=True)
class RawLine:
    """An NDJSON line that did not decode."""

    data: bytes
    error: str


class EventIngestor:
    """Validates event batches and writes them; also replays dead letters."""

    def __init__(
        self,
        writer: EventWriter,
        dead_letter_store: DeadLetterStore,
        catalog: Callable[[], WorkflowCatalog],
        clock: Callable[[], datetime],
        *,
        max_events: int = 50_000,
        limits: EventLimits = DEFAULT_LIMITS,
        validation_threads: int = 1,
    ):
        self.writer = writer
        self.dead_letter_store = dead_letter_store
        self.catalog = catalog
        self.clock = clock
        self.max_events = max_events
        self.limits = limits
        # Few threads on purpose: each batch must also pass the writer's one thread, and
        # validation threads beyond the spare cores only take the writer's.
        self._validation = ThreadPoolExecutor(validation_threads, thread_name_prefix="flowsight-validate")

    def close(self) -> None:
        """Stop the validation threads (requests still waiting on them are cancelled)."""
        self._validation.shutdown(wait=False, cancel_futures=True)

    def _now_ms(self) -> int:
        return to_ms(self.clock())

    def new_batch(self, source: str, sender: Principal | None = None) -> EventBatch:
        """An empty batch under this service's limits (and the sender's systems, if limited)."""
        return batch_for(self.catalog(), source, self._now_ms(), self.limits, sender)

    def validate(self, events: list[Any], source: str, sender: Principal | None = None) -> EventBatch:
        """Validate decoded events into a batch (accepted columns plus errors)."""
        if len(events) > self.max_events:
            raise TooManyEvents(f"{len(events)} events in one request; the limit is {self.max_events}")
        batch = self.new_batch(source, sender)
        for index, event in enumerate(events):
            if isinstance(event, RawLine):
                batch.reject(index, "", event.data, f"line {index + 1}: not valid JSON: {event.error}")
            else:
                batch.add(index, event)
        return batch

    async def ingest(
        self, body: bytes, content_type: str | None, source: str = "api", sender: Principal | None = None
    ) -> IngestResult:
        """Decode, validate and durably write one request's events (``sender``: the token it came
        with, which may limit the systems its events claim).

        Raises:
            BadBody: the body is not JSON; it is kept as a dead letter before this is raised.
            TooManyEvents: over the per-request limit.
            writer.Backpressure, wal.WalFull, wal.WalWriteFailed: nothing was accepted; retry later.
        """
        if len(body) >= COLUMNAR_MIN_BYTES and media_type(content_type) in NDJSON_TYPES:
            validate = functools.partial(
                contextvars.copy_context().run, self.validate_columns, body, source, sender
            )
            columnar = await asyncio.get_running_loop().run_in_executor(self._validation, validate)
            if columnar is not None:
                return await self.write(columnar, source)
        try:
            events = decode_events(body, content_type)
        except BadBody as exc:
            await self._keep_body(body, str(exc), source)
            raise
        batch = self.validate(events, source, sender)
        return await self.write(batch, source)

    def validate_columns(
        self, body: bytes, source: str, sender: Principal | None = None
    ) -> ColumnarBatch | None:
        """The columnar path (see :mod:`flowsight.collector.columnar`), with the ids hashed for
        the writer's dedup filter; ``None`` when the row path must take the body."""
        template = self.new_batch(source, sender)
        try:
            batch = validate_ndjson(
                body,
                template.catalog,
                source,
                template.ingested_at_ms,
                self.max_events,
                limits=self.limits,
                systems=template.systems,
                sender=template.sender,
            )
        except TooMany as exc:
            raise TooManyEvents(
                f"{exc.count} events in one request; the limit is {self.max_events}"
            ) from None
        if batch is not None:
            batch.hashes = fingerprints(batch.table.column("event_id"))
        return batch

    async def write(self, batch: EventBatch | ColumnarBatch, source: str) -> IngestResult:
        dead = dead_letters.build(
            batch.ingested_at_ms,
            source,
            [
                (eid, error, payload)
                for (_, eid, error), payload in zip(batch.errors, batch.rejected_payloads, strict=True)
            ],
        )
        if isinstance(batch, ColumnarBatch):
            submitted = self.writer.submit(batch.to_arrow(), dead, hashes=batch.hashes)
        else:  # a small request's rows: the writer makes them Arrow with the rest of its group
            submitted = self.writer.submit(batch, dead)
        outcome = await asyncio.wrap_future(submitted)
        return IngestResult(
            accepted=outcome.accepted,
            duplicates=outcome.duplicates,
            rejected=len(batch.errors),
            errors=[{"index": i, "event_id": eid, "error": error} for i, eid, error in batch.errors],
        )

    async def _keep_body(self, body: bytes, reason: str, source: str) -> None:
        dead = dead_letters.build(self._now_ms(), source, [("", reason, body)])
        empty = self.new_batch(source).to_arrow()
        await asyncio.wrap_future(self.writer.submit(empty, dead))

    async def replay(self, limit: int = 10_000) -> dict[str, int]:
        """Re-validate pending dead letters against the current configuration.

        Those that now pass go through the normal write path (dedup included); each dead letter
        gets a replay record, ``replayed`` or ``still_invalid``.
        """
        pending = await asyncio.to_thread(self.dead_letter_store.pending, limit)
        if not pending:
            return {"examined": 0, "replayed": 0, "still_invalid": 0, "duplicates": 0}
        spans = [letter for letter in pending if letter.source == SPANS_REFUSED]
        letters = [letter for letter in pending if letter.source != SPANS_REFUSED]
        decoded: list[Any] = []
        for letter in letters:
            try:
                decoded.append(orjson.loads(letter.payload))
            except orjson.JSONDecodeError:
                decoded.append(RawLine(letter.payload.encode(), "not valid JSON"))
        batch = self.new_batch("replay")
        passed: set[str] = set()
        for index, (letter, event) in enumerate(zip(letters, decoded, strict=True)):
            if isinstance(event, dict) and batch.add(index, event):
                passed.add(letter.id)
        span_rows = []
        for letter in spans:  # spans ClickHouse refused once: their rows, as they were
            try:
                span_rows.append(spans_from_payloads([letter.payload]))
                passed.add(letter.id)
            except ValueError:
                pass
        outcome = await asyncio.wrap_future(
            self.writer.submit(batch.to_arrow(), spans=pa.concat_tables(span_rows) if span_rows else None)
        )
        outcomes = [(letter.id, "replayed" if letter.id in passed else "still_invalid") for letter in pending]
        await asyncio.to_thread(self.dead_letter_store.record_replays, self._now_ms(), outcomes)
        return {
            "examined": len(pending),
            "replayed": outcome.accepted + outcome.spans_accepted,
            "duplicates": outcome.duplicates + outcome.spans_duplicates,
            "still_invalid": len(pending) - len(passed),
        }
