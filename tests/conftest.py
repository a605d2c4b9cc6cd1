"""Shared fixtures: one real chDB engine per test process, a fresh database per test.

chDB holds one data directory per process, so tests share the engine and isolate themselves by
database name; nothing here fakes ClickHouse.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from flowsight.app import Services, build_services, create_app
from flowsight.clock import FixedClock
from flowsight.settings import Settings
from flowsight.store import Store
from tests.receiver import Receiver

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The process's one chDB engine (through clickhouse-connect's chdb:// DSN)."""
    path = tmp_path_factory.mktemp("chdb")
    store = Store.connect(f"chdb://{path}", "default")
    yield store
    store.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for one test: its own database and write-ahead log."""
    return Settings(
        data_dir=tmp_path,
        database=f"t_{uuid.uuid4().hex[:12]}",
        load_retry_seconds=0.02,
        load_retry_max_seconds=0.2,
        evaluation_interval_seconds=0,  # tests evaluate explicitly; test_snapshots covers the schedule
    )


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def services(settings: Settings, engine: Store, clock: FixedClock) -> Services:
    return build_services(settings, store=engine, clock=clock)


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    """The app with its lifespan running (migrations applied, writer started)."""
    with TestClient(create_app(services)) as test_client:
        yield test_client


def stored_once(services: Services, ids: set[str], *columns: str) -> list[tuple[Any, ...]]:
    """Assert ``events`` holds exactly ``ids``, each once (no FINAL: the writer must never insert
    an event twice, merged away later or not); returns ``(event_id, *columns)`` per row, once
    everything acknowledged is loaded."""
    assert services.writer.wait_idle(), "acknowledged events were not loaded"
    table = services.schema.table("events")
    [(count, distinct)] = services.store.rows(f"SELECT count(), uniqExact(event_id) FROM {table}")
    assert count == distinct == len(ids)
    rows = [tuple(r) for r in services.store.rows(f"SELECT {', '.join(['event_id', *columns])} FROM {table}")]
    assert {r[0] for r in rows} == ids
    return rows


def event(n: int | str, stage: str = "order_created", **fields: Any) -> dict[str, Any]:
    """A valid order_to_cash event; ``fields`` override or add to it."""
    base = {
        "event_id": f"evt-{n}",
        "correlation_id": fields.pop("correlation_id", f"SO-{n}"),
        "workflow": "order_to_cash",
        "stage": stage,
        "system": "oms",
        "occurred_at": "2026-11-26T09:00:00Z",
    }
    base.update(fields)
    return base


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    """A local HTTP receiver standing in for a webhook endpoint."""
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
def slack() -> Iterator[Receiver]:
    """A local HTTP receiver standing in for a Slack incoming webhook."""
    with Receiver() as receiver:
        yield receiver
