"""The collector's ClickHouse tables and their migrations.

- ``events``: every accepted lifecycle event, one row per event_id (ReplacingMergeTree keyed by
  correlation and event id, so an order's events are one primary-key range).
- ``events`` -> ``order_state_mv`` -> ``order_state``: per-order state as min/max
  states of stage times. Min and max are idempotent, so a resent event changes nothing even
  before the dedup index has seen it; this is what makes stage times, completion, stuck
  detection and exceptions cheap to read with millions of orders.
- ``dead_letters`` and ``dead_letter_replays``: rejected input with its reason, and what
  became of it on replay.

The writer inserts into ``events`` once per commit; the view feeds ``order_state`` in the same
insert. Should a crash land between the two parts being written, the writer re-applies recent
events to ``order_state`` at start (min/max again, so harmless), see
:mod:`flowsight.collector.writer`. Dedup reads
``xxHash64(event_id)`` of ``events`` once at start (see :mod:`flowsight.collector.seen_ids`).
"""

from __future__ import annotations

from collections.abc import Sequence

from flowsight.ddl import MaterializedView, Schema, Table
from flowsight.migrations import Migration

EVENT_COLUMNS = """
    event_id String,
    correlation_id String,
    workflow LowCardinality(String),
    stage LowCardinality(String),
    system LowCardinality(String),
    occurred_at DateTime64(3, 'UTC'),
    status LowCardinality(String),
    channel LowCardinality(String),
    trace_id String,
    span_id String,
    attributes Map(String, String),
    source LowCardinality(String),
    ingested_at DateTime64(3, 'UTC')
"""

EVENTS = Table(
    name="events",
    columns=EVENT_COLUMNS,
    engine="ReplacingMergeTree",
    partition_by="toYYYYMM(occurred_at)",
    order_by="(correlation_id, event_id)",
    sharding_key="cityHash64(correlation_id)",
    indexes="INDEX ingested_at_idx ingested_at TYPE minmax GRANULARITY 1",
)

_TS = "DateTime64(3, 'UTC')"
ORDER_STATE = Table(
    name="order_state",
    columns=f"""
    workflow LowCardinality(String),
    correlation_id String,
    first_seen SimpleAggregateFunction(min, {_TS}),
    last_seen SimpleAggregateFunction(max, {_TS}),
    channel SimpleAggregateFunction(max, String),
    reached SimpleAggregateFunction(minMap, Map(String, {_TS})),
    last_ok SimpleAggregateFunction(maxMap, Map(String, {_TS})),
    first_failed SimpleAggregateFunction(minMap, Map(String, {_TS})),
    last_failed SimpleAggregateFunction(maxMap, Map(String, {_TS}))
""",
    engine="AggregatingMergeTree",
    order_by="(workflow, correlation_id)",
    sharding_key="cityHash64(correlation_id)",
)

ORDER_STATE_MV = MaterializedView(
    name="order_state_mv",
    source="events",
    target="order_state",
    select=f"""
SELECT
    workflow,
    correlation_id,
    occurred_at AS first_seen,
    occurred_at AS last_seen,
    toString(channel) AS channel,
    if(status = 'ok', map(toString(stage), occurred_at), CAST(map() AS Map(String, {_TS}))) AS reached,
    reached AS last_ok,
    if(status = 'failed', map(toString(stage), occurred_at), CAST(map() AS Map(String, {_TS}))) AS first_failed,
    first_failed AS last_failed
FROM {{source}}
""",
)

DEAD_LETTERS = Table(
    name="dead_letters",
    columns="""
    id String,
    received_at DateTime64(3, 'UTC'),
    source LowCardinality(String),
    reason String,
    event_id String,
    payload String
""",
    engine="ReplacingMergeTree",
    partition_by="toYYYYMM(received_at)",
    order_by="(received_at, id)",
    sharding_key="cityHash64(id)",
)

DEAD_LETTER_REPLAYS = Table(
    name="dead_letter_replays",
    columns="""
    id String,
    replayed_at DateTime64(3, 'UTC'),
    outcome LowCardinality(String)
""",
    engine="ReplacingMergeTree(replayed_at)",
    order_by="id",
    sharding_key="cityHash64(id)",
)

MIGRATIONS = [
    Migration.creating(
        "collector/0001_events",
        EVENTS,
        ORDER_STATE,
        ORDER_STATE_MV,
    ),
    Migration.creating("collector/0002_dead_letters", DEAD_LETTERS, DEAD_LETTER_REPLAYS),
]

# -- OTLP spans --------------------------------------------------------------------------------
# otel_traces follows the OpenTelemetry Collector ClickHouse exporter's layout (so Grafana's
# ClickHouse plugin reads it, and an exporter writing that table can feed flowsight), plus the
# correlation ID found on the span or its resource.

_ATTRS = "Map(LowCardinality(String), String)"
OTEL_TRACES = Table(
    name="otel_traces",
    columns=f"""
    Timestamp DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes {_ATTRS} CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes {_ATTRS} CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9, 'UTC'),
        Name LowCardinality(String),
        Attributes {_ATTRS}
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes {_ATTRS}
    ) CODEC(ZSTD(1)),
    CorrelationId String CODEC(ZSTD(1))
""",
    indexes="""INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_correlation_id CorrelationId TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1""",
    engine="MergeTree",
    partition_by="toDate(Timestamp)",
    order_by="(ServiceName, SpanName, toDateTime(Timestamp))",
    sharding_key="cityHash64(TraceId)",
)

OTEL_TRACES_TRACE_ID_TS = Table(
    name="otel_traces_trace_id_ts",
    columns="""
    TraceId String CODEC(ZSTD(1)),
    Start DateTime CODEC(Delta, ZSTD(1)),
    End DateTime CODEC(Delta, ZSTD(1))
""",
    indexes="INDEX idx_trace_id TraceId TYPE bloom_filter(0.01) GRANULARITY 1",
    engine="MergeTree",
    partition_by="toDate(Start)",
    order_by="(TraceId, Start)",
    sharding_key="cityHash64(TraceId)",
)

OTEL_TRACES_TRACE_ID_TS_MV = MaterializedView(
    name="otel_traces_trace_id_ts_mv",
    source="otel_traces",
    target="otel_traces_trace_id_ts",
    select="""
SELECT
    TraceId,
    min(Timestamp) AS Start,
    max(Timestamp) AS End
FROM {source}
WHERE TraceId != ''
GROUP BY TraceId
""",
)

TRACE_CORRELATIONS = Table(
    name="trace_correlations",
    columns="""
    CorrelationId String,
    TraceId String,
    Start SimpleAggregateFunction(min, DateTime64(9, 'UTC')),
    End SimpleAggregateFunction(max, DateTime64(9, 'UTC'))
""",
    engine="AggregatingMergeTree",
    order_by="(CorrelationId, TraceId)",
    sharding_key="cityHash64(CorrelationId)",
)
"""Which traces carry which correlation ID, and when: the order -> traces step of a timeline."""

TRACE_CORRELATIONS_MV = MaterializedView(
    name="trace_correlations_mv",
    source="otel_traces",
    target="trace_correlations",
    select="""
SELECT
    CorrelationId,
    TraceId,
    Timestamp AS Start,
    Timestamp + toIntervalNanosecond(Duration) AS End
FROM {source}
WHERE CorrelationId != ''
""",
)

MIGRATIONS.append(
    Migration.creating(
        "collector/0003_otel_traces",
        OTEL_TRACES,
        OTEL_TRACES_TRACE_ID_TS,
        OTEL_TRACES_TRACE_ID_TS_MV,
        TRACE_CORRELATIONS,
        TRACE_CORRELATIONS_MV,
    )
)

# -- per-system activity by minute ---------------------------------------------------------------

SYSTEM_MINUTES = Table(
    name="system_minutes",
    columns="""
    system LowCardinality(String),
    minute DateTime('UTC'),
    seen SimpleAggregateFunction(max, UInt8)
""",
    engine="AggregatingMergeTree",
    partition_by="toYYYYMM(minute)",
    order_by="(system, minute)",
    sharding_key="cityHash64(system)",
)
"""The minutes in which each system reported a lifecycle event (idempotent: a max of a flag),
so freshness reads thousands of rows per system, not every event."""

SYSTEM_MINUTES_MV = MaterializedView(
    name="system_minutes_mv",
    source="events",
    target="system_minutes",
    select="""
SELECT
    toString(system) AS system,
    toStartOfMinute(occurred_at) AS minute,
    toUInt8(1) AS seen
FROM {source}
""",
)


def _system_minutes(schema: Schema) -> list[str]:
    backfill = f"INSERT INTO {schema.table('system_minutes')} " + SYSTEM_MINUTES_MV.select.format(
        source=schema.table("events")
    )
    return [*schema.create(SYSTEM_MINUTES), *schema.create(SYSTEM_MINUTES_MV), backfill]


MIGRATIONS.append(Migration("collector/0004_system_minutes", _system_minutes))

# -- spans by trace, for timelines -----------------------------------------------------------------

TRACE_SPAN_COLUMNS = ("TraceId", "SpanId", "ParentSpanId", "ServiceName", "SpanName", "SpanKind", "Timestamp",
                      "Duration", "StatusCode", "StatusMessage", "CorrelationId")  # fmt: skip


def _declarations(columns: str, names: Sequence[str]) -> str:
    """The declarations of ``names`` (top-level columns) in a table's column text, in that order."""
    found: dict[str, str] = {}
    for line in columns.strip().splitlines():
        found.setdefault(line.split()[0], line.strip().rstrip(","))  # the first: not a Nested field
    return "\n    " + ",\n    ".join(found[name] for name in names) + "\n"


TRACE_SPANS = Table(
    name="trace_spans",
    columns=_declarations(OTEL_TRACES.columns, TRACE_SPAN_COLUMNS),
    engine="ReplacingMergeTree",
    partition_by="toYYYYMM(Timestamp)",
    order_by="(TraceId, SpanId)",
    sharding_key="cityHash64(TraceId)",
    settings="index_granularity = 1024",
)
"""The columns a timeline shows of each span, ordered by trace: a timeline reads every span of
its traces from a few small granules, where ``otel_traces`` (ordered by service, name and time,
the exporter's layout for trace search) needs its bloom filters and a time range."""

TRACE_SPANS_MV = MaterializedView(
    name="trace_spans_mv",
    source="otel_traces",
    target="trace_spans",
    select=f"SELECT {', '.join(TRACE_SPAN_COLUMNS)}\nFROM {{source}}\nWHERE TraceId != ''",
)


def _trace_spans(schema: Schema) -> list[str]:
    backfill = f"INSERT INTO {schema.table('trace_spans')} " + TRACE_SPANS_MV.select.format(
        source=schema.table("otel_traces")
    )
    return [*schema.create(TRACE_SPANS), *schema.create(TRACE_SPANS_MV), backfill]


MIGRATIONS.append(Migration("collector/0005_trace_spans", _trace_spans))

# -- when each event was loaded ---------------------------------------------------------------------
# Events reach ClickHouse from the write-ahead log, after an outage long after they were
# acknowledged (``ingested_at``). ``loaded_at`` is the database's own clock at the insert: other
# collectors learn the ids stored since they last looked by it, and the view repair at start
# re-applies the events loaded last, whatever their ingest time.

LOADED_AT = "loaded_at DateTime64(3, 'UTC')"


def _loaded_at(schema: Schema) -> list[str]:
    local, on_cluster = schema.local("events"), schema.on_cluster
    statements = [
        # Rows stored before this column get their ingest time, written into their parts, so the
        # default that follows (the insert's time) is never computed for them at read time.
        f"ALTER TABLE {local}{on_cluster} ADD COLUMN IF NOT EXISTS {LOADED_AT} DEFAULT ingested_at",
        f"ALTER TABLE {local}{on_cluster} MATERIALIZE COLUMN loaded_at SETTINGS mutations_sync = 2",
        f"ALTER TABLE {local}{on_cluster} MODIFY COLUMN {LOADED_AT} DEFAULT now64(3)",
        f"ALTER TABLE {local}{on_cluster} ADD INDEX IF NOT EXISTS loaded_at_idx loaded_at TYPE minmax GRANULARITY 1",
        f"ALTER TABLE {local}{on_cluster} MATERIALIZE INDEX loaded_at_idx SETTINGS mutations_sync = 2",
    ]
    if schema.cluster:
        statements.append(
            f"ALTER TABLE {schema.table('events')}{on_cluster} ADD COLUMN IF NOT EXISTS {LOADED_AT} DEFAULT now64(3)"
        )
    return statements


MIGRATIONS.append(Migration("collector/0006_events_loaded_at", _loaded_at))

# -- inserts reach the disk before the log lets them go ----------------------------------------------
# The loader deletes a write-ahead-log segment once its inserts returned; by default ClickHouse
# leaves a new part in the page cache, which a power cut loses. With the loader's few large
# inserts a second, an fsync of each part costs little.

LOADED_TABLES = ("events", "order_state", "system_minutes", "otel_traces", "otel_traces_trace_id_ts",
                 "trace_correlations", "trace_spans", "dead_letters")  # fmt: skip


def _fsync_parts(schema: Schema) -> list[str]:
    return [
        f"ALTER TABLE {schema.local(name)}{schema.on_cluster} "
        "MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1"
        for name in LOADED_TABLES
    ]


MIGRATIONS.append(Migration("collector/0007_fsync_parts", _fsync_parts))
