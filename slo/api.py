"""HTTP routes of the SLO package: flow health and stuck orders."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import APIRouter, Query, Response

from flowsight.collector.api import error_response, json_response
from flowsight.collector.order_figures import OrderFigures
from flowsight.slo.engine import SloEngine
from flowsight.slo.evaluator import Evaluator
from flowsight.slo.flow import FlowHealth
from flowsight.slo.model import SloCatalog
from flowsight.timefmt import iso_utc
from flowsight.workflows import WorkflowCatalog

EARLIEST_AT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_AT = datetime(2106, 2, 7, 6, 28, 15, tzinfo=UTC)
"""The range of ``at``: the SLIs read per-minute activity kept as ClickHouse ``DateTime``
(unsigned 32-bit seconds), which holds nothing earlier or later."""
MAX_OFFSET = 2**32 - 1
"""The largest ``offset`` of a listing: the query takes it as a ``UInt32``, which would wrap."""


def _as_of(at: str | None, clock: Callable[[], datetime]) -> datetime | Response:
    if at is None:
        return clock()
    try:
        parsed = datetime.fromisoformat(at)
    except ValueError:
        return error_response(400, f"at: must be an RFC 3339 timestamp with offset, got {at[:40]!r}")
    if parsed.tzinfo is None:
        return error_response(400, "at: must carry a UTC offset, e.g. 2026-11-26T10:00:00Z")
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-14:00 is in the year 10000
        utc = None
    if utc is None or not EARLIEST_AT <= utc <= LATEST_AT:
        return error_response(
            400,
            f"at: must be from {EARLIEST_AT:%Y-%m-%dT%H:%M:%SZ} to {LATEST_AT:%Y-%m-%dT%H:%M:%SZ}, got {at[:40]!r}",
        )
    return parsed


def router(
    figures: OrderFigures,
    catalog: Callable[[], WorkflowCatalog],
    clock: Callable[[], datetime],
    engine: SloEngine,
    slos: Callable[[], SloCatalog],
    evaluator: Evaluator,
    evaluates: bool = True,
    caught_up: Callable[[], None] = lambda: None,
) -> APIRouter:
    """The SLO and flow routes. ``caught_up`` returns once the events acknowledged before the
    call are readable (or raises), so every read here sees what was acknowledged before it."""
    api = APIRouter(tags=["flow"])
    health = FlowHealth(figures)

    def as_of(at: str | None) -> datetime | Response:
        when = _as_of(at, clock)
        if not isinstance(when, Response):
            caught_up()
        return when

    @api.get("/api/slos", summary="Every SLO: SLI, good, total, error budget remaining, burn rates, status")
    def get_slos(at: str | None = Query(None, description="Evaluate as of this time (RFC 3339)")) -> Response:
        when = as_of(at)
        if isinstance(when, Response):
            return when
        return json_response(engine.evaluate(slos(), catalog(), when))

    @api.get("/api/slos/{name}", summary="One SLO, with a series per group")
    def get_slo(name: str, at: str | None = Query(None)) -> Response:
        slo = slos().get(name)
        if slo is None:
            return error_response(404, f"no SLO named {name!r} (configured: {', '.join(slos().names())})")
        when = as_of(at)
        if isinstance(when, Response):
            return when
        result = engine.evaluate_one(slo, catalog(), when)
        result["history"] = evaluator.snapshots.history(name)
        return json_response(result)

    @api.post("/api/evaluate", summary="Evaluate every SLO now (or as of `at`) and store the snapshot")
    def post_evaluate(
        at: str | None = Query(None, description="Evaluate as of this time (RFC 3339)"),
    ) -> Response:
        when = as_of(at)
        if isinstance(when, Response):
            return when
        return json_response(evaluator.evaluate(when))

    @api.get("/api/flow/health", summary="Order-flow health per workflow, exceptions, sync lag, ingest lag")
    def flow_health(
        at: str | None = Query(None, description="Evaluate as of this time (RFC 3339)"),
    ) -> Response:
        when = as_of(at)
        if isinstance(when, Response):
            return when
        return json_response(health.evaluate(catalog(), when))

    @api.get("/api/orders", summary="Stuck orders, longest waiting first")
    def orders(
        stuck: bool = Query(True, description="Only stuck orders (the only listing so far)"),
        workflow: str = Query("order_to_cash"),
        stage: str | None = Query(None, description="Only those waiting for this stage"),
        system: str | None = Query(None, description="Only those waiting for a stage this system owns"),
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=MAX_OFFSET),
        at: str | None = Query(None),
    ) -> Response:
        if not stuck:
            return error_response(400, "stuck: only stuck=true is supported; open an order by its ID instead")
        found = catalog().get(workflow)
        if found is None:
            return error_response(404, f"workflow: unknown workflow {workflow!r}")
        when = as_of(at)
        if isinstance(when, Response):
            return when
        if stage and not found.has_stage(stage):
            return error_response(404, f"stage: {stage!r} is not a stage of workflow {workflow!r}")
        only: list[str] | None = None
        if stage or system:
            only = [
                s.name
                for s in found.sequence
                if (stage is None or s.name == stage) and (system is None or s.owner == system)
            ]
        total, items = figures.stuck_orders(found, when, stages=only, limit=limit, offset=offset)
        for item in items:
            owner = found.stage(str(item["waiting_for"]))
            item["owner"] = owner.owner if owner else None
        return json_response(
            {
                "workflow": workflow,
                "evaluated_at": iso_utc(when),
                "total": total,
                "limit": limit,
                "offset": offset,
                "items": items,
            }
        )

    if not evaluates:  # a collector instance: evaluation is the evaluator's
        api.routes[:] = [r for r in api.routes if getattr(r, "path", "") != "/api/evaluate"]
    return api
