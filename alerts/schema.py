"""The alert package's tables: alert state (so a restart neither re-pages nor forgets a resolve),
what each receiver was last told about each alert, and silences."""

from __future__ import annotations

from flowsight.ddl import Table
from flowsight.migrations import Migration

_TS = "DateTime64(3, 'UTC')"

ALERT_STATE = Table(
    name="alert_state",
    columns=f"""
    fingerprint String,
    alertname LowCardinality(String),
    system LowCardinality(String),
    labels Map(String, String),
    annotations Map(String, String),
    rule_kind LowCardinality(String),
    system_health Bool,
    state LowCardinality(String),
    value Float64,
    active_since {_TS},
    last_active_at {_TS},
    fired_at Nullable({_TS}),
    resolved_at Nullable({_TS}),
    suppressed_by String,
    silenced_by Array(String),
    updated_at {_TS},
    version UInt64
""",
    engine="ReplacingMergeTree(version)",
    order_by="fingerprint",
    sharding_key="cityHash64(fingerprint)",
)
"""One row per alert (the newest version wins): where its lifecycle stands."""

ALERT_NOTIFICATIONS = Table(
    name="alert_notifications",
    columns=f"""
    receiver LowCardinality(String),
    fingerprint String,
    group_key String,
    status LowCardinality(String),
    sent_at {_TS}
""",
    engine="ReplacingMergeTree(sent_at)",
    order_by="(receiver, fingerprint)",
    sharding_key="cityHash64(fingerprint)",
)
"""What each receiver was last told about each alert, and when."""

SILENCES = Table(
    name="silences",
    columns=f"""
    id String,
    matchers String,
    starts_at {_TS},
    ends_at {_TS},
    created_by String,
    comment String,
    created_at {_TS},
    expired_at Nullable({_TS}),
    version UInt64
""",
    engine="ReplacingMergeTree(version)",
    order_by="id",
    sharding_key="cityHash64(id)",
)
"""Silences: label matchers (JSON) over a time range; deleting one expires it."""

MIGRATIONS = [Migration.creating("alerts/0001_alerts", ALERT_STATE, ALERT_NOTIFICATIONS, SILENCES)]
