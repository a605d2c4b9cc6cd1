"""Durability while ClickHouse is unreachable: the fsynced spool, 503 when full, in-order drain."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from flowsight.app import build_services, create_app
from flowsight.collector import dead_letters
from flowsight.collector.otlp import SPAN_SCHEMA
from flowsight.collector.spool import Spool, SpoolFull
from tests.conftest import event
from tests.faults import SwitchableClient, switchable_store

EMPTY_SPANS = SPAN_SCHEMA.empty_table()


@pytest.fixture
def faulty(settings: Any, engine: Any, clock: Any) -> Iterator[tuple[TestClient, Any, SwitchableClient]]:
    store, switch = switchable_store(engine)
    services = build_services(settings, store=store, clock=clock)
    with TestClient(create_app(services)) as client:
        yield client, services, switch


def post(client: TestClient, events: list[dict[str, Any]]) -> Any:
    return client.post(
        "/v1/events", content=orjson.dumps(events), headers={"content-type": "application/json"}
    )


def stored(services: Any) -> int:
    return services.store.rows(f"SELECT count() FROM {services.schema.table('events')}")[0][0]


def test_events_are_spooled_while_the_database_is_down_and_drained_exactly_once(faulty: Any) -> None:
    client, services, switch = faulty
    assert post(client, [event(i) for i in range(10)]).json()["accepted"] == 10
    switch.go_down()
    for start in range(10, 40, 10):
        response = post(client, [event(i) for i in range(start, start + 10)])
        assert response.status_code == 200
        assert response.json()["accepted"] == 10
    # A resend while down is spooled again; the drain must still store it once.
    assert post(client, [event(i) for i in range(30, 40)]).status_code == 200
    assert len(services.writer.spool) == 4
    assert switch.failed_calls > 0
    switch.come_back()
    assert services.writer.drain(timeout=20)
    assert stored(services) == 40
    ids = services.store.rows(f"SELECT uniqExact(event_id) FROM {services.schema.table('events')}")[0][0]
    assert ids == 40
    assert services.writer.stats.drained_batches == 4


def test_new_events_queue_behind_the_spool_until_it_drains(faulty: Any) -> None:
    client, services, switch = faulty
    switch.go_down()
    post(client, [event(1, stage="order_created", correlation_id="SO-A")])
    switch.come_back()
    post(
        client,
        [event(2, stage="payment_authorized", correlation_id="SO-A", occurred_at="2026-11-26T09:01:00Z")],
    )
    assert services.writer.drain(timeout=20)
    timeline = client.get("/api/orders/SO-A/timeline").json()
    assert [e["event_id"] for e in timeline["events"]] == ["evt-1", "evt-2"]


def test_full_spool_answers_503_with_retry_after(settings: Any, engine: Any, clock: Any) -> None:
    store, switch = switchable_store(engine)
    one_batch = Spool(settings.data_dir / "measure", 10_000_000).append(
        _batch(10), dead_letters.EMPTY, EMPTY_SPANS
    )
    capacity = one_batch.stat().st_size * 7 // 2  # room for three batches of ten events
    services = build_services(
        settings.model_copy(update={"spool_max_bytes": capacity}), store=store, clock=clock
    )
    with TestClient(create_app(services)) as client:
        switch.go_down()
        statuses = [post(client, [event(i * 10 + j) for j in range(10)]).status_code for i in range(10)]
        assert statuses[0] == 200
        assert 503 in statuses
        first_refused = statuses.index(503)
        refused = post(client, [event(900 + j) for j in range(10)])
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == str(settings.retry_after_seconds)
        assert "spool" in refused.json()["error"]
        switch.come_back()
        assert services.writer.drain(timeout=20)
        # Exactly the acknowledged events are stored.
        assert first_refused == 3
        assert stored(services) == 10 * first_refused


def test_dead_letters_are_spooled_too(faulty: Any) -> None:
    client, services, switch = faulty
    switch.go_down()
    assert post(client, [event(1, system="BAD")]).json()["rejected"] == 1
    switch.come_back()
    assert services.writer.drain(timeout=20)
    assert client.get("/api/dead-letters").json()["total"] == 1


def test_spool_survives_a_restart_and_drains_in_order(settings: Any, engine: Any, clock: Any) -> None:
    store, switch = switchable_store(engine)
    services = build_services(settings, store=store, clock=clock)
    with TestClient(create_app(services)) as client:
        switch.go_down()
        for start in range(0, 30, 10):
            assert post(client, [event(i) for i in range(start, start + 10)]).status_code == 200
    assert len(Spool(settings.spool_path, settings.spool_max_bytes)) == 3
    restarted = build_services(settings, store=engine, clock=clock)
    with TestClient(create_app(restarted)):
        assert restarted.writer.drain(timeout=20)
    assert stored(restarted) == 30


def _batch(n: int) -> pa.Table:
    from flowsight.collector.events import EventBatch
    from flowsight.workflows import DEFAULT_WORKFLOWS

    batch = EventBatch(DEFAULT_WORKFLOWS, "api", 0)
    for i in range(n):
        batch.add(i, event(i))
    return batch.to_arrow()


def test_spool_files_round_trip_and_drain_oldest_first(tmp_path: Any) -> None:
    spool = Spool(tmp_path, 10_000_000)
    first = spool.append(_batch(2), dead_letters.EMPTY, EMPTY_SPANS)
    spool.append(_batch(3), dead_letters.EMPTY, EMPTY_SPANS)
    oldest = spool.oldest()
    assert oldest is not None and oldest.path == first
    assert oldest.events.num_rows == 2
    spool.remove(oldest)
    following = spool.oldest()
    assert following is not None and following.events.num_rows == 3
    assert Spool(tmp_path, 10_000_000).bytes_used == spool.bytes_used > 0


def test_corrupt_spool_file_is_quarantined_and_the_rest_drain(tmp_path: Any, caplog: Any) -> None:
    spool = Spool(tmp_path, 10_000_000)
    bad = spool.append(_batch(2), dead_letters.EMPTY, EMPTY_SPANS)
    spool.append(_batch(3), dead_letters.EMPTY, EMPTY_SPANS)
    data = bytearray(bad.read_bytes())
    data[40] ^= 0xFF
    bad.write_bytes(bytes(data))
    oldest = spool.oldest()
    assert oldest is not None and oldest.events.num_rows == 3
    assert (tmp_path / "quarantine" / bad.name).exists()
    assert "checksum mismatch" in caplog.text


def test_spool_refuses_what_does_not_fit(tmp_path: Any) -> None:
    one = Spool(tmp_path / "measure", 10_000_000).append(_batch(2), dead_letters.EMPTY, EMPTY_SPANS)
    spool = Spool(tmp_path / "spool", one.stat().st_size * 3 // 2)
    spool.append(_batch(2), dead_letters.EMPTY, EMPTY_SPANS)
    with pytest.raises(SpoolFull):
        spool.append(_batch(2), dead_letters.EMPTY, EMPTY_SPANS)


def test_a_spooled_batch_clickhouse_refuses_is_set_aside_and_the_rest_drain(
    faulty: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, services, switch = faulty
    switch.go_down()
    for start in (0, 10, 20):
        assert post(client, [event(i) for i in range(start, start + 10)]).status_code == 200
    spool = services.writer.spool
    refused = spool.oldest()
    assert refused is not None and len(spool) == 3
    real_insert = services.store.insert_arrow

    def insert(table: str, data: Any, settings: Any = None) -> None:
        if table.endswith(".events") and "evt-0" in data.column("event_id").to_pylist():
            raise ValueError("Cannot parse input: expected column that no longer exists")
        real_insert(table, data, settings=settings)

    services.store.insert_arrow = insert  # a refusal for good, not an outage
    switch.come_back()
    assert services.writer.drain(timeout=20)
    assert stored(services) == 20
    assert (spool.quarantine / refused.path.name).exists()
    assert f"spool file {refused.path.name} could not be written (ValueError" in caplog.text
