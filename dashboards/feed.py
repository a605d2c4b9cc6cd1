"""The live feed: evaluation results and alert changes as server-sent events.

``GET /api/feed`` streams ``evaluation`` events (the figures a wall display shows: per workflow
in flight, completion rate and stuck orders; every SLO's status and budget; alert counts) after
each evaluation, and ``alerts`` events listing the alerts whose state changed. A new subscriber
first gets the latest event of each kind, so a page is current as soon as it connects.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from flowsight.timefmt import iso_utc

KEEP_ALIVE_S = 15.0


class Feed:
    """Fans events out to subscribers; ``publish`` may be called from any thread."""

    def __init__(self) -> None:
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[dict[str, Any]]]] = set()
        self._latest: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        with self._lock:
            event = {"id": next(self._ids), "event": kind, "data": data}
            self._latest[kind] = event
            subscribers = list(self._subscribers)
        for loop, queue in subscribers:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, event)
            except RuntimeError:  # the subscriber's loop has closed
                self._drop(loop, queue)

    def subscribe(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Queue[dict[str, Any]]]:
        entry = (asyncio.get_running_loop(), asyncio.Queue[dict[str, Any]](maxsize=1000))
        with self._lock:
            self._subscribers.add(entry)
            for event in sorted(self._latest.values(), key=lambda e: int(e["id"])):
                entry[1].put_nowait(event)
        return entry

    def _drop(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[dict[str, Any]]) -> None:
        with self._lock:
            self._subscribers.discard((loop, queue))

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)


def sse(event: dict[str, Any]) -> bytes:
    """One server-sent event: ``id``, ``event`` and a JSON ``data`` line."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (
        event["id"],
        event["event"].encode(),
        orjson.dumps(event["data"]),
    )


class EvaluationFeed:
    """The evaluator's follower that publishes each evaluation and the alert changes it made."""

    def __init__(self, feed: Feed, alerts: Callable[[], Sequence[dict[str, Any]]]):
        self.feed = feed
        self.alerts = alerts
        self._states: dict[str, str] = {}

    def __call__(self, at: datetime, slos: list[dict[str, Any]], flow: dict[str, Any]) -> dict[str, int]:
        alerts = list(self.alerts())
        counts: dict[str, int] = {}
        for alert in alerts:
            counts[alert["state"]] = counts.get(alert["state"], 0) + 1
        self.feed.publish(
            "evaluation",
            {
                "evaluated_at": iso_utc(at),
                "workflows": {
                    name: {
                        "in_flight": wf["in_flight"],
                        "completed": wf["completed"],
                        "completion_rate": wf["completion_rate"],
                        "stuck": wf["stuck"]["total"],
                    }
                    for name, wf in flow.get("workflows", {}).items()
                },
                "exceptions_open": flow.get("exceptions", {}).get("open", 0),
                "slos": [
                    {
                        "name": s["name"],
                        "status": s["status"],
                        "sli": s.get("sli_value"),
                        "error_budget_remaining": s.get("error_budget_remaining"),
                    }
                    for s in slos
                ],
                "alerts": counts,
            },
        )
        now = {a["fingerprint"]: a["state"] for a in alerts}
        changed = [
            {key: a[key] for key in ("fingerprint", "name", "state", "labels", "suppressed_by", "impacted")}
            for a in alerts
            if self._states.get(a["fingerprint"]) != a["state"]
        ]
        if changed:
            self.feed.publish("alerts", {"evaluated_at": iso_utc(at), "changed": changed})
        self._states = now
        return {"subscribers": self.feed.subscribers, "alert_changes": len(changed)}


def router(feed: Feed) -> APIRouter:
    api = APIRouter(tags=["feed"])

    @api.get(
        "/api/feed",
        summary="Server-sent events: `evaluation` after each evaluation, `alerts` when alerts change",
        response_class=StreamingResponse,
    )
    async def get_feed(request: Request) -> StreamingResponse:
        loop, queue = feed.subscribe()

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 5000\n\n"
                while not await request.is_disconnected():
                    try:
                        event = await asyncio.wait_for(queue.get(), KEEP_ALIVE_S)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    yield sse(event)
            finally:
                feed._drop(loop, queue)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return api
