"""The demo's routes: its status, starting a scenario now (API and page buttons)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from flowsight.collector.api import error_response, json_response
from flowsight.dashboards.pages import templates
from flowsight.demo.scenarios import SCENARIOS
from flowsight.timefmt import iso_utc


def router(demo: Callable[[], Any]) -> APIRouter:
    api = APIRouter(tags=["demo"])
    tpl = templates()

    @api.get("/api/demo", summary="The demo: simulated time, traffic sent, scenarios available and active")
    def status() -> Response:
        current = demo()
        if current is None:
            return error_response(503, "the demo is starting")
        return json_response(current.status())

    def start(name: str) -> Response | None:
        current = demo()
        if current is None:
            return error_response(503, "the demo is starting")
        if name not in SCENARIOS:
            return error_response(
                404, f"name: unknown scenario {name!r}: expected one of {', '.join(SCENARIOS)}"
            )
        current.trigger(name)
        return None

    @api.post("/api/demo/scenarios/{name}", summary="Start a scenario now", status_code=202)
    def post_scenario(name: str) -> Response:
        problem = start(name)
        if problem is not None:
            return problem
        current = demo()
        return json_response({"started": name, "status": current.status()}, 202)

    @api.post("/demo/scenarios/{name}", include_in_schema=False)
    def page_scenario(name: str) -> Response:
        return start(name) or RedirectResponse("/demo", status_code=303)

    @api.get("/demo", response_class=HTMLResponse, include_in_schema=False)
    def page(request: Request) -> HTMLResponse:
        current = demo()
        status = current.status() if current else None
        evaluated = current.services.evaluator.last if current else None
        return tpl.TemplateResponse(
            request,
            "demo.html",
            {
                "page": "demo",
                "fragment": None,
                "demo": status,
                "scenarios": SCENARIOS,
                "evaluated_at": evaluated["evaluated_at"] if evaluated else iso_utc(None),
            },
        )

    return api
