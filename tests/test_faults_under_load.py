"""Faults under concurrent load, through the running app: ClickHouse unreachable for a while, and
a corrupt spool file among good ones while the spool drains.

Several clients keep posting NDJSON and JSON-array batches of mixed sizes (some large enough for
the columnar path, some holding an event the contract rejects, some resending an earlier batch).
Every batch's events carry ids of their own, so afterwards the stored event ids are compared,
id by id, with what the clients were told.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from flowsight.app import Services, build_services, create_app
from flowsight.collector.ingest import COLUMNAR_MIN_BYTES
from flowsight.collector.spool import Spool, SpooledBatch
from flowsight.settings import Settings
from flowsight.store import Store
from tests.conftest import event
from tests.faults import SwitchableClient, switchable_store

CLIENTS = 6
RESEND_RATIO = 0.15
MiB = 1024 * 1024
ROOMY = 256 * MiB


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


def body_key(event_id: str) -> str:
    return event_id.removeprefix("evt-").rsplit("-", 1)[0]


class Load:
    """Clients posting batches on threads until stopped, recording every answer per body."""

    def __init__(self, client: TestClient, retry_after: int, seed: int):
        self.client = client
        self.retry_after = str(retry_after)
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
        self.resend_limit: int | None = None
        """When set, only the bodies made before the first ``resend_limit`` are resent."""
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
            assert time.monotonic() < deadline, f"no {what} within {timeout} s"
            time.sleep(0.01)

    def more_answers(self, n: int) -> Callable[[], bool]:
        target = self.answers + n
        return lambda: self.answers >= target

    def ids_of(self, keys: Collection[str]) -> set[str]:
        return {i for key in keys for i in self.bodies[key].ids}

    def _run(self, client: int) -> None:
        rng = random.Random(self.seed * 100 + client)
        made = 0
        while not self.stopping.is_set():
            with self.lock:
                earlier = (
                    list(self.bodies.values())[: self.resend_limit] if rng.random() < RESEND_RATIO else []
                )
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
    load = Load(client, services.settings.retry_after_seconds, seed)
    load.start()
    try:
        yield load
    finally:
        load.stop()


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


def dead_letter_count(services: Services) -> int:
    return services.store.rows(f"SELECT count() FROM {services.schema.table('dead_letters')}")[0][0]


def assert_stored_exactly(services: Services, expected: set[str], refused_only: set[str]) -> None:
    """Exactly ``expected`` is stored, each event once; nothing of ``refused_only``."""
    ids, rows = stored_ids(services)
    missing, unexpected = expected - ids, ids - expected
    assert not missing, f"{len(missing)} acknowledged events are not stored, e.g. {sorted(missing)[:5]}"
    assert not ids & refused_only, (
        f"events refused with 503 are stored, e.g. {sorted(ids & refused_only)[:5]}"
    )
    assert not unexpected, f"{len(unexpected)} events are stored but were never acknowledged"
    assert rows == len(ids), f"{rows - len(ids)} events are stored more than once"


@pytest.mark.parametrize(
    ("spool_max_bytes", "fills_up"),
    [
        pytest.param(ROOMY, False, id="a roomy spool takes every batch while the database is down"),
        pytest.param(400_000, True, id="a small spool fills up and answers 503 until it drains"),
    ],
)
def test_acknowledged_events_are_stored_exactly_once_after_the_database_was_down_under_load(
    settings: Settings, engine: Store, clock: Any, spool_max_bytes: int, fills_up: bool
) -> None:
    services, switch = faulty_services(settings, engine, clock, spool_max_bytes=spool_max_bytes)
    columnar = count_columnar(services)
    spool = services.writer.spool
    with TestClient(create_app(services)) as client:
        keep_duplicates_visible(services)
        with loading(client, services, seed=1 if fills_up else 2) as load:
            load.wait(load.more_answers(40), "answers while the database is up")
            switch.go_down()
            if fills_up:
                load.wait(lambda: load.refused.total() >= 10, "503s from a full spool")
            else:
                load.wait(lambda: len(spool) >= 15, "batches in the spool")
            switch.come_back()
            load.wait(lambda: services.writer.stats.drained_batches >= 3, "drained batches")
            load.wait(load.more_answers(60), "answers while the spool drains")
        assert services.writer.drain(timeout=30), f"{len(spool)} batches still spooled"
        assert not load.problems, load.problems[:5]
        assert switch.failed_calls > 0 and columnar["columnar"] > 0
        assert bool(load.refused) == fills_up
        stats = services.writer.stats
        assert stats.drained_batches == stats.spooled_batches > 0
        assert not spool.quarantine.exists()
        acked = set(load.acked)
        assert_stored_exactly(services, load.ids_of(acked), load.ids_of(set(load.refused) - acked))
        assert dead_letter_count(services) == load.rejected
        assert client.get("/readyz").status_code == 200


def test_the_spool_empties_while_clients_keep_sending_after_the_database_is_back(
    settings: Settings, engine: Store, clock: Any
) -> None:
    services, switch = faulty_services(settings, engine, clock, spool_max_bytes=ROOMY)
    spool = services.writer.spool
    with TestClient(create_app(services)) as client, loading(client, services, seed=3) as load:
        load.wait(load.more_answers(20), "answers while the database is up")
        switch.go_down()
        load.wait(lambda: len(spool) >= 30, "batches in the spool")
        switch.come_back()
        # With no clients sending, 30 batches drain in about 2 s; these clients' pace is one the
        # service keeps up with when healthy.
        load.wait(spool.is_empty, "empty spool while clients keep sending", timeout=10)


def read_spooled(data: bytes, name: str, scratch: Path) -> SpooledBatch:
    """A spool file's batch, read from a copy of its bytes (the live spool is not touched)."""
    spool = Spool(scratch, len(data) + 1)
    (scratch / name).write_bytes(data)
    batch = spool.oldest()
    assert batch is not None
    return batch


def corrupt_a_middle_file(spool: Spool, new_keys: set[str], scratch: Path) -> tuple[Path, SpooledBatch]:
    """Flip a byte of a spooled batch, neither the oldest nor the newest, that holds a body of
    ``new_keys``; returns the file and the batch it held."""
    files = sorted(spool.path.glob("*.spool"))[1:-1]
    for n, file in enumerate(sorted(files, key=lambda f: abs(files.index(f) - len(files) // 2))):
        data = file.read_bytes()
        batch = read_spooled(data, file.name, scratch / str(n))
        if any(body_key(i) in new_keys for i in batch.events.column("event_id").to_pylist()):
            damaged = bytearray(data)
            damaged[len(damaged) // 2] ^= 0xFF  # same size: the spool's byte count stays right
            staged = file.with_name(f"{file.name}.corrupting")
            staged.write_bytes(bytes(damaged))
            os.replace(staged, file)  # so the writer never reads a half-written file
            return file, batch
    raise AssertionError("no spooled batch holds a body made while the database was down")


def test_a_corrupt_spool_file_is_quarantined_and_the_others_drain_under_load(
    settings: Settings, engine: Store, clock: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="flowsight.collector.spool")
    services, switch = faulty_services(settings, engine, clock, spool_max_bytes=ROOMY)
    spool = services.writer.spool
    with TestClient(create_app(services)) as client:
        keep_duplicates_visible(services)
        with loading(client, services, seed=5) as load:
            load.wait(load.more_answers(40), "answers while the database is up")
            switch.go_down()
            # What the clients make from now on they send once, so the loss of a file shows.
            with load.lock:
                load.resend_limit = made_before = len(load.bodies)
            load.wait(lambda: len(spool) >= 12, "batches in the spool")
            made_while_down = set(list(load.bodies)[made_before:])
            # While the database is down the writer retries only the oldest file.
            victim, held = corrupt_a_middle_file(spool, made_while_down, tmp_path)
            switch.come_back()
            quarantined = spool.quarantine / victim.name
            load.wait(quarantined.exists, "quarantined file")
            load.wait(load.more_answers(60), "answers after the quarantine")
        assert services.writer.drain(timeout=30), f"{len(spool)} batches still spooled"
        assert not load.problems, load.problems[:5]

        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, errors
        assert f"spool file {victim.name} is corrupt (checksum mismatch)" in errors[0]
        assert [p.name for p in spool.quarantine.iterdir()] == [victim.name]
        stats = services.writer.stats
        assert stats.drained_batches == stats.spooled_batches - 1

        # A request is spooled whole: each body's ids are in the file once per copy it holds, and
        # the body is lost only if every acknowledged copy was in that file.
        copies = Counter(held.events.column("event_id").to_pylist())
        in_file = {key: copies[min(body.ids)] for key, body in load.bodies.items() if copies[min(body.ids)]}
        assert sum(n * len(load.bodies[key].ids) for key, n in in_file.items()) == held.events.num_rows
        assert all(n <= load.acked[key] for key, n in in_file.items()), "a spooled batch was not acknowledged"
        lost = {key for key, n in in_file.items() if n == load.acked[key]}
        sent_once = in_file.keys() & made_while_down
        assert sent_once and sent_once <= lost
        kept = {key for key in load.acked if key not in lost}
        assert_stored_exactly(services, load.ids_of(kept), load.ids_of(lost | set(load.refused) - kept))
        assert dead_letter_count(services) == load.rejected - held.dead_letters.num_rows
