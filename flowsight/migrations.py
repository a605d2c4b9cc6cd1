"""Versioned schema migrations, recorded in the database; applying them twice is a no-op.

Each package owns the DDL of its tables and hands its migrations to the composition root, which
applies them in order. A migration's id is stable (``collector/0001_events``); its statements are
rendered for the configured :class:`~flowsight.ddl.Schema` (single node or cluster).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flowsight.ddl import MaterializedView, Schema, Table
from flowsight.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    """One schema change: a stable id and the statements it runs for a schema."""

    id: str
    statements: Callable[[Schema], list[str]]

    @classmethod
    def creating(cls, migration_id: str, *objects: Table | MaterializedView) -> Migration:
        """A migration that creates tables and views in the given order."""

        def render(schema: Schema) -> list[str]:
            return [sql for obj in objects for sql in schema.create(obj)]

        return cls(migration_id, render)


MIGRATIONS_TABLE = Table(
    name="schema_migrations",
    columns="id String,\n    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)",
    engine="ReplacingMergeTree",
    order_by="id",
)


def applied(store: Store, schema: Schema) -> list[str]:
    """Ids of the migrations already recorded, oldest first."""
    rows = store.rows(f"SELECT id FROM {schema.table('schema_migrations')} FINAL ORDER BY applied_at, id")
    return [row[0] for row in rows]


def plan(schema: Schema, migrations: Sequence[Migration]) -> list[str]:
    """Every statement a fresh database receives, in order (the golden-file view of the DDL)."""
    statements = [schema.create_database(), *schema.create(MIGRATIONS_TABLE)]
    for migration in migrations:
        statements.extend(migration.statements(schema))
    return statements


def migrate(store: Store, schema: Schema, migrations: Sequence[Migration]) -> list[str]:
    """Apply the migrations not yet recorded; returns the ids applied now."""
    ids = [m.id for m in migrations]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate migration id")
    store.command(schema.create_database())
    for sql in schema.create(MIGRATIONS_TABLE):
        store.command(sql)
    done = set(applied(store, schema))
    now_applied = []
    for migration in migrations:
        if migration.id in done:
            continue
        for sql in migration.statements(schema):
            store.command(sql)
        store.command(
            f"INSERT INTO {schema.table('schema_migrations')} (id) VALUES ({{id:String}})",
            parameters={"id": migration.id},
        )
        log.info("applied migration %s", migration.id)
        now_applied.append(migration.id)
    return now_applied


def pending(store: Store, schema: Schema, migrations: Sequence[Migration]) -> list[str]:
    """Ids not yet applied (an unreachable or empty database reports all of them)."""
    try:
        done = set(applied(store, schema))
    except Exception:
        return [m.id for m in migrations]
    return [m.id for m in migrations if m.id not in done]
