"""View models of the pages: the API documents turned into what a template shows, charts
included (server-side SVG from :mod:`flowsight.dashboards.charts`). Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from flowsight.dashboards.charts import (
    Bar,
    Series,
    WaterfallRow,
    bar_chart,
    budget_bar,
    fmt_duration,
    funnel_chart,
    line_chart,
    waterfall,
)
from flowsight.timefmt import as_utc

PANEL = 480
"""Width of a panel's chart (its viewBox): panels are about this wide, so text stays legible."""

AGING_STATUS = {"<1h": "ok", "1-4h": "warn", "4-24h": "bad", ">24h": "bad"}


def parse_time(value: str | None) -> datetime | None:
    return as_utc(datetime.fromisoformat(value)) if value else None


def _completion_slo(
    slos: Sequence[Mapping[str, Any]], workflow: str, names: Mapping[str, str]
) -> Mapping[str, Any] | None:
    name = names.get(workflow)
    return next((s for s in slos if s["name"] == name), None)


def overview(
    last: Mapping[str, Any],
    completion_slos: Mapping[str, str],
    alerts: Sequence[Mapping[str, Any]],
    trends: Mapping[str, Mapping[str, list[dict[str, Any]]]],
    at: datetime,
) -> dict[str, Any]:
    """The executive overview: per workflow completion against its SLO (and per channel), budget,
    in flight, stuck orders by stage and owner, exception aging, sync lag, incidents, trends."""
    flow, slos = last["flow"], last["slos"]
    workflows = []
    for name, wf in flow["workflows"].items():
        slo = _completion_slo(slos, name, completion_slos)
        objective = slo["objective"] if slo else None
        by_channel = [
            Bar(
                channel or "(none)",
                figures["completion_rate"] * 100,
                "ok" if objective is None or figures["completion_rate"] >= objective else "bad",
            )
            for channel, figures in wf.get("by_channel", {}).items()
        ]
        stuck = wf["stuck"]
        trend = trends.get(name, {})
        workflows.append(
            {
                "name": name,
                "in_flight": wf["in_flight"],
                "completed": wf["completed"],
                "completion_rate": wf["completion_rate"],
                "objective": objective,
                "meets_objective": objective is None
                or wf["completion_rate"] is None
                or wf["completion_rate"] >= objective,
                "budget": slo["error_budget_remaining"] if slo else None,
                "budget_bar": budget_bar(
                    slo["error_budget_remaining"] if slo else None, title=f"{name} error budget"
                ),
                "slo_status": slo["status"] if slo else None,
                "stuck_total": stuck["total"],
                "channels": bar_chart(
                    by_channel,
                    value_format=lambda v: f"{v:.1f}%",
                    title=f"{name}: completion rate by channel",
                    width=PANEL,
                ),
                "funnel": funnel_chart(
                    list(wf["funnel"].items()), title=f"{name}: orders reaching each stage", width=PANEL
                ),
                "stuck_by_stage": bar_chart(
                    [
                        Bar(stage, n, "bad")
                        for stage, n in sorted(stuck["by_stage"].items(), key=lambda x: -x[1])
                    ],
                    title=f"{name}: stuck orders by the stage they wait for",
                    width=PANEL,
                ),
                "stuck_by_system": bar_chart(
                    [
                        Bar(system, n, "bad")
                        for system, n in sorted(stuck["by_system"].items(), key=lambda x: -x[1])
                    ],
                    title=f"{name}: stuck orders by owner system",
                    width=PANEL,
                ),
                "trend_24h": _trend_chart(name, trend.get("24h", []), at - timedelta(days=1), at, objective),
                "trend_7d": _trend_chart(name, trend.get("7d", []), at - timedelta(days=7), at, objective),
                "stuck_trend_24h": _count_chart(name, trend.get("24h", []), at - timedelta(days=1), at),
            }
        )
    exceptions = flow["exceptions"]
    return {
        "evaluated_at": last["evaluated_at"],
        "workflows": workflows,
        "exceptions_open": exceptions["open"],
        "aging": bar_chart(
            [Bar(bucket, n, AGING_STATUS.get(bucket, "")) for bucket, n in exceptions["aging"].items()],
            title="Open exceptions by age",
            width=PANEL,
        ),
        "backlog": bar_chart(
            [Bar(system, n, "warn") for system, n in flow.get("backlog", {}).items()],
            title="Open exceptions by owner system",
            width=PANEL,
        ),
        "sync_lag": [
            {"pair": pair.replace("->", " → "), **figures, "p95": fmt_duration(figures["p95_s"])}
            for pair, figures in flow.get("sync_lag", {}).items()
        ],
        "incidents": incidents(alerts),
        "slos": [
            {
                "name": s["name"],
                "status": s["status"],
                "sli": s.get("sli_value"),
                "objective": s["objective"],
                "budget": s.get("error_budget_remaining"),
                "budget_bar": budget_bar(s.get("error_budget_remaining"), title=f"{s['name']} error budget"),
            }
            for s in slos
        ],
    }


def _trend_chart(
    workflow: str, points: list[dict[str, Any]], start: datetime, end: datetime, objective: float | None
) -> str:
    return line_chart(
        [
            Series(
                "completion rate",
                [
                    (p["t"], p["completion_rate"] * 100 if p["completion_rate"] is not None else None)
                    for p in points
                ],
            )
        ],
        start=start,
        end=end,
        y_max=100.0,
        y_format=lambda v: f"{v:.1f}%" if v % 1 else f"{v:.0f}%",
        threshold=objective * 100 if objective is not None else None,
        threshold_label="objective",
        title=f"{workflow}: completion rate",
        width=PANEL,
        height=200,
    )


def _count_chart(workflow: str, points: list[dict[str, Any]], start: datetime, end: datetime) -> str:
    return line_chart(
        [
            Series("in flight", [(p["t"], p["in_flight"]) for p in points]),
            Series("stuck", [(p["t"], p["stuck"]) for p in points]),
            Series("open exceptions", [(p["t"], p["exceptions_open"]) for p in points]),
        ],
        start=start,
        end=end,
        title=f"{workflow}: orders in flight, stuck and open exceptions",
        width=PANEL,
        height=200,
    )


def incidents(alerts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Alerts grouped by root cause (each with the suppressed alerts under it), the other
    active alerts, and those resolved recently."""
    by_fp = {a["fingerprint"]: a for a in alerts}
    roots = [
        {**a, "impacted_alerts": [by_fp[fp] for fp in a["impacted"] if fp in by_fp]}
        for a in alerts
        if a["root_cause"] and a["state"] != "resolved"
    ]
    others = [a for a in alerts if not a["root_cause"] and a["state"] in ("firing", "pending")]
    resolved = [a for a in alerts if a["state"] == "resolved"]
    return {"roots": roots, "others": others, "resolved": resolved, "active": len(roots) + len(others)}


def burn_down(name: str, history: Sequence[Mapping[str, Any]], at: datetime, window: timedelta) -> str:
    """An SLO's error budget remaining over its window, from its evaluation snapshots."""
    points = [
        (
            parse_time(h["evaluated_at"]),
            h["error_budget_remaining"] * 100 if h["error_budget_remaining"] is not None else None,
        )
        for h in history
    ]
    return line_chart(
        [Series("budget remaining", [(t, v) for t, v in points if t is not None])],
        start=at - window,
        end=at,
        y_format=lambda v: f"{v:.0f}%",
        threshold=0.0,
        threshold_label="exhausted",
        title=f"{name}: error budget remaining",
        width=PANEL,
        height=200,
    )


def order_waterfall(doc: Mapping[str, Any], now: datetime) -> tuple[str, int]:
    """The order's timeline as a waterfall: stages (with the gap to each, breaches marked),
    exceptions, and spans nested under their parents. Returns the SVG and its row count."""
    rows: list[WaterfallRow] = []
    previous: datetime | None = None
    for stage in doc.get("stages", []):
        reached = parse_time(stage.get("reached_at"))
        sla = f"SLA {fmt_duration(stage['sla_s'])}" if stage.get("sla_s") else "no SLA"
        label = f"{stage['stage']} · {stage['system']}"
        if reached is not None:
            if stage.get("breached") and previous is not None:
                rows.append(
                    WaterfallRow(
                        f"gap before {stage['stage']}",
                        previous,
                        reached,
                        kind="gap",
                        status="breach",
                        detail=f"{fmt_duration(stage['since_previous_s'])} ({sla})",
                    )
                )
            rows.append(
                WaterfallRow(
                    label,
                    reached,
                    None,
                    kind="stage",
                    status="breach" if stage.get("breached") else "ok",
                    detail=sla,
                )
            )
            previous = reached
        elif stage.get("state") in ("waiting", "stuck") and previous is not None:
            rows.append(
                WaterfallRow(
                    f"waiting for {stage['stage']} · {stage['owner']}",
                    previous,
                    now,
                    kind="gap",
                    status="breach" if stage["state"] == "stuck" else "",
                    detail=f"{fmt_duration(stage['since_previous_s'])} so far ({sla})",
                )
            )
    for exc in doc.get("exceptions", []):
        opened = parse_time(exc["opened_at"])
        if opened is None:
            continue
        resolved = parse_time(exc.get("resolved_at"))
        rows.append(
            WaterfallRow(
                f"exception at {exc['stage']}",
                opened,
                resolved,
                kind="exception",
                status="ok" if resolved else "open",
                detail=f"open {fmt_duration(exc['age_s'])}" if not resolved else "resolved",
            )
        )
    rows += _span_rows(doc.get("spans", []))
    if not rows:
        return waterfall([], start=now - timedelta(hours=1), end=now, title="order timeline"), 0
    start = min(r.start for r in rows)
    ends = [r.end or r.start for r in rows]
    if any(r.end is None and r.kind == "exception" for r in rows) or doc.get("status") == "in_progress":
        ends.append(now)
    end = max(ends)
    if end <= start:
        end = start + timedelta(seconds=1)
    margin = (end - start) * 0.02
    return waterfall(
        rows, start=start - margin, end=end + margin, title=f"timeline of {doc['correlation_id']}"
    ), len(rows)


def _span_rows(spans: Sequence[Mapping[str, Any]]) -> list[WaterfallRow]:
    """Spans in tree order (each after its parent, children by start), indented by depth."""
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[Mapping[str, Any]]] = {}
    for span in spans:
        parent = span.get("parent_span_id")
        children.setdefault(parent if parent in ids else None, []).append(span)
    rows: list[WaterfallRow] = []

    def visit(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: (s["start"], s["span_id"])):
            start = parse_time(span["start"])
            if start is None:
                continue
            rows.append(
                WaterfallRow(
                    f"{span['service']}: {span['name']}",
                    start,
                    start + timedelta(milliseconds=float(span["duration_ms"])),
                    depth=depth,
                    kind="span",
                    status="error" if span.get("status") == "error" else "ok",
                    detail=f"{span['duration_ms']:.1f} ms"
                    + (f" · {span['status_message']}" if span.get("status_message") else ""),
                )
            )
            visit(span["span_id"], depth + 1)

    visit(None, 0)
    return rows
