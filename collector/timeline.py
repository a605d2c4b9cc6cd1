"""An order's timeline across systems: stages reached, SLAs, events and exceptions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowsight.collector.schema import TRACE_SPAN_COLUMNS
from flowsight.ddl import Schema
from flowsight.store import Store
from flowsight.timefmt import as_utc, iso_utc
from flowsight.workflows import Workflow, WorkflowCatalog

MAX_EVENTS = 10_000
MAX_SPANS = 10_000


class UnknownCorrelation(LookupError):
    """No event carries this correlation ID."""


@dataclass(frozen=True)
class _Event:
    event_id: str
    workflow: str
    stage: str
    system: str
    occurred_at: datetime
    status: str
    channel: str
    trace_id: str
    span_id: str
    attributes: dict[str, str]
    source: str


class TimelineReader:
    """Reads one correlation's events and assembles its timeline."""

    def __init__(self, store: Store, schema: Schema):
        self.store = store
        self.schema = schema

    def events(self, correlation_id: str) -> list[_Event]:
        rows = self.store.rows(
            f"""
            SELECT event_id, workflow, stage, system, occurred_at, status, channel,
                   trace_id, span_id, attributes, source
            FROM {self.schema.table("events")}
            WHERE correlation_id = {{id:String}}
            ORDER BY occurred_at, event_id
            LIMIT 1 BY event_id
            LIMIT {MAX_EVENTS}
            """,
            {"id": correlation_id},
        )
        return [_Event(row[0], row[1], row[2], row[3], as_utc(row[4]), *row[5:]) for row in rows]

    def timeline(self, correlation_id: str, catalog: WorkflowCatalog, now: datetime) -> dict[str, Any]:
        """The timeline document of the API.

        Raises:
            UnknownCorrelation: nothing is stored under ``correlation_id``.
        """
        events = self.events(correlation_id)
        spans = self.spans(correlation_id, sorted({e.trace_id for e in events if e.trace_id}))
        if not events and not spans:
            raise UnknownCorrelation(correlation_id)
        doc = build_timeline(correlation_id, events, catalog, now) if events else _spans_only(correlation_id)
        doc["spans"] = spans
        return doc

    def spans(self, correlation_id: str, event_trace_ids: list[str]) -> list[dict[str, Any]]:
        """Every span of every trace joined to the order: traces whose spans carry its ID, and
        traces its lifecycle events name. Resent spans appear once."""
        table = self.schema.table
        rows = self.store.rows(
            f"""
            SELECT {", ".join(TRACE_SPAN_COLUMNS)}
            FROM {table("trace_spans")}
            WHERE TraceId IN (
                SELECT TraceId FROM {table("trace_correlations")} WHERE CorrelationId = {{id:String}}
                UNION ALL SELECT arrayJoin({{event_traces:Array(String)}}))
            ORDER BY Timestamp, SpanId
            LIMIT 1 BY TraceId, SpanId
            LIMIT {MAX_SPANS}
            """,
            {"id": correlation_id, "event_traces": event_trace_ids},
        )
        return [
            {
                "trace_id": trace_id,
                "span_id": span_id,
                "parent_span_id": parent or None,
                "service": service,
                "name": name,
                "kind": kind,
                "start": iso_utc(start),
                "duration_ms": duration / 1e6,
                "status": status.lower() if status != "Unset" else "unset",
                "status_message": message or None,
                "correlation_id": correlation or None,
            }
            for (
                trace_id,
                span_id,
                parent,
                service,
                name,
                kind,
                start,
                duration,
                status,
                message,
                correlation,
            ) in rows
        ]


def _spans_only(correlation_id: str) -> dict[str, Any]:
    """The timeline of an ID known only from traces: no workflow, no stages."""
    return {
        "correlation_id": correlation_id,
        "workflow": None,
        "other_workflows": [],
        "status": "unknown",
        "channel": None,
        "first_seen": None,
        "completed_at": None,
        "terminal_stage": None,
        "completion_deadline_s": None,
        "stages": [],
        "events": [],
        "exceptions": [],
    }


def build_timeline(
    correlation_id: str, events: list[_Event], catalog: WorkflowCatalog, now: datetime
) -> dict[str, Any]:
    """Assemble the timeline from events sorted by time (pure: no I/O, ``now`` given)."""
    workflows = list(dict.fromkeys(e.workflow for e in events))
    primary = workflows[0]
    workflow = catalog.get(primary)
    mine = [e for e in events if e.workflow == primary]
    reached: dict[str, _Event] = {}
    for event in mine:
        if event.status == "ok" and event.stage not in reached:
            reached[event.stage] = event
    stages = _stages(workflow, reached, now) if workflow else _unconfigured_stages(reached)
    terminal = [s for s in (workflow.terminal_stages if workflow else ()) if s in reached]
    first_seen = mine[0].occurred_at
    if terminal:
        status = "complete"
        completed_at: datetime | None = min(reached[s].occurred_at for s in terminal)
    else:
        completed_at = None
        overdue = workflow is not None and now - first_seen > workflow.completion_deadline
        status = "overdue" if overdue else "in_progress"
    channel = next((e.channel for e in mine if e.channel), "")
    return {
        "correlation_id": correlation_id,
        "workflow": primary,
        "other_workflows": workflows[1:],
        "status": status,
        "channel": channel or None,
        "first_seen": iso_utc(first_seen),
        "completed_at": iso_utc(completed_at),
        "terminal_stage": min(terminal, key=lambda s: reached[s].occurred_at) if terminal else None,
        "completion_deadline_s": workflow.completion_deadline.total_seconds() if workflow else None,
        "stages": stages,
        "events": [
            {
                "event_id": e.event_id,
                "workflow": e.workflow,
                "stage": e.stage,
                "system": e.system,
                "status": e.status,
                "occurred_at": iso_utc(e.occurred_at),
                "channel": e.channel or None,
                "trace_id": e.trace_id or None,
                "span_id": e.span_id or None,
                "attributes": e.attributes,
                "source": e.source,
            }
            for e in events
        ],
        "spans": [],
        "exceptions": exceptions(events, now),
    }


def _stages(workflow: Workflow, reached: dict[str, _Event], now: datetime) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    previous_at: datetime | None = None
    waiting_marked = False
    for stage in workflow.stages:
        event = reached.get(stage.name)
        sla_s = stage.sla.total_seconds() if stage.sla is not None else None
        since: float | None = None
        state = "reached" if event else "pending"
        breached = False
        if stage.in_sequence:
            if event is not None and previous_at is not None:
                since = (event.occurred_at - previous_at).total_seconds()
                breached = sla_s is not None and since > sla_s
            elif event is None and previous_at is not None and not waiting_marked:
                # The next stage the order waits for: how long it has waited so far.
                waiting_marked = True
                since = (now - previous_at).total_seconds()
                breached = sla_s is not None and since > sla_s
                state = "stuck" if breached else "waiting"
            if event is not None:
                previous_at = event.occurred_at
        elif event is None:
            continue  # an out-of-sequence stage (cancelled) shows only when it happened
        out.append(
            {
                "stage": stage.name,
                "owner": stage.owner,
                "system": event.system if event else stage.owner,
                "reached_at": iso_utc(event.occurred_at) if event else None,
                "state": state,
                "since_previous_s": since,
                "sla_s": sla_s,
                "breached": breached,
            }
        )
    return out


def _unconfigured_stages(reached: dict[str, _Event]) -> list[dict[str, Any]]:
    """Stages of a workflow no longer configured: shown as reached, without SLAs."""
    return [
        {
            "stage": name,
            "owner": None,
            "system": event.system,
            "reached_at": iso_utc(event.occurred_at),
            "state": "reached",
            "since_previous_s": None,
            "sla_s": None,
            "breached": False,
        }
        for name, event in sorted(reached.items(), key=lambda item: item[1].occurred_at)
    ]


def exceptions(events: list[_Event], now: datetime) -> list[dict[str, Any]]:
    """Exceptions per the contract: a failed event opens one on its stage unless one is open;
    the next ok event for that stage resolves it."""
    open_by_stage: dict[tuple[str, str], int] = {}
    spans: list[tuple[_Event, datetime | None]] = []  # (opening event, resolved at)
    for event in events:
        key = (event.workflow, event.stage)
        if event.status == "failed" and key not in open_by_stage:
            open_by_stage[key] = len(spans)
            spans.append((event, None))
        elif event.status == "ok" and key in open_by_stage:
            index = open_by_stage.pop(key)
            spans[index] = (spans[index][0], event.occurred_at)
    return [
        {
            "workflow": opening.workflow,
            "stage": opening.stage,
            "system": opening.system,
            "opened_at": iso_utc(opening.occurred_at),
            "opened_by": opening.event_id,
            "resolved_at": iso_utc(resolved),
            "open": resolved is None,
            "age_s": ((resolved or now) - opening.occurred_at).total_seconds(),
        }
        for opening, resolved in spans
    ]
