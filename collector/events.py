"""The lifecycle event contract (v1): validating decoded events into columns.

Validation is the hot path of ingest, so it works on plain dicts and appends straight into
column lists that become one Arrow table per request; a bad event yields one error that names
every faulty field, and never stops the rest of the batch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from flowsight.workflows import WorkflowCatalog


@dataclass(frozen=True)
class EventLimits:
    """The bounds an event must keep (each a setting of the service)."""

    max_id_chars: int = 128
    max_channel_chars: int = 64
    max_attributes: int = 64
    max_attribute_key_chars: int = 128
    max_attribute_value_chars: int = 4096
    max_future_ms: int | None = None
    """How far past the time of ingestion ``occurred_at`` may be; None: no bound."""


DEFAULT_LIMITS = EventLimits()

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


_VALID_SYSTEMS: set[str] = set()
_MAX_REMEMBERED_SYSTEMS = 4096


def _remember_system(system: str) -> bool:
    """Whether ``system`` is a valid name; valid names are remembered (there are few)."""
    if not _SYSTEM.fullmatch(system):
        return False
    if len(_VALID_SYSTEMS) < _MAX_REMEMBERED_SYSTEMS:
        _VALID_SYSTEMS.add(system)
    return True


def _simple_attributes(value: Any, limits: EventLimits) -> bool:
    """A dict of few short string keys and string values (the common case)."""
    if type(value) is not dict or len(value) > limits.max_attributes:
        return False
    for key, item in value.items():
        if (
            len(key) > limits.max_attribute_key_chars
            or type(item) is not str
            or len(item) > limits.max_attribute_value_chars
        ):
            return False
    return True


def _attributes(value: Any, problems: list[str], limits: EventLimits) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, dict):
        problems.append("attributes: must be an object of string to string")
        return []
    if len(value) > limits.max_attributes:
        problems.append(f"attributes: at most {limits.max_attributes} entries, got {len(value)}")
        return []
    items = []
    for key, item in value.items():
        if len(key) > limits.max_attribute_key_chars:
            problems.append(
                f"attributes: key {key[:32]!r}... longer than {limits.max_attribute_key_chars} characters"
            )
        elif not isinstance(item, str):
            problems.append(f"attributes.{key}: must be a string")
        elif len(item) > limits.max_attribute_value_chars:
            problems.append(f"attributes.{key}: longer than {limits.max_attribute_value_chars} characters")
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
    limits: EventLimits = DEFAULT_LIMITS
    systems: frozenset[str] | None = None
    """The systems the sender may report for (its token's), or None for any."""
    sender: str = ""
    """The sender's name, for errors about what it may not send."""

    def __len__(self) -> int:
        return len(self.columns["event_id"])

    def __post_init__(self) -> None:
        self._pairs = {(wf.name, stage.name) for wf in self.catalog for stage in wf.stages}
        self._appenders = tuple(column.append for column in self._lists())
        limits = self.limits
        self._max_id = limits.max_id_chars
        self._max_channel = limits.max_channel_chars
        future = limits.max_future_ms
        self._latest_ms = self.ingested_at_ms + future if future is not None else 1 << 62

    def add(self, index: int, event: Any) -> bool:
        """Validate one decoded event and append it; returns False (recording why) when it fails.

        The common case, a valid event, takes a straight path of cheap checks; anything it is
        not sure of goes to :meth:`_add_checked`, which applies every rule and names each
        faulty field. The fast path accepts nothing the checked path would reject.
        """
        if type(event) is dict and FIELDS.issuperset(event):
            get = event.get
            event_id, correlation_id = get("event_id"), get("correlation_id")
            workflow, stage, system = get("workflow"), get("stage"), get("system")
            status = get("status", "ok")
            channel = get("channel") or ""
            trace_id, span_id = get("trace_id") or "", get("span_id") or ""
            attributes = get("attributes")
            occurred_ms = parse_timestamp(get("occurred_at"))
            if (
                type(event_id) is str
                and 0 < len(event_id) <= self._max_id
                and type(correlation_id) is str
                and 0 < len(correlation_id) <= self._max_id
                and type(workflow) is str
                and type(stage) is str
                and (workflow, stage) in self._pairs
                and type(system) is str
                and (system in _VALID_SYSTEMS or _remember_system(system))
                and (self.systems is None or system in self.systems)
                and occurred_ms is not None
                and occurred_ms <= self._latest_ms
                and (status == "ok" or status == "failed")
                and type(channel) is str
                and len(channel) <= self._max_channel
                and (
                    not trace_id
                    or (type(trace_id) is str and _TRACE_ID.fullmatch(trace_id := trace_id.lower()))
                )
                and (not span_id or (type(span_id) is str and _SPAN_ID.fullmatch(span_id := span_id.lower())))
                and (attributes is None or _simple_attributes(attributes, self.limits))
            ):
                self._append(
                    event_id,
                    correlation_id,
                    workflow,
                    stage,
                    system,
                    occurred_ms,
                    status,
                    channel,
                    trace_id,
                    span_id,
                )
                if attributes:
                    self.attribute_keys.extend(attributes.keys())
                    self.attribute_values.extend(attributes.values())
                self.attribute_offsets.append(len(self.attribute_keys))
                return True
        return self._add_checked(index, event)

    def _append(
        self,
        event_id: str,
        correlation_id: str,
        workflow: str,
        stage: str,
        system: str,
        occurred_ms: int,
        status: str,
        channel: str,
        trace_id: str,
        span_id: str,
    ) -> None:
        a = self._appenders
        a[0](event_id)
        a[1](correlation_id)
        a[2](workflow)
        a[3](stage)
        a[4](system)
        a[5](occurred_ms)
        a[6](status)
        a[7](channel)
        a[8](trace_id)
        a[9](span_id)

    def _lists(self) -> tuple[list[Any], ...]:
        cols = self.columns
        return (
            cols["event_id"],
            cols["correlation_id"],
            cols["workflow"],
            cols["stage"],
            cols["system"],
            cols["occurred_at"],
            cols["status"],
            cols["channel"],
            cols["trace_id"],
            cols["span_id"],
        )

    def _add_checked(self, index: int, event: Any) -> bool:
        if not isinstance(event, dict):
            self.reject(index, "", event, "event: must be a JSON object")
            return False
        problems: list[str] = []
        event_id = _text(event, "event_id", problems, self._max_id)
        correlation_id = _text(event, "correlation_id", problems, self._max_id)
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
        elif self.systems is not None and system not in self.systems:
            problems.append(
                f"system: {self.sender or 'this sender'} may send events of {', '.join(sorted(self.systems))} "
                f"only, not {system!r}"
            )
        occurred = event.get("occurred_at")
        occurred_ms = parse_timestamp(occurred)
        if occurred is None:
            problems.append("occurred_at: required")
        elif occurred_ms is None:
            problems.append(
                f"occurred_at: must be an RFC 3339 timestamp with offset, e.g. 2026-11-26T10:00:00Z, got {str(occurred)[:40]!r}"
            )
        elif occurred_ms > self._latest_ms:
            ahead = (occurred_ms - self.ingested_at_ms) // 1000
            limit = (self._latest_ms - self.ingested_at_ms) // 1000
            problems.append(f"occurred_at: {ahead} s in the future; at most {limit} s ahead is accepted")
        status = event.get("status", "ok")
        if status not in STATUSES:
            problems.append(f"status: must be 'ok' or 'failed', got {str(status)[:32]!r}")
        channel = event.get("channel") or ""
        if not isinstance(channel, str) or len(channel) > self._max_channel:
            problems.append(f"channel: must be a string of at most {self._max_channel} characters")
        trace_id = event.get("trace_id") or ""
        if trace_id and not (isinstance(trace_id, str) and _TRACE_ID.fullmatch(trace_id.lower())):
            problems.append("trace_id: must be 32 hex characters")
        span_id = event.get("span_id") or ""
        if span_id and not (isinstance(span_id, str) and _SPAN_ID.fullmatch(span_id.lower())):
            problems.append("span_id: must be 16 hex characters")
        attributes = _attributes(event.get("attributes"), problems, self.limits)
        unknown = event.keys() - FIELDS
        if unknown:
            problems.extend(f"{name[:64]}: unknown field" for name in sorted(unknown))
        if problems:
            self.reject(index, event_id, event, "; ".join(problems))
            return False
        assert occurred_ms is not None
        self._append(
            event_id,
            correlation_id,
            str(workflow_name),
            str(stage),
            str(system),
            occurred_ms,
            status,
            channel,
            trace_id.lower(),
            span_id.lower(),
        )
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
        return batches_to_arrow([self])


def batches_to_arrow(batches: Sequence[EventBatch]) -> pa.Table:
    """The accepted events of several batches, in order, as one Arrow table of
    :data:`EVENT_SCHEMA`: one array a column however many batches (the writer merges the small
    requests of a group commit here, off the event loop)."""
    first = batches[0]
    if len(batches) == 1:
        columns, offsets = first.columns, first.attribute_offsets
        keys, values = first.attribute_keys, first.attribute_values
    else:
        columns = {name: [v for b in batches for v in b.columns[name]] for name in first.columns}
        offsets, keys, values = [0], [], []
        for b in batches:
            base = len(keys)
            offsets.extend(base + o for o in b.attribute_offsets[1:])
            keys.extend(b.attribute_keys)
            values.extend(b.attribute_values)
    arrays = {
        name: pa.array(values_, type=EVENT_SCHEMA.field(name).type) for name, values_ in columns.items()
    }
    arrays["attributes"] = pa.MapArray.from_arrays(
        pa.array(offsets, pa.int32()), pa.array(keys, pa.string()), pa.array(values, pa.string())
    )
    sources: list[str] = []
    ingested: list[int] = []
    for b in batches:
        sources.extend([b.source] * len(b))
        ingested.extend([b.ingested_at_ms] * len(b))
    arrays["source"] = pa.array(sources, type=pa.string())
    arrays["ingested_at"] = pa.array(ingested, type=pa.timestamp("ms", tz="UTC"))
    return pa.Table.from_arrays([arrays[name] for name in EVENT_SCHEMA.names], schema=EVENT_SCHEMA)
