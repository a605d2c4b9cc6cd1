"""HTTP routes of the collector: ``/v1/events``, order timelines and dead letters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Query, Request, Response

from flowsight.auth import principal_of
from flowsight.collector.body import BodyError, decode, read_limited
from flowsight.collector.dead_letters import DeadLetterStore
from flowsight.collector.ingest import BadBody, EventIngestor, TooManyEvents
from flowsight.collector.timeline import TimelineReader, UnknownCorrelation
from flowsight.collector.wal import WalFull, WalWriteFailed
from flowsight.collector.writer import Backpressure
from flowsight.workflows import WorkflowCatalog


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json", headers=headers)


def error_response(status: int, message: str, retry_after: int | None = None) -> Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return json_response({"error": message}, status, headers)


WRITES = frozenset({"/v1/events", "/api/dead-letters/replay"})
"""Routes that write, which an evaluator instance does not serve."""


def router(
    ingestor: EventIngestor,
    timelines: TimelineReader,
    dead_letter_store: DeadLetterStore,
    catalog: Callable[[], WorkflowCatalog],
    clock: Callable[[], datetime],
    *,
    max_body_bytes: int,
    max_decompressed_bytes: int,
    retry_after_seconds: int,
    ingest: bool = True,
    loaded: Callable[[str], None] = lambda correlation_id: None,
    caught_up: Callable[[], None] = lambda: None,
) -> APIRouter:
    """The collector's routes, bound to its services; without ``ingest`` (an evaluator
    instance) only the reads. ``loaded`` returns once the acknowledged events of an order are
    readable (or raises), ``caught_up`` once everything acknowledged is, so a read after an
    acknowledgement (a timeline, the dead letters) shows what it acknowledged."""
    api = APIRouter()

    @api.post(
        "/v1/events",
        summary="Ingest lifecycle events",
        description="A JSON array of events, or NDJSON with Content-Type application/x-ndjson; "
        "gzip allowed. Answers accepted, duplicates, rejected and one error per rejected event.",
        tags=["ingest"],
    )
    async def post_events(request: Request) -> Response:
        try:
            raw = await read_limited(request.stream(), request.headers.get("content-length"), max_body_bytes)
            body = decode(raw, request.headers.get("content-encoding"), max_decompressed_bytes)
            result = await ingestor.ingest(
                body, request.headers.get("content-type"), sender=principal_of(request.state)
            )
        except BodyError as exc:
            return error_response(exc.status, exc.message)
        except BadBody as exc:
            return error_response(400, f"{exc} (kept as a dead letter)")
        except TooManyEvents as exc:
            return error_response(413, str(exc))
        except (WalFull, WalWriteFailed, Backpressure) as exc:
            return error_response(503, f"{exc}; retry later", retry_after_seconds)
        return json_response(result.to_json())

    @api.get(
        "/api/orders/{correlation_id:path}/timeline",
        summary="An order's timeline across systems",
        tags=["orders"],
    )
    def get_timeline(correlation_id: str) -> Response:
        loaded(correlation_id)
        try:
            doc = timelines.timeline(correlation_id, catalog(), clock())
        except UnknownCorrelation:
            return error_response(404, f"no events are stored for correlation ID {correlation_id!r}")
        return json_response(doc)

    @api.get("/api/dead-letters", summary="Rejected input with its reason", tags=["dead letters"])
    def get_dead_letters(
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=2**32 - 1),
        pending: bool = Query(False, description="Only those not yet replayed successfully"),
        source: str | None = Query(None, max_length=64),
    ) -> Response:
        caught_up()
        total, letters = dead_letter_store.page(
            limit=limit, offset=offset, pending_only=pending, source=source
        )
        return json_response(
            {
                "total": total,
                "limit": limit,
                "offset": offset,
                "items": [d.to_json() for d in letters],
            }
        )

    @api.post(
        "/api/dead-letters/replay",
        summary="Re-validate dead letters against the current configuration",
        tags=["dead letters"],
    )
    async def replay_dead_letters(limit: int = Query(10_000, ge=1, le=100_000)) -> Response:
        await asyncio.to_thread(caught_up)
        try:
            summary = await ingestor.replay(limit)
        except (WalFull, WalWriteFailed, Backpressure) as exc:
            return error_response(503, f"{exc}; retry later", retry_after_seconds)
        return json_response(summary)

    if not ingest:
        api.routes[:] = [r for r in api.routes if getattr(r, "path", "") not in WRITES]
    return api
