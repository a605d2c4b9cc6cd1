"""The lifecycle event contract (v1): validating decoded events into columns.

Validation is the hot path of ingest, so it works on plain dicts and appends straight into
column lists that become one Arrow table per request; a bad event yields one error that names
every faulty field, and never stops the rest of the batch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from flowsight.workflows import WorkflowCatalog

MAX_ID_CHARS = 128
MAX_CHANNEL_CHARS = 64
MAX_ATTRIBUTES = 64
MAX_ATTRIBUTE_KEY_CHARS = 128
MAX_ATTRIBUTE_VALUE_CHARS = 4096

FIELDS = frozenset(
    {
        "event_id",
        "correlation_id",
        "workflow",
        "stage",
        "system",
        "occurred_at",
        "status",
        "channel",
        "trace_id",
        "span_id",
        "attributes",
    }
)
STATUSES = ("ok", "failed")

_SYSTEM = re.compile(r"[a-z0-9_.-]{1,64}")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

EVENT_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("correlation_id", pa.string(), nullable=False),
        pa.field("workflow", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("system", pa.string(), nullable=False),
        pa.field("occurred_at", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("trace_id", pa.string(), nullable=False),
        pa.field("span_id", pa.string(), nullable=False),
        pa.field("attributes", pa.map_(pa.string(), pa.string()), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("ingested_at", pa.timestamp("ms", tz="UTC"), nullable=False),
    ]
)
"""Column layout of a validated batch; the events tables take exactly these columns."""


def parse_timestamp(value: Any) -> int | None:
    """Milliseconds since the epoch of an RFC 3339 timestamp with a UTC offset, else None."""
    if not isinstance(value, str) or len(value) < 20 or value[10] not in "Tt ":
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return (parsed - _EPOCH) // _MS


def _text(event: dict[str, Any], name: str, problems: list[str], limit: int) -> str:
    value = event.get(name)
    if value is None:
        problems.append(f"{name}: required")
    elif not isinstance(value, str):
        problems.append(f"{name}: must be a string")
    elif not 1 <= len(value) <= limit:
        problems.append(f"{name}: must be 1 to {limit} characters, got {len(value)}")
    else:
        return value
    return ""


def _attributes(value: Any, problems: list[str]) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, dict):
        problems.append("attributes: must be an object of string to string")
        return []
    if len(value) > MAX_ATTRIBUTES:
        problems.append(f"attributes: at most {MAX_ATTRIBUTES} entries, got {len(value)}")
        return []
    items = []
    for key, item in value.items():
        if len(key) > MAX_ATTRIBUTE_KEY_CHARS:
            problems.append(
                f"attributes: key {key[:32]!r}... longer than {MAX_ATTRIBUTE_KEY_CHARS} characters"
            )
        elif not isinstance(item, str):
            problems.append(f"attributes.{key}: must be a string")
        elif len(item) > MAX_ATTRIBUTE_VALUE_CHARS:
            problems.append(f"attributes.{key}: longer than {MAX_ATTRIBUTE_VALUE_CHARS} characters")
        else:
            items.append((key, item))
    return items


@dataclass
class EventBatch:
    """Validated events as columns, plus the input rows that failed with their errors."""

    catalog: WorkflowCatalog
    source: str
    ingested_at_ms: int
    columns: dict[str, list[Any]] = field(
        default_factory=lambda: {
            name: [] for name in EVENT_SCHEMA.names if name not in ("source", "ingested_at", "attributes")
        }
    )
    attribute_offsets: list[int] = field(default_factory=lambda: [0])
    attribute_keys: list[str] = field(default_factory=list)
    attribute_values: list[str] = field(default_factory=list)
    errors: list[tuple[int, str, str]] = field(default_factory=list)
    """(index in the request, event_id if readable, error text)"""
    rejected_payloads: list[Any] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.columns["event_id"])

    def add(self, index: int, event: Any) -> bool:
        """Validate one decoded event and append it; returns False (recording why) when it fails."""
        if not isinstance(event, dict):
            self.reject(index, "", event, "event: must be a JSON object")
            return False
        problems: list[str] = []
        event_id = _text(event, "event_id", problems, MAX_ID_CHARS)
        correlation_id = _text(event, "correlation_id", problems, MAX_ID_CHARS)
        workflow_name = event.get("workflow")
        stage = event.get("stage")
        workflow = self.catalog.get(workflow_name) if isinstance(workflow_name, str) else None
        if workflow_name is None:
            problems.append("workflow: required")
        elif workflow is None:
            problems.append(
                f"workflow: unknown workflow {str(workflow_name)[:64]!r} (configured: {', '.join(self.catalog.names())})"
            )
        if stage is None:
            problems.append("stage: required")
        elif not isinstance(stage, str):
            problems.append("stage: must be a string")
        elif workflow is not None and not workflow.has_stage(stage):
            problems.append(f"stage: {stage[:64]!r} is not a stage of workflow {workflow.name!r}")
        system = event.get("system")
        if system is None:
            problems.append("system: required")
        elif not isinstance(system, str) or not _SYSTEM.fullmatch(system):
            problems.append("system: must match [a-z0-9_.-]{1,64}")
        occurred = event.get("occurred_at")
        occurred_ms = parse_timestamp(occurred)
        if occurred is None:
            problems.append("occurred_at: required")
        elif occurred_ms is None:
            problems.append(
                f"occurred_at: must be an RFC 3339 timestamp with offset, e.g. 2026-11-26T10:00:00Z, got {str(occurred)[:40]!r}"
            )
        status = event.get("status", "ok")
        if status not in STATUSES:
            problems.append(f"status: must be 'ok' or 'failed', got {str(status)[:32]!r}")
        channel = event.get("channel") or ""
        if not isinstance(channel, str) or len(channel) > MAX_CHANNEL_CHARS:
            problems.append(f"channel: must be a string of at most {MAX_CHANNEL_CHARS} characters")
        trace_id = event.get("trace_id") or ""
        if trace_id and not (isinstance(trace_id, str) and _TRACE_ID.fullmatch(trace_id.lower())):
            problems.append("trace_id: must be 32 hex characters")
        span_id = event.get("span_id") or ""
        if span_id and not (isinstance(span_id, str) and _SPAN_ID.fullmatch(span_id.lower())):
            problems.append("span_id: must be 16 hex characters")
        attributes = _attributes(event.get("attributes"), problems)
        unknown = event.keys() - FIELDS
        if unknown:
            problems.extend(f"{name[:64]}: unknown field" for name in sorted(unknown))
        if problems:
            self.reject(index, event_id, event, "; ".join(problems))
            return False
        cols = self.columns
        cols["event_id"].append(event_id)
        cols["correlation_id"].append(correlation_id)
        cols["workflow"].append(workflow_name)
        cols["stage"].append(stage)
        cols["system"].append(system)
        cols["occurred_at"].append(occurred_ms)
        cols["status"].append(status)
        cols["channel"].append(channel)
        cols["trace_id"].append(trace_id.lower())
        cols["span_id"].append(span_id.lower())
        if attributes:
            for key, value in attributes:
                self.attribute_keys.append(key)
                self.attribute_values.append(value)
        self.attribute_offsets.append(len(self.attribute_keys))
        return True

    def reject(self, index: int, event_id: str, payload: Any, error: str) -> None:
        """Record input that failed; it becomes a dead letter."""
        self.errors.append((index, event_id, error))
        self.rejected_payloads.append(payload)

    def to_arrow(self) -> pa.Table:
        """The accepted events as an Arrow table of :data:`EVENT_SCHEMA`."""
        n = len(self)
        arrays = {name: pa.array(values, type=EVENT_SCHEMA.field(name).type) for name, values in self.columns.items()}
        arrays["attributes"] = pa.MapArray.from_arrays(
            pa.array(self.attribute_offsets, pa.int32()),
            pa.array(self.attribute_keys, pa.string()),
            pa.array(self.attribute_values, pa.string()),
        )
        arrays["source"] = pa.array([self.source] * n, type=pa.string())
        arrays["ingested_at"] = pa.array([self.ingested_at_ms] * n, type=pa.timestamp("ms", tz="UTC"))
        return pa.Table.from_arrays([arrays[name] for name in EVENT_SCHEMA.names], schema=EVENT_SCHEMA)
