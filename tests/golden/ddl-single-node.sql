CREATE DATABASE IF NOT EXISTS flowsight;

CREATE TABLE IF NOT EXISTS flowsight.schema_migrations
(
    id String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY id;

CREATE TABLE IF NOT EXISTS flowsight.events
(
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
    ingested_at DateTime64(3, 'UTC'),
    INDEX ingested_at_idx ingested_at TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (correlation_id, event_id);

CREATE TABLE IF NOT EXISTS flowsight.order_state
(
    workflow LowCardinality(String),
    correlation_id String,
    first_seen SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    channel SimpleAggregateFunction(max, String),
    reached SimpleAggregateFunction(minMap, Map(String, DateTime64(3, 'UTC'))),
    last_ok SimpleAggregateFunction(maxMap, Map(String, DateTime64(3, 'UTC'))),
    first_failed SimpleAggregateFunction(minMap, Map(String, DateTime64(3, 'UTC'))),
    last_failed SimpleAggregateFunction(maxMap, Map(String, DateTime64(3, 'UTC')))
)
ENGINE = AggregatingMergeTree
ORDER BY (workflow, correlation_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS flowsight.order_state_mv TO flowsight.order_state
AS SELECT
    workflow,
    correlation_id,
    occurred_at AS first_seen,
    occurred_at AS last_seen,
    toString(channel) AS channel,
    if(status = 'ok', map(toString(stage), occurred_at), CAST(map() AS Map(String, DateTime64(3, 'UTC')))) AS reached,
    reached AS last_ok,
    if(status = 'failed', map(toString(stage), occurred_at), CAST(map() AS Map(String, DateTime64(3, 'UTC')))) AS first_failed,
    first_failed AS last_failed
FROM flowsight.events;

CREATE TABLE IF NOT EXISTS flowsight.dead_letters
(
    id String,
    received_at DateTime64(3, 'UTC'),
    source LowCardinality(String),
    reason String,
    event_id String,
    payload String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (received_at, id);

CREATE TABLE IF NOT EXISTS flowsight.dead_letter_replays
(
    id String,
    replayed_at DateTime64(3, 'UTC'),
    outcome LowCardinality(String)
)
ENGINE = ReplacingMergeTree(replayed_at)
ORDER BY id;

CREATE TABLE IF NOT EXISTS flowsight.otel_traces
(
    Timestamp DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9, 'UTC'),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    CorrelationId String CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_correlation_id CorrelationId TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp));

CREATE TABLE IF NOT EXISTS flowsight.otel_traces_trace_id_ts
(
    TraceId String CODEC(ZSTD(1)),
    Start DateTime CODEC(Delta, ZSTD(1)),
    End DateTime CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toDate(Start)
ORDER BY (TraceId, Start);

CREATE MATERIALIZED VIEW IF NOT EXISTS flowsight.otel_traces_trace_id_ts_mv TO flowsight.otel_traces_trace_id_ts
AS SELECT
    TraceId,
    min(Timestamp) AS Start,
    max(Timestamp) AS End
FROM flowsight.otel_traces
WHERE TraceId != ''
GROUP BY TraceId;

CREATE TABLE IF NOT EXISTS flowsight.trace_correlations
(
    CorrelationId String,
    TraceId String,
    Start SimpleAggregateFunction(min, DateTime64(9, 'UTC')),
    End SimpleAggregateFunction(max, DateTime64(9, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (CorrelationId, TraceId);

CREATE MATERIALIZED VIEW IF NOT EXISTS flowsight.trace_correlations_mv TO flowsight.trace_correlations
AS SELECT
    CorrelationId,
    TraceId,
    Timestamp AS Start,
    Timestamp + toIntervalNanosecond(Duration) AS End
FROM flowsight.otel_traces
WHERE CorrelationId != '';

CREATE TABLE IF NOT EXISTS flowsight.system_minutes
(
    system LowCardinality(String),
    minute DateTime('UTC'),
    seen SimpleAggregateFunction(max, UInt8)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (system, minute);

CREATE MATERIALIZED VIEW IF NOT EXISTS flowsight.system_minutes_mv TO flowsight.system_minutes
AS SELECT
    toString(system) AS system,
    toStartOfMinute(occurred_at) AS minute,
    toUInt8(1) AS seen
FROM flowsight.events;

INSERT INTO flowsight.system_minutes 
SELECT
    toString(system) AS system,
    toStartOfMinute(occurred_at) AS minute,
    toUInt8(1) AS seen
FROM flowsight.events;

CREATE TABLE IF NOT EXISTS flowsight.trace_spans
(
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    Timestamp DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    CorrelationId String CODEC(ZSTD(1))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (TraceId, SpanId)
SETTINGS index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS flowsight.trace_spans_mv TO flowsight.trace_spans
AS SELECT TraceId, SpanId, ParentSpanId, ServiceName, SpanName, SpanKind, Timestamp, Duration, StatusCode, StatusMessage, CorrelationId
FROM flowsight.otel_traces
WHERE TraceId != '';

INSERT INTO flowsight.trace_spans SELECT TraceId, SpanId, ParentSpanId, ServiceName, SpanName, SpanKind, Timestamp, Duration, StatusCode, StatusMessage, CorrelationId
FROM flowsight.otel_traces
WHERE TraceId != '';

ALTER TABLE flowsight.events ADD COLUMN IF NOT EXISTS loaded_at DateTime64(3, 'UTC') DEFAULT ingested_at;

ALTER TABLE flowsight.events MATERIALIZE COLUMN loaded_at SETTINGS mutations_sync = 2;

ALTER TABLE flowsight.events MODIFY COLUMN loaded_at DateTime64(3, 'UTC') DEFAULT now64(3);

ALTER TABLE flowsight.events ADD INDEX IF NOT EXISTS loaded_at_idx loaded_at TYPE minmax GRANULARITY 1;

ALTER TABLE flowsight.events MATERIALIZE INDEX loaded_at_idx SETTINGS mutations_sync = 2;

ALTER TABLE flowsight.events MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;

ALTER TABLE flowsight.order_state MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;

ALTER TABLE flowsight.system_minutes MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;

ALTER TABLE flowsight.otel_traces MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;

ALTER TABLE flowsight.otel_traces_trace_id_ts MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;

ALTER TABLE flowsight.trace_correlations MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;

ALTER TABLE flowsight.trace_spans MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;

ALTER TABLE flowsight.dead_letters MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;

CREATE TABLE IF NOT EXISTS flowsight.slo_snapshots
(
    evaluated_at DateTime64(3, 'UTC'),
    slo LowCardinality(String),
    series String,
    good UInt64,
    total UInt64,
    sli Nullable(Float64),
    error_budget_remaining Nullable(Float64),
    burn_rates Map(String, Float64),
    status LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(evaluated_at)
ORDER BY (slo, series, evaluated_at);

CREATE TABLE IF NOT EXISTS flowsight.flow_snapshots
(
    evaluated_at DateTime64(3, 'UTC'),
    workflow LowCardinality(String),
    in_flight UInt64,
    completed UInt64,
    due UInt64,
    completed_on_time UInt64,
    completion_rate Nullable(Float64),
    stuck UInt64,
    exceptions_open UInt64,
    stuck_by_stage Map(String, UInt64)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(evaluated_at)
ORDER BY (workflow, evaluated_at);

CREATE TABLE IF NOT EXISTS flowsight.alert_state
(
    fingerprint String,
    alertname LowCardinality(String),
    system LowCardinality(String),
    labels Map(String, String),
    annotations Map(String, String),
    rule_kind LowCardinality(String),
    system_health Bool,
    state LowCardinality(String),
    value Float64,
    active_since DateTime64(3, 'UTC'),
    last_active_at DateTime64(3, 'UTC'),
    fired_at Nullable(DateTime64(3, 'UTC')),
    resolved_at Nullable(DateTime64(3, 'UTC')),
    suppressed_by String,
    silenced_by Array(String),
    updated_at DateTime64(3, 'UTC'),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY fingerprint;

CREATE TABLE IF NOT EXISTS flowsight.alert_notifications
(
    receiver LowCardinality(String),
    fingerprint String,
    group_key String,
    status LowCardinality(String),
    sent_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(sent_at)
ORDER BY (receiver, fingerprint);

CREATE TABLE IF NOT EXISTS flowsight.silences
(
    id String,
    matchers String,
    starts_at DateTime64(3, 'UTC'),
    ends_at DateTime64(3, 'UTC'),
    created_by String,
    comment String,
    created_at DateTime64(3, 'UTC'),
    expired_at Nullable(DateTime64(3, 'UTC')),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY id;

