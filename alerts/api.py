"""HTTP routes of the alert package: alerts and silences."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import orjson
from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError

from flowsight.alerts.engine import AlertEngine
from flowsight.alerts.silences import SilenceSpec, SilenceStore
from flowsight.collector.api import error_response, json_response

STATES = ("firing", "pending", "suppressed", "resolved")


def _field_errors(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        loc = ""
        for item in error["loc"]:
            loc += f"[{item}]" if isinstance(item, int) else (f".{item}" if loc else str(item))
        parts.append(f"{loc or 'body'}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def router(engine: AlertEngine, silences: SilenceStore, clock: Callable[[], datetime]) -> APIRouter:
    api = APIRouter(tags=["alerts"])

    @api.get("/api/alerts", summary="Alerts: state, labels, suppressed_by, impacted; root causes first")
    def get_alerts(
        state: str | None = Query(
            None, description="Only this state: firing, pending, suppressed or resolved"
        ),
    ) -> Response:
        if state is not None and state not in STATES:
            return error_response(400, f"state: expected one of {', '.join(STATES)}, got {state[:40]!r}")
        alerts = engine.list()
        if state is not None:
            alerts = [a for a in alerts if a["state"] == state]
        return json_response(alerts)

    @api.get("/api/silences", summary="Every silence, with its state (pending, active, expired)")
    def get_silences() -> Response:
        now = clock()
        return json_response([s.as_json(now) for s in silences.all()])

    @api.get("/api/silences/{silence_id}", summary="One silence")
    def get_silence(silence_id: str) -> Response:
        found = silences.get(silence_id)
        if found is None:
            return error_response(404, f"no silence with id {silence_id[:64]!r}")
        return json_response(found.as_json(clock()))

    @api.post("/api/silences", summary="Create a silence: label matchers over a time range")
    async def post_silence(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return error_response(400, f"body: not valid JSON: {exc}")
        try:
            spec = SilenceSpec.model_validate(body)
        except ValidationError as exc:
            return error_response(400, _field_errors(exc))
        now = clock()
        try:
            silence = silences.create(spec, now)
        except ValueError as exc:
            return error_response(400, str(exc))
        return json_response({"silenceID": silence.id, **silence.as_json(now)})

    @api.delete("/api/silences/{silence_id}", summary="Expire a silence now")
    def delete_silence(silence_id: str) -> Response:
        expired = silences.expire(silence_id, clock())
        if expired is None:
            return error_response(404, f"no silence with id {silence_id[:64]!r}")
        return json_response(expired.as_json(clock()))

    return api
