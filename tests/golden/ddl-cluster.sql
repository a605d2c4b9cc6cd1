CREATE DATABASE IF NOT EXISTS flowsight ON CLUSTER retail;

CREATE TABLE IF NOT EXISTS flowsight.schema_migrations_local ON CLUSTER retail
(
    id String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/flowsight/schema_migrations_local', '{replica}')
ORDER BY id;

CREATE TABLE IF NOT EXISTS flowsight.schema_migrations ON CLUSTER retail AS flowsight.schema_migrations_local
ENGINE = Distributed(retail, flowsight, schema_migrations_local, rand());

CREATE TABLE IF NOT EXISTS flowsight.events_local ON CLUSTER retail
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/flowsight/events_local', '{replica}')
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (correlation_id, event_id);

CREATE TABLE IF NOT EXISTS flowsight.events ON CLUSTER retail AS flowsight.events_local
ENGINE = Distributed(retail, flowsight, events_local, cityHash64(correlation_id));

CREATE TABLE IF NOT EXISTS flowsight.order_state_local ON CLUSTER retail
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
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/flowsight/order_state_local', '{replica}')
ORDER BY (workflow, correlation_id);

CREATE TABLE IF NOT EXISTS flowsight.order_state ON CLUSTER retail AS flowsight.order_state_local
ENGINE = Distributed(retail, flowsight, order_state_local, cityHash64(correlation_id));

CREATE MATERIALIZED VIEW IF NOT EXISTS flowsight.order_state_mv_local ON CLUSTER retail TO flowsight.order_state_local
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
FROM flowsight.events_local;

CREATE TABLE IF NOT EXISTS flowsight.dead_letters_local ON CLUSTER retail
(
    id String,
    received_at DateTime64(3, 'UTC'),
    source LowCardinality(String),
    reason String,
    event_id String,
    payload String
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/flowsight/dead_letters_local', '{replica}')
PARTITION BY toYYYYMM(received_at)
ORDER BY (received_at, id);

CREATE TABLE IF NOT EXISTS flowsight.dead_letters ON CLUSTER retail AS flowsight.dead_letters_local
ENGINE = Distributed(retail, flowsight, dead_letters_local, cityHash64(id));

CREATE TABLE IF NOT EXISTS flowsight.dead_letter_replays_local ON CLUSTER retail
(
    id String,
    replayed_at DateTime64(3, 'UTC'),
    outcome LowCardinality(String)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/flowsight/dead_letter_replays_local', '{replica}', replayed_at)
ORDER BY id;

CREATE TABLE IF NOT EXISTS flowsight.dead_letter_replays ON CLUSTER retail AS flowsight.dead_letter_replays_local
ENGINE = Distributed(retail, flowsight, dead_letter_replays_local, cityHash64(id));

CREATE TABLE IF NOT EXISTS flowsight.otel_traces_local ON CLUSTER retail
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
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/flowsight/otel_traces_local', '{replica}')
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp));

CREATE TABLE IF NOT EXISTS flowsight.otel_traces ON CLUSTER retail AS flowsight.otel_traces_local
ENGINE = Distributed(retail, flowsight, otel_traces_local, cityHash64(TraceId));

CREATE TABLE IF NOT EXISTS flowsight.otel_traces_trace_id_ts_local ON CLUSTER retail
(
    TraceId String CODEC(ZSTD(1)),
    Start DateTime CODEC(Delta, ZSTD(1)),
    End DateTime CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/flowsight/otel_traces_trace_id_ts_local', '{replica}')
PARTITION BY toDate(Start)
ORDER BY (TraceId, Start);

CREATE TABLE IF NOT EXISTS flowsight.otel_traces_trace_id_ts ON CLUSTER retail AS flowsight.otel_traces_trace_id_ts_local
ENGINE = Distributed(retail, flowsight, otel_traces_trace_id_ts_local, cityHash64(TraceId));

CREATE MATERIALIZED VIEW IF NOT EXISTS flowsight.otel_traces_trace_id_ts_mv_local ON CLUSTER retail TO flowsight.otel_traces_trace_id_ts_local
AS SELECT
    TraceId,
    min(Timestamp) AS Start,
    max(Timestamp) AS End
FROM flowsight.otel_traces_local
WHERE TraceId != ''
GROUP BY TraceId;

CREATE TABLE IF NOT EXISTS flowsight.trace_correlations_local ON CLUSTER retail
(
    CorrelationId String,
    TraceId String,
    Start SimpleAggregateFunction(min, DateTime64(9, 'UTC')),
    End SimpleAggregateFunction(max, DateTime64(9, 'UTC'))
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/flowsight/trace_correlations_local', '{replica}')
ORDER BY (CorrelationId, TraceId);

CREATE TABLE IF NOT EXISTS flowsight.trace_correlations ON CLUSTER retail AS flowsight.trace_correlations_local
ENGINE = Distributed(retail, flowsight, trace_correlations_local, cityHash64(CorrelationId));

CREATE MATERIALIZED VIEW IF NOT EXISTS flowsight.trace_correlations_mv_local ON CLUSTER retail TO flowsight.trace_correlations_local
AS SELECT
    CorrelationId,
    TraceId,
    Timestamp AS Start,
    Timestamp + toIntervalNanosecond(Duration) AS End
FROM flowsight.otel_traces_local
WHERE CorrelationId != '';

CREATE TABLE IF NOT EXISTS flowsight.system_minutes_local ON CLUSTER retail
(
    system LowCardinality(String),
    minute DateTime('UTC'),
    seen SimpleAggregateFunction(max, UInt8)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/flowsight/system_minutes_local', '{replica}')
PARTITION BY toYYYYMM(minute)
ORDER BY (system, minute);

CREATE TABLE IF NOT EXISTS flowsight.system_minutes ON CLUSTER retail AS flowsight.system_minutes_local
ENGINE = Distributed(retail, flowsight, system_minutes_local, cityHash64(system));

CREATE MATERIALIZED VIEW IF NOT EXISTS flowsight.system_minutes_mv_local ON CLUSTER retail TO flowsight.system_minutes_local
AS SELECT
    toString(system) AS system,
    toStartOfMinute(occurred_at) AS minute,
    toUInt8(1) AS seen
FROM flowsight.events_local;

INSERT INTO flowsight.system_minutes 
SELECT
    toString(system) AS system,
    toStartOfMinute(occurred_at) AS minute,
    toUInt8(1) AS seen
FROM flowsight.events;

CREATE TABLE IF NOT EXISTS flowsight.trace_spans_local ON CLUSTER retail
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/flowsight/trace_spans_local', '{replica}')
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (TraceId, SpanId)
SETTINGS index_granularity = 1024;

CREATE TABLE IF NOT EXISTS flowsight.trace_spans ON CLUSTER retail AS flowsight.trace_spans_local
ENGINE = Distributed(retail, flowsight, trace_spans_local, cityHash64(TraceId));

CREATE MATERIALIZED VIEW IF NOT EXISTS flowsight.trace_spans_mv_local ON CLUSTER retail TO flowsight.trace_spans_local
AS SELECT TraceId, SpanId, ParentSpanId, ServiceName, SpanName, SpanKind, Timestamp, Duration, StatusCode, StatusMessage, CorrelationId
FROM flowsight.otel_traces_local
WHERE TraceId != '';

INSERT INTO flowsight.trace_spans SELECT TraceId, SpanId, ParentSpanId, ServiceName, SpanName, SpanKind, Timestamp, Duration, StatusCode, StatusMessage, CorrelationId
FROM flowsight.otel_traces
WHERE TraceId != '';

ALTER TABLE flowsight.events_local ON CLUSTER retail ADD COLUMN IF NOT EXISTS loaded_at DateTime64(3, 'UTC') DEFAULT ingested_at;

ALTER TABLE flowsight.events_local ON CLUSTER retail MATERIALIZE COLUMN loaded_at SETTINGS mutations_sync = 2;

ALTER TABLE flowsight.events_local ON CLUSTER retail MODIFY COLUMN loaded_at DateTime64(3, 'UTC') DEFAULT now64(3);

ALTER TABLE flowsight.events_local ON CLUSTER retail ADD INDEX IF NOT EXISTS loaded_at_idx loaded_at TYPE minmax GRANULARITY 1;

ALTER TABLE flowsight.events_local ON CLUSTER retail MATERIALIZE INDEX loaded_at_idx SETTINGS mutations_sync = 2;

ALTER TABLE flowsight.events ON CLUSTER retail ADD COLUMN IF NOT EXISTS loaded_at DateTime64(3, 'UTC') DEFAULT now64(3);

ALTER TABLE flowsight.events_local ON CLUSTER retail MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;

ALTER TABLE flowsight.order_state_local ON CLUSTER retail MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;

ALTER TABLE flowsight.system_minutes_local ON CLUSTER retail MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;

ALTER TABLE flowsight.otel_traces_local ON CLUSTER retail MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;

ALTER TABLE flowsight.otel_traces_trace_id_ts_local ON CLUSTER retail MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;

ALTER TABLE flowsight.trace_correlations_local ON CLUSTER retail MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;

ALTER TABLE flowsight.trace_spans_local ON CLUSTER retail MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;

ALTER TABLE flowsight.dead_letters_local ON CLUSTER retail MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;

CREATE TABLE IF NOT EXISTS flowsight.slo_snapshots_local ON CLUSTER retail
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/flowsight/slo_snapshots_local', '{replica}')
PARTITION BY toYYYYMM(evaluated_at)
ORDER BY (slo, series, evaluated_at);

CREATE TABLE IF NOT EXISTS flowsight.slo_snapshots ON CLUSTER retail AS flowsight.slo_snapshots_local
ENGINE = Distributed(retail, flowsight, slo_snapshots_local, cityHash64(slo));

CREATE TABLE IF NOT EXISTS flowsight.flow_snapshots_local ON CLUSTER retail
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/flowsight/flow_snapshots_local', '{replica}')
PARTITION BY toYYYYMM(evaluated_at)
ORDER BY (workflow, evaluated_at);

CREATE TABLE IF NOT EXISTS flowsight.flow_snapshots ON CLUSTER retail AS flowsight.flow_snapshots_local
ENGINE = Distributed(retail, flowsight, flow_snapshots_local, cityHash64(workflow));

CREATE TABLE IF NOT EXISTS flowsight.alert_state_local ON CLUSTER retail
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/flowsight/alert_state_local', '{replica}', version)
ORDER BY fingerprint;

CREATE TABLE IF NOT EXISTS flowsight.alert_state ON CLUSTER retail AS flowsight.alert_state_local
ENGINE = Distributed(retail, flowsight, alert_state_local, cityHash64(fingerprint));

CREATE TABLE IF NOT EXISTS flowsight.alert_notifications_local ON CLUSTER retail
(
    receiver LowCardinality(String),
    fingerprint String,
    group_key String,
    status LowCardinality(String),
    sent_at DateTime64(3, 'UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/flowsight/alert_notifications_local', '{replica}', sent_at)
ORDER BY (receiver, fingerprint);

CREATE TABLE IF NOT EXISTS flowsight.alert_notifications ON CLUSTER retail AS flowsight.alert_notifications_local
ENGINE = Distributed(retail, flowsight, alert_notifications_local, cityHash64(fingerprint));

CREATE TABLE IF NOT EXISTS flowsight.silences_local ON CLUSTER retail
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/flowsight/silences_local', '{replica}', version)
ORDER BY id;

CREATE TABLE IF NOT EXISTS flowsight.silences ON CLUSTER retail AS flowsight.silences_local
ENGINE = Distributed(retail, flowsight, silences_local, cityHash64(id));

