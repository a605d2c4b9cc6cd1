"""The HTML pages: executive overview, order timeline, SLOs and alerts (Jinja2, server-side
SVG charts, no external CDN). Each page's main section is also served alone under
``/fragments/...``; the page's script swaps it in when the live feed announces an evaluation,
so figures refresh without a reload."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape

from flowsight.alerts.engine import AlertEngine
from flowsight.alerts.silences import SilenceStore
from flowsight.collector.timeline import TimelineReader, UnknownCorrelation
from flowsight.dashboards import views
from flowsight.dashboards.charts import NO_VALUE, budget_bar, fmt_duration, fmt_number, fmt_percent
from flowsight.slo.engine import window_seconds
from flowsight.slo.evaluator import Evaluator
from flowsight.slo.model import CompletionSli, SloCatalog
from flowsight.slo.snapshots import FlowHistory
from flowsight.timefmt import iso_utc
from flowsight.workflows import WorkflowCatalog

HERE = Path(__file__).parent
STATIC = HERE / "static"


def templates() -> Jinja2Templates:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html", "xml"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        number=fmt_number,
        percent=lambda x, digits=2: fmt_percent(x, digits),
        duration=fmt_duration,
        when=lambda s: (s or "")[:19].replace("T", " ") + " UTC" if s else NO_VALUE,
    )
    return Jinja2Templates(env=env)


def router(
    evaluator: Evaluator,
    alerts: AlertEngine,
    silences: SilenceStore,
    timelines: TimelineReader,
    history: FlowHistory,
    slos: Callable[[], SloCatalog],
    catalog: Callable[[], WorkflowCatalog],
    clock: Callable[[], datetime],
) -> APIRouter:
    pages = APIRouter(tags=["pages"], include_in_schema=False)
    tpl = templates()

    def last() -> dict[str, Any]:
        return evaluator.last or evaluator.evaluate()

    def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return tpl.TemplateResponse(request, name, context, status_code=status)

    def overview_context() -> dict[str, Any]:
        current = last()
        at = views.parse_time(current["evaluated_at"]) or clock()
        completion = {
            slo.sli.workflow: slo.name
            for slo in slos()
            if isinstance(slo.sli, CompletionSli) and not slo.group_by
        }
        trends = {
            wf.name: {
                "24h": history.trend(wf.name, at, 86400),
                "7d": history.trend(wf.name, at, 7 * 86400),
            }
            for wf in catalog()
        }
        return views.overview(current, completion, alerts.list(), trends, at)

    @pages.get("/", response_class=HTMLResponse)
    def overview(request: Request) -> HTMLResponse:
        return render(
            request, "overview.html", page="overview", fragment="/fragments/overview", **overview_context()
        )

    @pages.get("/fragments/overview", response_class=HTMLResponse)
    def overview_fragment(request: Request) -> HTMLResponse:
        return render(request, "_overview.html", **overview_context())

    def slos_context() -> dict[str, Any]:
        current = last()
        at = views.parse_time(current["evaluated_at"]) or clock()
        catalog_now = slos()
        items = []
        for result in current["slos"]:
            slo = catalog_now.get(result["name"])
            window = timedelta(seconds=window_seconds(slo.window, at)) if slo else timedelta(days=28)
            items.append(
                {
                    **result,
                    "budget_bar": budget_bar(
                        result.get("error_budget_remaining"), title=f"{result['name']} budget"
                    ),
                    "burn_down": views.burn_down(
                        result["name"], evaluator.snapshots.history(result["name"]), at, window
                    ),
                }
            )
        return {"evaluated_at": current["evaluated_at"], "slos": items}

    @pages.get("/slos", response_class=HTMLResponse)
    def slo_page(request: Request) -> HTMLResponse:
        return render(request, "slos.html", page="slos", fragment="/fragments/slos", **slos_context())

    @pages.get("/fragments/slos", response_class=HTMLResponse)
    def slo_fragment(request: Request) -> HTMLResponse:
        return render(request, "_slos.html", **slos_context())

    def alerts_context() -> dict[str, Any]:
        now = clock()
        return {
            "evaluated_at": last()["evaluated_at"],
            "incidents": views.incidents(alerts.list()),
            "silences": [s.as_json(now) for s in silences.all()],
        }

    @pages.get("/alerts", response_class=HTMLResponse)
    def alert_page(request: Request) -> HTMLResponse:
        return render(request, "alerts.html", page="alerts", fragment="/fragments/alerts", **alerts_context())

    @pages.get("/fragments/alerts", response_class=HTMLResponse)
    def alert_fragment(request: Request) -> HTMLResponse:
        return render(request, "_alerts.html", **alerts_context())

    @pages.get("/orders")
    def search(id: str = Query("", max_length=128, description="An order or return ID")) -> Response:
        if not id.strip():
            return RedirectResponse("/", status_code=303)
        return RedirectResponse(f"/orders/{quote(id.strip(), safe='')}", status_code=303)

    def order_context(correlation_id: str) -> dict[str, Any] | None:
        now = clock()
        try:
            doc = timelines.timeline(correlation_id, catalog(), now)
        except UnknownCorrelation:
            return None
        chart, rows = views.order_waterfall(doc, now)
        return {"order": doc, "waterfall": chart, "rows": rows, "evaluated_at": iso_utc(now)}

    @pages.get("/orders/{correlation_id:path}", response_class=HTMLResponse)
    def order_page(request: Request, correlation_id: str) -> HTMLResponse:
        context = order_context(correlation_id)
        if context is None:
            return render(request, "not_found.html", status=404, page="order", correlation_id=correlation_id)
        fragment = f"/fragments/orders/{quote(correlation_id, safe='')}"
        return render(request, "order.html", page="order", fragment=fragment, **context)

    @pages.get("/fragments/orders/{correlation_id:path}", response_class=HTMLResponse)
    def order_fragment(request: Request, correlation_id: str) -> HTMLResponse:
        context = order_context(correlation_id)
        if context is None:
            return HTMLResponse("", status_code=404)
        return render(request, "_order.html", **context)

    return pages
