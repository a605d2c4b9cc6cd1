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

