"""Resending an event (same event_id) changes no figure: within a batch, across batches, across restarts."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from flowsight.app import build_services, create_app
from flowsight.collector.seen_ids import hash_ids
from flowsight.collector.spool import CLEAN_STOP
from tests.conftest import event


def post(client: TestClient, events: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post(
        "/v1/events", content=orjson.dumps(events), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def counts(services: Any) -> tuple[int, int, int]:
    """(event rows stored, distinct event ids stored, distinct orders in the per-order state)."""
    table = services.schema.table
    events, ids = services.store.rows(f"SELECT count(), uniqExact(event_id) FROM {table('events')}")[0]
    orders = services.store.rows(f"SELECT count() FROM {table('order_state')} FINAL")[0][0]
    return events, ids, orders


def order_state(services: Any, correlation_id: str) -> tuple[Any, ...]:
    [row] = services.store.rows(
        f"""SELECT min(first_seen), max(last_seen), minMap(reached), maxMap(last_failed)
            FROM {services.schema.table("order_state")} WHERE correlation_id = {{c:String}}""",
        {"c": correlation_id},
    )
    return tuple(row)


def test_duplicates_within_one_batch_are_stored_once(client: TestClient, services: Any) -> None:
    body = post(client, [event(1), event(1), event(2), event(1)])
    assert (body["accepted"], body["duplicates"]) == (2, 2)
    assert counts(services) == (2, 2, 2)


def test_resending_a_batch_stores_nothing_new(client: TestClient, services: Any) -> None:
    batch = [event(i, stage="order_created") for i in range(10)]
    assert post(client, batch)["accepted"] == 10
    before = order_state(services, "SO-3")
    again = post(client, batch)
    assert (again["accepted"], again["duplicates"]) == (0, 10)
    assert counts(services) == (10, 10, 10)
    assert order_state(services, "SO-3") == before


def test_resent_event_with_a_different_payload_is_still_a_duplicate(
    client: TestClient, services: Any
) -> None:
    post(client, [event(1, occurred_at="2026-11-26T09:00:00Z")])
    body = post(client, [event(1, occurred_at="2026-11-26T08:00:00Z")])
    assert body["duplicates"] == 1
    first_seen = order_state(services, "SO-1")[0]
    assert first_seen.hour == 9


def test_partly_new_batch_accepts_only_the_new_events(client: TestClient, services: Any) -> None:
    post(client, [event(i) for i in range(5)])
    body = post(client, [event(i) for i in range(3, 8)])
    assert (body["accepted"], body["duplicates"]) == (3, 2)
    assert counts(services)[:2] == (8, 8)


def test_duplicates_are_recognised_after_a_restart(settings: Any, engine: Any, clock: Any) -> None:
    batch = [event(i) for i in range(20)]
    with TestClient(create_app(build_services(settings, store=engine, clock=clock))) as first:
        assert post(first, batch)["accepted"] == 20
    restarted = build_services(settings, store=engine, clock=clock)
    with TestClient(create_app(restarted)) as second:
        body = post(second, batch)
    assert (body["accepted"], body["duplicates"]) == (0, 20)
    assert counts(restarted) == (20, 20, 20)


def test_concurrent_requests_sharing_ids_store_each_once(client: TestClient, services: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    batches = [[event(i) for i in range(start, start + 50)] for start in range(0, 200, 25)]  # overlapping
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda b: post(client, b), batches))
    assert sum(r["accepted"] for r in results) == 225
    assert sum(r["accepted"] + r["duplicates"] for r in results) == 400
    assert counts(services)[:2] == (225, 225)


def test_a_hash_collision_never_drops_a_distinct_event(client: TestClient, services: Any) -> None:
    post(client, [event(i) for i in range(5)])
    # Make the filter claim every id is stored, as a 64-bit collision would for one.
    services.writer.seen.contains = lambda hashes: np.ones(hashes.size, dtype=bool)
    body = post(client, [event(3), event(4), event(5), event(6, correlation_id="SO-3")])
    assert (body["accepted"], body["duplicates"]) == (2, 2)
    assert counts(services)[:2] == (7, 7)


def test_an_id_resent_under_another_correlation_id_is_a_duplicate(client: TestClient, services: Any) -> None:
    post(client, [event(1, correlation_id="SO-A")])
    body = post(client, [event(1, correlation_id="SO-B")])
    assert body["duplicates"] == 1
    assert counts(services)[0] == 1


def test_the_filter_is_rebuilt_from_stored_events_at_start(settings: Any, engine: Any, clock: Any) -> None:
    with TestClient(create_app(build_services(settings, store=engine, clock=clock))) as first:
        post(first, [event(i) for i in range(30)])
    restarted = build_services(settings, store=engine, clock=clock)
    with TestClient(create_app(restarted)):
        assert len(restarted.writer.seen) == 30
        hashes = hash_ids([f"evt-{i}" for i in range(28, 32)])
        assert restarted.writer.seen.contains(hashes).tolist() == [True, True, False, False]


def test_per_order_state_lost_in_a_crash_is_rebuilt_at_start(settings: Any, engine: Any, clock: Any) -> None:
    with TestClient(create_app(build_services(settings, store=engine, clock=clock))) as first:
        post(first, [event(i, correlation_id=f"SO-{i % 3}") for i in range(9)])
    # As if the process died after the events part was written but before the view's part:
    # the view's rows are missing, and a crash leaves no record of a clean stop.
    engine.command(f"TRUNCATE TABLE {settings.database}.order_state")
    (settings.spool_path / CLEAN_STOP).unlink()
    restarted = build_services(settings, store=engine, clock=clock)
    with TestClient(create_app(restarted)):
        assert counts(restarted) == (9, 9, 3)


def test_after_a_clean_stop_the_start_re_applies_nothing(
    settings: Any, engine: Any, clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(create_app(build_services(settings, store=engine, clock=clock))) as first:
        post(first, [event(i, correlation_id=f"SO-{i % 3}") for i in range(9)])
    assert (settings.spool_path / CLEAN_STOP).exists()
    engine.command(f"TRUNCATE TABLE {settings.database}.order_state")  # would be rebuilt by a repair
    restarted = build_services(settings, store=engine, clock=clock)
    with (
        caplog.at_level(logging.INFO, logger="flowsight.collector.writer"),
        TestClient(create_app(restarted)),
    ):
        assert counts(restarted) == (9, 9, 0)
        # The record is taken at start: a crash of this run is not a clean stop.
        assert not (settings.spool_path / CLEAN_STOP).exists()
    assert "the last stop was clean" in caplog.text


def test_requests_merged_into_one_commit_each_get_their_own_counts(services: Any) -> None:
    from flowsight.app import MIGRATIONS
    from flowsight.collector import dead_letters
    from flowsight.collector.events import EventBatch
    from flowsight.migrations import migrate

    migrate(services.store, services.schema, MIGRATIONS)

    def batch(*events: dict[str, Any]) -> Any:
        built = EventBatch(services.catalog, "api", 0)
        for index, item in enumerate(events):
            built.add(index, item)
        return built.to_arrow()

    merged = [batch(event(1), event(2)), batch(), batch(event(2), event(3)), batch()]
    import pyarrow as pa

    outcomes = services.writer.commit(
        pa.concat_tables(merged), dead_letters.EMPTY, [t.num_rows for t in merged]
    )
    assert [(o.accepted, o.duplicates) for o in outcomes] == [(2, 0), (0, 0), (1, 1), (0, 0)]


def test_a_second_collector_learns_ids_the_first_stored(
    client: TestClient, services: Any, tmp_path: Any
) -> None:
    from flowsight.collector.spool import Spool
    from flowsight.collector.writer import EventWriter

    other = EventWriter(services.store, services.schema, Spool(tmp_path / "other-spool", 10_000_000))
    other.load_seen()
    post(client, [event(i) for i in range(4)])
    hashes = hash_ids([f"evt-{i}" for i in range(4)])
    assert not other.seen.contains(hashes).any()
    other.refresh_seen()
    assert other.seen.contains(hashes).all()


def test_a_burst_of_resends_is_recognised_without_asking_clickhouse(
    client: TestClient, services: Any
) -> None:
    post(client, [event(i) for i in range(50)])
    asked: list[int] = []
    real = services.writer.stored_ids
    services.writer.stored_ids = lambda ids, cids: asked.append(len(ids)) or real(ids, cids)
    body = post(client, [event(i) for i in range(60)])
    assert (body["accepted"], body["duplicates"]) == (10, 50)
    assert asked == []  # both hashes of each resent id are in memory: no lookup
    assert counts(services)[:2] == (60, 60)
