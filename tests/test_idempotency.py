"""Resending an event (same event_id) changes no figure: within a batch, across batches, across restarts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import orjson
from fastapi.testclient import TestClient

from flowsight.app import build_services, create_app
from flowsight.collector.events import EventBatch
from flowsight.collector.loader import Loader
from flowsight.collector.seen_ids import fingerprints, hash_ids
from flowsight.collector.wal import WriteAheadLog
from flowsight.collector.writer import EventWriter
from flowsight.timefmt import to_ms
from tests.conftest import event
from tests.faults import switchable_store


def post(client: TestClient, events: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post(
        "/v1/events", content=orjson.dumps(events), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def counts(services: Any) -> tuple[int, int, int]:
    """(event rows stored, distinct event ids stored, distinct orders in the per-order state)."""
    assert services.writer.wait_idle()
    table = services.schema.table
    events, ids = services.store.rows(f"SELECT count(), uniqExact(event_id) FROM {table('events')}")[0]
    orders = services.store.rows(f"SELECT count() FROM {table('order_state')} FINAL")[0][0]
    return events, ids, orders


def order_state(services: Any, correlation_id: str) -> tuple[Any, ...]:
    assert services.writer.wait_idle()
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


def test_ids_sharing_a_first_hash_are_told_apart_by_the_second(client: TestClient, services: Any) -> None:
    post(client, [event(i) for i in range(5)])
    # A stored id whose first hash equals evt-6's (a 64-bit collision), beside evt-3's own entry.
    h, c = fingerprints([f"evt-{i}" for i in (3, 6)])
    now = to_ms(services.clock())
    services.writer.seen.add(
        np.array([h[0], h[1]], np.uint64), np.array([c[0] ^ 1, c[1] ^ 1], np.uint64), now
    )
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
    with TestClient(create_app(first := build_services(settings, store=engine, clock=clock))) as client:
        post(client, [event(i, correlation_id=f"SO-{i % 3}") for i in range(9)])
        assert first.writer.wait_idle()
        # As if the process died after the events part was written but before the views' parts
        # and before the log let the record go: both are what the next start finds.
        log_files = {f.name: f.read_bytes() for f in settings.wal_path.glob("*.wal")}
        assert log_files
    engine.command(f"TRUNCATE TABLE {settings.database}.order_state")
    for name, data in log_files.items():
        (settings.wal_path / name).write_bytes(data)
    restarted = build_services(settings, store=engine, clock=clock)
    with TestClient(create_app(restarted)):
        assert counts(restarted) == (9, 9, 3)
        assert restarted.loader.stats.already_stored == 9


def test_after_a_clean_stop_the_log_is_empty(settings: Any, engine: Any, clock: Any) -> None:
    with TestClient(create_app(build_services(settings, store=engine, clock=clock))) as first:
        post(first, [event(i) for i in range(9)])
    assert list(settings.wal_path.glob("*.wal")) == []
    restarted = build_services(settings, store=engine, clock=clock)
    with TestClient(create_app(restarted)):
        assert restarted.loader.stats.records_loaded == 0


def test_requests_merged_into_one_commit_each_get_their_own_counts(services: Any) -> None:
    from flowsight.app import MIGRATIONS
    from flowsight.collector.events import EventBatch
    from flowsight.migrations import migrate

    migrate(services.store, services.schema, MIGRATIONS)
    services.writer.load_seen()

    def batch(*events: dict[str, Any]) -> Any:
        built = EventBatch(services.catalog, "api", 0)
        for index, item in enumerate(events):
            built.add(index, item)
        return built

    # Submitted before the writer runs: its first commit takes them all, small requests' rows
    # (made Arrow in the writer) and Arrow tables (the columnar path's) in the order they came.
    rows = [batch(event(1), event(2)), batch(), batch(event(2), event(3)), batch(), batch(event(3), event(4))]
    futures = [services.writer.submit(b.to_arrow() if i == 2 else b) for i, b in enumerate(rows)]
    services.loader.start()
    services.writer.start()
    try:
        outcomes = [f.result(timeout=30) for f in futures]
        assert [(o.accepted, o.duplicates) for o in outcomes] == [(2, 0), (0, 0), (1, 1), (0, 0), (1, 1)]
        assert services.writer.stats.commits == 1
    finally:
        services.stop()


def second_collector(services: Any, tmp_path: Any) -> EventWriter:
    """Another collector's writer (its own log and loader) on the same database."""
    wal = WriteAheadLog(tmp_path / "other-wal", 10_000_000)
    other = EventWriter(
        services.store, services.schema, wal, Loader(services.store, services.schema, wal), services.clock
    )
    other.load_seen()
    return other


def test_a_second_collector_learns_ids_the_first_stored(
    client: TestClient, services: Any, tmp_path: Any
) -> None:
    other = second_collector(services, tmp_path)
    post(client, [event(i) for i in range(4)])
    assert services.writer.wait_idle()
    hashes = hash_ids([f"evt-{i}" for i in range(4)])
    assert not other.seen.contains(hashes).any()
    other.refresh_seen()
    assert other.seen.contains(hashes).all()


def test_a_resend_to_collector_b_of_what_a_loaded_after_an_outage_is_a_duplicate(
    settings: Any, engine: Any, clock: Any, tmp_path: Any
) -> None:
    """A's events wait in its log through an outage and are loaded long after their ingest
    time; B learns them by when they were loaded, so B answers their resend as duplicates."""
    store, switch = switchable_store(engine)
    a = build_services(settings, store=store, clock=clock)
    with TestClient(create_app(a)) as client:
        other = second_collector(a, tmp_path)
        other.refresh_seen()  # B has looked before the outage
        switch.go_down()
        batch = [event(i) for i in range(10)]
        assert post(client, batch)["accepted"] == 10  # acknowledged from A's log
        assert a.loader.lag_seconds() > 0
        clock.now = clock.now + timedelta(hours=2)  # ingest time is now far behind any look of B's
        switch.come_back()
        assert a.writer.wait_idle()
        other.refresh_seen()
        other.loader.start()
        other.start()
        try:
            events = EventBatch(a.catalog, "api", to_ms(clock()))
            for index, item in enumerate(batch):
                assert events.add(index, item)
            outcome = other.submit(events.to_arrow()).result(timeout=30)
        finally:
            other.stop()
            other.loader.stop()
        assert (outcome.accepted, outcome.duplicates) == (0, 10)
        assert counts(a)[:2] == (10, 10)


def test_a_resend_during_an_outage_is_a_duplicate_without_asking_clickhouse(
    settings: Any, engine: Any, clock: Any
) -> None:
    store, switch = switchable_store(engine)
    services = build_services(settings, store=store, clock=clock)
    with TestClient(create_app(services)) as client:
        stored = [event(i) for i in range(50)]
        assert post(client, stored)["accepted"] == 50
        assert services.writer.wait_idle()
        switch.go_down()
        failed_before = switch.failed_calls
        body = post(client, [event(i) for i in range(60)])  # 50 stored before, 10 new
        assert (body["accepted"], body["duplicates"]) == (10, 50)
        again = post(client, [event(i) for i in range(50, 60)])  # first copies still in the log
        assert (again["accepted"], again["duplicates"]) == (0, 10)
        assert switch.failed_calls == failed_before or services.loader.stats.retries > 0
        switch.come_back()
        assert counts(services)[:2] == (60, 60)
