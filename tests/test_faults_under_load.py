"""Faults under concurrent load, through the running app: ClickHouse unreachable for a while (the
write-ahead log takes every batch, or fills up and answers 503), and ClickHouse failing the
loader's inserts with every error the driver raises for a transient fault, including an insert
that committed but whose answer was lost.

Several clients keep posting NDJSON and JSON-array batches of mixed sizes (some large enough for
the columnar path, some holding an event the contract rejects, some resending an earlier batch).
Every batch's events carry ids of their own, so afterwards the stored event ids are compared,
id by id, with what the clients were told.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.exceptions import OperationalError
from fastapi.testclient import TestClient

from flowsight.app import Services, build_services, create_app
from flowsight.collector.ingest import COLUMNAR_MIN_BYTES
from flowsight.collector.loader import Loader
from flowsight.settings import Settings
from flowsight.store import Store
from tests.conftest import event
from tests.faults import INSERTS, Fault, SwitchableClient, engine_error, server_error, switchable_store

CLIENTS = 6
RESEND_RATIO = 0.15
MiB = 1024 * 1024
ROOMY = 256 * MiB
SMALL_LOG = 400_000


@dataclass(frozen=True)
class Body:
    """One request body as a client sends it, with what the contract makes of its events."""

    key: str
    data: bytes
    content_type: str
    ids: frozenset[str]
    """Ids of the events the contract accepts."""
    bad: int
    """How many events the contract rejects (each becomes a dead letter)."""


def make_body(rng: random.Random, key: str) -> Body:
    """A new batch: NDJSON or a JSON array, small or large, now and then with a bad event."""
    large = rng.random() < 0.35
    ndjson = rng.random() < 0.5
    n = rng.randint(120, 260) if large else rng.randint(1, 40)
    events = [event(f"{key}-{i}", correlation_id=f"SO-{key}-{i // 5}") for i in range(n)]
    bad = int(rng.random() < 0.2)
    if bad:
        events.insert(rng.randint(0, n), event(f"{key}-bad", system="NOT A SYSTEM"))
    if ndjson:
        data = b"\n".join(orjson.dumps(e) for e in events)
        assert not large or len(data) >= COLUMNAR_MIN_BYTES
    else:
        data = orjson.dumps(events)
    return Body(
        key,
        data,
        "application/x-ndjson" if ndjson else "application/json",
        frozenset(f"evt-{key}-{i}" for i in range(n)),  # as tests.conftest.event names them
        bad,
    )


class Load:
    """Clients posting batches on threads until stopped, recording every answer per body."""

    def __init__(self, client: TestClient, services: Services, seed: int):
        self.client = client
        self.services = services
        self.retry_after = str(services.settings.retry_after_seconds)
        self.seed = seed
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.bodies: dict[str, Body] = {}
        """Every body made so far, in the order they were made."""
        self.acked: Counter[str] = Counter()
        """Per body, how many times it was answered 200."""
        self.refused: Counter[str] = Counter()
        """Per body, how many times it was answered 503."""
        self.rejected = 0
        """Events rejected in answers of 200 (each a dead letter)."""
        self.answers = 0
        self.problems: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(c,), daemon=True) for c in range(CLIENTS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(60)
        assert not any(t.is_alive() for t in self.threads), "a client is still waiting for an answer"

    def wait(self, condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert not self.problems, self.problems[:5]
            assert loader_alive(self.services), (
                f"the loader thread died (last error: {self.services.loader.stats.last_error})"
            )
            assert time.monotonic() < deadline, f"no {what} within {timeout} s"
            time.sleep(0.01)

    def more_answers(self, n: int) -> Callable[[], bool]:
        target = self.answers + n
        return lambda: self.answers >= target

    def more_acks(self, n: int) -> Callable[[], bool]:
        target = self.acked.total() + n
        return lambda: self.acked.total() >= target

    def ids_of(self, keys: Collection[str]) -> set[str]:
        return {i for key in keys for i in self.bodies[key].ids}

    def _run(self, client: int) -> None:
        rng = random.Random(self.seed * 100 + client)
        made = 0
        while not self.stopping.is_set():
            with self.lock:
                earlier = list(self.bodies.values()) if rng.random() < RESEND_RATIO else []
            if earlier:
                body = rng.choice(earlier)
            else:
                body = make_body(rng, f"c{client}-{made}")
                made += 1
                with self.lock:
                    self.bodies[body.key] = body
            try:
                response = self.client.post(
                    "/v1/events", content=body.data, headers={"content-type": body.content_type}
                )
            except Exception as exc:  # an unhandled error in the app, re-raised by the test client
                with self.lock:
                    self.problems.append(f"{body.key}: {exc!r}")
                continue
            self._record(body, response)
            if response.status_code == 503:
                time.sleep(0.02)  # backing off, briefly

    def _record(self, body: Body, response: Any) -> None:
        problem = None
        if response.status_code == 200:
            answer = response.json()
            if (answer["accepted"] + answer["duplicates"], answer["rejected"]) != (len(body.ids), body.bad):
                problem = f"{body.key}: {len(body.ids)} valid and {body.bad} bad events answered {answer}"
        elif response.status_code == 503:
            if response.headers.get("retry-after") != self.retry_after:
                problem = f"{body.key}: 503 without Retry-After {self.retry_after}: {response.headers}"
        else:
            problem = f"{body.key}: answered {response.status_code} {response.text[:300]}"
        with self.lock:
            self.answers += 1
            if problem:
                self.problems.append(problem)
            elif response.status_code == 200:
                self.acked[body.key] += 1
                self.rejected += body.bad
            else:
                self.refused[body.key] += 1


@contextmanager
def loading(client: TestClient, services: Services, seed: int) -> Iterator[Load]:
    load = Load(client, services, seed)
    load.start()
    try:
        yield load
    finally:
        load.stop()


@contextmanager
def running(services: Services, switch: SwitchableClient) -> Iterator[TestClient]:
    """The app; the database is back before it stops (a stop waits for the loader, and a failed
    test must not leave it retrying against a database that is still down)."""
    with TestClient(create_app(services)) as client:
        try:
            yield client
        finally:
            switch.come_back()


def grown(loader: Loader, counter: str, by: int = 1) -> Callable[[], bool]:
    """Whether the loader's ``counter`` has grown by ``by`` since this call."""
    target = getattr(loader.stats, counter) + by
    return lambda: getattr(loader.stats, counter) >= target


def loader_alive(services: Services) -> bool:
    thread = services.loader._thread
    return thread is None or thread.is_alive()


def faulty_services(
    settings: Settings, engine: Store, clock: Any, **updates: Any
) -> tuple[Services, SwitchableClient]:
    store, switch = switchable_store(engine)
    return build_services(settings.model_copy(update=updates), store=store, clock=clock), switch


def count_columnar(services: Services) -> Counter[str]:
    """Counts the requests the columnar path validated."""
    counts: Counter[str] = Counter()
    validate = services.ingestor.validate_columns

    def counting(*args: Any, **kwargs: Any) -> Any:
        batch = validate(*args, **kwargs)
        counts["columnar"] += batch is not None
        return batch

    services.ingestor.validate_columns = counting  # type: ignore[method-assign]
    return counts


def keep_duplicates_visible(services: Services) -> None:
    """Stop background merges of the events table: a ReplacingMergeTree merge would fold a
    duplicate insert away before the counts are read."""
    services.store.command(f"SYSTEM STOP MERGES {services.schema.table('events')}")


def stored_ids(services: Services) -> tuple[set[str], int]:
    """The distinct stored event ids, and how many rows the events table holds."""
    events = services.schema.table("events")
    [(rows, unique)] = services.store.rows(f"SELECT count(), uniqExact(event_id) FROM {events}")
    ids = {row[0] for row in services.store.rows(f"SELECT DISTINCT event_id FROM {events}")}
    assert len(ids) == unique
    return ids, rows


def dead_letters(client: TestClient) -> list[dict[str, Any]]:
    """Every dead letter, as the API lists them (one per id, whatever the inserts did)."""
    letters: list[dict[str, Any]] = []
    while True:
        response = client.get("/api/dead-letters", params={"limit": 1000, "offset": len(letters)})
        assert response.status_code == 200, response.text
        page = response.json()
        letters += page["items"]
        if len(letters) >= page["total"] or not page["items"]:
            assert len(letters) == page["total"]
            return letters


def assert_only_contract_rejects(client: TestClient, load: Load) -> None:
    """The dead letters are the events the contract rejected, one per answer that said so;
    ClickHouse refused nothing."""
    letters = dead_letters(client)
    assert [d for d in letters if not d["event_id"].endswith("-bad")] == []
    assert [d for d in letters if d["reason"].startswith("ClickHouse refused")] == []
    assert len(letters) == load.rejected


def assert_stored_exactly(services: Services, expected: set[str], refused_only: set[str]) -> None:
    """Exactly ``expected`` is stored, each event once; nothing of ``refused_only``."""
    assert services.writer.wait_idle(60), "acknowledged events were not loaded"
    ids, rows = stored_ids(services)
    missing, unexpected = expected - ids, ids - expected
    assert not missing, f"{len(missing)} acknowledged events are not stored, e.g. {sorted(missing)[:5]}"
    assert not ids & refused_only, (
        f"events refused with 503 are stored, e.g. {sorted(ids & refused_only)[:5]}"
    )
    assert not unexpected, f"{len(unexpected)} events are stored but were never acknowledged"
    assert rows == len(ids), f"{rows - len(ids)} events are stored more than once"
    table = services.schema.table
    [(orders, distinct)] = services.store.rows(
        f"SELECT (SELECT count() FROM {table('order_state')} FINAL),"
        f" (SELECT uniqExact(correlation_id) FROM {table('events')})"
    )
    assert orders == distinct, "the per-order state does not match the stored events"


def metric(client: TestClient, name: str) -> float:
    text = client.get("/metrics").text
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} is not exposed"
    return float(match.group(1))


@pytest.mark.parametrize(
    ("wal_max_bytes", "wal_segment_bytes", "fills_up"),
    [
        pytest.param(ROOMY, 8 * MiB, False, id="a roomy log takes every batch while the database is down"),
        pytest.param(
            SMALL_LOG, 64 * 1024, True, id="a small log fills up and answers 503 until the loader frees it"
        ),
    ],
)
def test_acknowledged_events_are_stored_exactly_once_after_the_database_was_down_under_load(
    settings: Settings,
    engine: Store,
    clock: Any,
    wal_max_bytes: int,
    wal_segment_bytes: int,
    fills_up: bool,
) -> None:
    services, switch = faulty_services(
        settings, engine, clock, wal_max_bytes=wal_max_bytes, wal_segment_bytes=wal_segment_bytes
    )
    columnar = count_columnar(services)
    wal, loader = services.writer.wal, services.loader
    with running(services, switch) as client:
        keep_duplicates_visible(services)
        with loading(client, services, seed=1 if fills_up else 2) as load:
            load.wait(load.more_answers(40), "answers while the database is up")
            retries_before = metric(client, "flowsight_loader_retries_total")
            switch.go_down(from_insert_into="events")
            load.wait(lambda: loader.stats.retries >= 3, "loader retries")
            if fills_up:
                load.wait(lambda: load.refused.total() >= 10, "503s from a full log")
            else:
                load.wait(lambda: wal.bytes_used >= 3 * MiB, "batches waiting in the log")
            assert loader.stats.failing_since is not None and loader.lag_seconds() > 0
            assert metric(client, "flowsight_loader_retries_total") > retries_before
            assert metric(client, "flowsight_loader_lag_seconds") > 0
            switch.come_back()
            # Everything acknowledged so far loads while the clients keep sending...
            loader.wait_all(60)
            # ... and the log takes batches again.
            load.wait(load.more_acks(40), "batches acknowledged after the database came back")
        assert not load.problems, load.problems[:5]
        assert switch.failed_calls > 0 and columnar["columnar"] > 0
        assert bool(load.refused) == fills_up
        acked = set(load.acked)
        assert_stored_exactly(services, load.ids_of(acked), load.ids_of(set(load.refused) - acked))
        assert_only_contract_rejects(client, load)
        assert loader.stats.rows_refused == 0
        assert client.get("/readyz").status_code == 200
    assert list(wal.path.glob("*.wal")) == [], "the log keeps files of loaded records after a clean stop"


def test_a_log_smaller_than_one_segment_takes_batches_again_once_the_database_is_back(
    settings: Settings, engine: Store, clock: Any
) -> None:
    """A small ``wal_max_bytes`` with the default segment size: the log fills while the database
    is down, and once the loader has loaded every record the log has room again."""
    services, switch = faulty_services(settings, engine, clock, wal_max_bytes=SMALL_LOG)
    assert services.writer.wal.segment_bytes > SMALL_LOG

    def post(n: int) -> Any:
        events = [event(f"{n}-{i}") for i in range(100)]
        return client.post(
            "/v1/events", content=orjson.dumps(events), headers={"content-type": "application/json"}
        )

    with running(services, switch) as client:
        switch.go_down()
        n = 0
        while (response := post(n)).status_code == 200:
            n += 1
        assert response.status_code == 503 and n > 0
        switch.come_back()
        assert services.writer.wait_idle(30)
        assert services.loader.waiting_rows == 0
        response = post(n)
        assert response.status_code == 200, (
            f"answered {response.status_code} with every record loaded: the log holds "
            f"{services.writer.wal.bytes_used} of {SMALL_LOG} bytes"
        )


def test_metrics_answer_while_the_database_is_down(settings: Settings, engine: Store, clock: Any) -> None:
    """What an operator watches during an outage (the loader's retries and lag, the log's size)
    is served from memory, whatever ClickHouse does."""
    services, switch = faulty_services(settings, engine, clock)
    with running(services, switch) as client:
        switch.go_down()
        response = client.post(
            "/v1/events",
            content=orjson.dumps([event(i) for i in range(20)]),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 200
        deadline = time.monotonic() + 30
        while services.loader.stats.retries < 1:
            assert time.monotonic() < deadline, "the loader did not retry"
            time.sleep(0.01)
        response = client.get("/metrics")
        assert response.status_code == 200, response.text[:300]
        assert metric(client, "flowsight_loader_retries_total") >= 1
        assert metric(client, "flowsight_wal_bytes") > 0
        switch.come_back()
        assert services.writer.wait_idle(30)


def read_timeout() -> Exception:
    return OperationalError(
        "Error HTTPConnectionPool(host='clickhouse', port=8123): Read timed out. (read timeout=300)"
        " executing HTTP request attempt 1 (http://clickhouse:8123)"
    )


def connection_reset() -> Exception:
    return OperationalError(
        "Error ('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))"
        " executing HTTP request attempt 1 (http://clickhouse:8123)"
    )


TRANSIENT = [
    pytest.param(
        Fault(
            lambda: server_error(
                252,
                "TOO_MANY_PARTS",
                "Too many parts (300). Merges are processing significantly slower than inserts",
            ),
            calls=INSERTS,
        ),
        id="too many parts",
    ),
    pytest.param(
        Fault(
            lambda: server_error(
                241,
                "MEMORY_LIMIT_EXCEEDED",
                "Memory limit (total) exceeded: would use 3.52 GiB (attempt to allocate chunk of "
                "4219812 bytes), maximum: 3.51 GiB. OvercommitTracker decision: Query was selected "
                "to stop by OvercommitTracker",
            )
        ),
        id="memory limit exceeded",
    ),
    pytest.param(
        Fault(
            lambda: engine_error(243, "NOT_ENOUGH_SPACE", "Cannot reserve 1.00 MiB, not enough space"),
            calls=INSERTS,
        ),
        id="not enough space",
    ),
    pytest.param(
        Fault(
            lambda: server_error(
                159,
                "TIMEOUT_EXCEEDED",
                "Timeout exceeded: elapsed 300.000812 seconds, maximum: 300",
            )
        ),
        id="timeout exceeded",
    ),
    pytest.param(Fault(connection_reset), id="connection reset"),
    pytest.param(
        Fault(read_timeout, calls=("insert_arrow",), after=True, tables=("events",)),
        id="the events insert committed and its answer was lost",
    ),
    pytest.param(
        Fault(
            lambda: server_error(
                319,
                "UNKNOWN_STATUS_OF_INSERT",
                "Unknown status, client must retry. Reason: Connection loss",
            ),
            calls=("insert_arrow",),
            after=True,
            tables=("events",),
        ),
        id="the events insert committed and its status is unknown",
    ),
    pytest.param(
        Fault(read_timeout, calls=("insert_arrow",), after=True, tables=("dead_letters",)),
        id="the dead-letter insert committed and its answer was lost",
    ),
]


@pytest.mark.parametrize("fault", TRANSIENT)
def test_transient_insert_errors_under_load_are_retried_and_store_everything_once(
    settings: Settings, engine: Store, clock: Any, fault: Fault
) -> None:
    services, switch = faulty_services(settings, engine, clock, wal_max_bytes=ROOMY)
    loader = services.loader
    with running(services, switch) as client:
        keep_duplicates_visible(services)
        with loading(client, services, seed=7) as load:
            load.wait(load.more_answers(30), "answers while the database is healthy")
            for _ in range(3):  # the fault comes and goes while the clients keep sending
                retried, verified = grown(loader, "retries", 2), grown(loader, "already_stored")
                loaded = grown(loader, "records_loaded")
                switch.fail_with(fault, from_insert_into="events")
                load.wait(retried, "loader retries")
                if fault.after and "events" in fault.tables:  # the loader goes on meanwhile
                    load.wait(verified, "rows found stored and dropped")
                switch.come_back()
                load.wait(loaded, "records loaded")
            load.wait(load.more_answers(30), "answers after the fault")
        assert not load.problems, load.problems[:5]
        assert not load.refused, "the log is roomy: nothing should be refused"
        assert loader.stats.retries > 0 and switch.failed_calls > 0
        if fault.after:
            assert switch.committed_then_failed > 0
        acked = set(load.acked)
        assert_stored_exactly(services, load.ids_of(acked), set())
        assert_only_contract_rejects(client, load)
        assert loader.stats.rows_refused == 0
