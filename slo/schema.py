"""The SLO package's tables: evaluation snapshots, so error budgets have history."""

from __future__ import annotations

from flowsight.ddl import Table
from flowsight.migrations import Migration

SLO_SNAPSHOTS = Table(
    name="slo_snapshots",
    columns="""
    evaluated_at DateTime64(3, 'UTC'),
    slo LowCardinality(String),
    series String,
    good UInt64,
    total UInt64,
    sli Nullable(Float64),
    error_budget_remaining Nullable(Float64),
    burn_rates Map(String, Float64),
    status LowCardinality(String)
""",
    engine="ReplacingMergeTree",
    partition_by="toYYYYMM(evaluated_at)",
    order_by="(slo, series, evaluated_at)",
    sharding_key="cityHash64(slo)",
)
"""One row per SLO series per evaluation; re-evaluating the same instant replaces its row."""

FLOW_SNAPSHOTS = Table(
    name="flow_snapshots",
    columns="""
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
""",
    engine="ReplacingMergeTree",
    partition_by="toYYYYMM(evaluated_at)",
    order_by="(workflow, evaluated_at)",
    sharding_key="cityHash64(workflow)",
)
"""One row per workflow per evaluation: the flow figures' history, for trends."""

MIGRATIONS = [
    Migration.creating("slo/0001_snapshots", SLO_SNAPSHOTS),
    Migration.creating("slo/0002_flow_snapshots", FLOW_SNAPSHOTS),
]
