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

