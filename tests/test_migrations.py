"""Versioned migrations: recorded, a no-op the second time; cluster DDL as golden files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flowsight import migrations
from flowsight.app import MIGRATIONS
from flowsight.ddl import Schema

GOLDEN = Path(__file__).parent / "golden"


def test_migrations_are_recorded_and_applying_twice_is_a_no_op(engine: Any, settings: Any) -> None:
    schema = Schema(settings.database)
    first = migrations.migrate(engine, schema, MIGRATIONS)
    assert first == [m.id for m in MIGRATIONS]
    assert migrations.migrate(engine, schema, MIGRATIONS) == []
    assert migrations.applied(engine, schema) == first
    tables = {row[0] for row in engine.rows(f"SHOW TABLES FROM {settings.database}")}
    assert {
        "events",
        "order_state",
        "order_state_mv",
        "dead_letters",
        "schema_migrations",
    } <= tables


def test_pending_lists_what_a_database_lacks(engine: Any, settings: Any) -> None:
    schema = Schema(settings.database)
    assert migrations.pending(engine, schema, MIGRATIONS) == [m.id for m in MIGRATIONS]
    migrations.migrate(engine, schema, MIGRATIONS[:1])
    assert migrations.pending(engine, schema, MIGRATIONS) == [m.id for m in MIGRATIONS[1:]]


@pytest.mark.parametrize(
    ("schema", "golden"),
    [
        pytest.param(
            Schema("flowsight"), "ddl-single-node.sql", id="a single node gets plain MergeTree tables"
        ),
        pytest.param(
            Schema("flowsight", "retail"),
            "ddl-cluster.sql",
            id="a cluster gets Replicated local tables and Distributed tables ON CLUSTER",
        ),
    ],
)
def test_ddl_matches_golden_file(schema: Schema, golden: str) -> None:
    text = "".join(sql.rstrip() + ";\n\n" for sql in migrations.plan(schema, MIGRATIONS))
    path = GOLDEN / golden
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


def test_cluster_ddl_shards_orders_by_correlation_id() -> None:
    text = "\n".join(migrations.plan(Schema("flowsight", "retail"), MIGRATIONS))
    assert "ENGINE = Distributed(retail, flowsight, events_local, cityHash64(correlation_id))" in text
    assert (
        "ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/flowsight/order_state_local', '{replica}')"
        in text
    )
    assert "TO flowsight.order_state_local\nAS" in text and "FROM flowsight.events_local" in text


def test_migrate_command_applies_then_reports_up_to_date(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "flowsight.cli", "migrate", "--data-dir", str(tmp_path)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    assert [line for line in first.stdout.splitlines() if line.startswith("applied")] == [
        f"applied {m.id}" for m in MIGRATIONS
    ]
    second = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    assert second.stdout.strip() == "schema is up to date"


def test_system_minutes_are_backfilled_from_the_events_already_stored(engine: Any, settings: Any) -> None:
    schema = Schema(settings.database)
    at = [m.id for m in MIGRATIONS].index("collector/0004_system_minutes")
    before = [m for m in MIGRATIONS[:at] if m.id != "collector/0004_system_minutes"]
    migrations.migrate(engine, schema, before)
    engine.command(
        f"INSERT INTO {schema.table('events')} (event_id, correlation_id, workflow, stage, system, occurred_at, "
        "status) VALUES ('a', 'SO-1', 'order_to_cash', 'order_created', 'oms', '2026-11-26 10:00:10', 'ok'), "
        "('b', 'SO-1', 'order_to_cash', 'payment_authorized', 'payments', '2026-11-26 10:01:50', 'ok'), "
        "('c', 'SO-2', 'order_to_cash', 'order_created', 'oms', '2026-11-26 10:00:40', 'ok')"
    )
    assert migrations.migrate(engine, schema, MIGRATIONS) == [m.id for m in MIGRATIONS[at:]]
    rows = engine.rows(
        f"SELECT system, toString(minute) FROM {schema.table('system_minutes')} FINAL ORDER BY 1, 2"
    )
    assert [tuple(r) for r in rows] == [("oms", "2026-11-26 10:00:00"), ("payments", "2026-11-26 10:01:00")]
