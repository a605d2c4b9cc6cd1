"""A process killed with SIGKILL mid-load loses no acknowledged event and duplicates none, however
often it is killed in a row: each start loads what the last run's log holds (verified against
ClickHouse first), while new batches arrive, and the next kill may land anywhere in that."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import event
from tests.server import ServerProcess, query_stopped_store

BATCH = 500
BATCHES = 100
KILLS = 3
SENDERS = 4


def body(index: int) -> bytes:
    events = [
        event(f"{index}-{i}", correlation_id=f"SO-{index}-{i // 7}", occurred_at="2026-11-26T09:00:00Z")
        for i in range(BATCH)
    ]
    return b"\n".join(orjson.dumps(e) for e in events)


def send(url: str, data: bytes) -> dict[str, Any] | None:
    try:
        response = httpx.post(
            f"{url}/v1/events", content=data, headers={"content-type": "application/x-ndjson"}, timeout=30
        )
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path / "data")
    yield process
    process.kill()


def load_until_killed(
    server: ServerProcess,
    bodies: list[bytes],
    todo: list[int],
    acked: set[int],
    kill_after: int,
    pause: float,
) -> None:
    """Senders post the batches of ``todo`` (in order, resends first); once ``kill_after`` of
    them are acknowledged, and ``pause`` s later, the server is SIGKILLed under them."""
    lock = threading.Lock()
    queue = iter(todo)
    killed = threading.Event()
    acked_now = [0]
    problems: list[str] = []

    def sender() -> None:
        while not killed.is_set():
            with lock:
                index = next(queue, None)
            if index is None:
                return
            result = send(server.url, bodies[index])
            if result is None:
                if not killed.is_set():
                    problems.append(f"batch {index} failed before the kill")
                continue  # the kill took it: not acknowledged, sent again in the next round
            if result["accepted"] + result["duplicates"] != BATCH:
                problems.append(f"batch {index}: {result}")
            with lock:
                acked.add(index)
                acked_now[0] += 1

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(SENDERS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    while acked_now[0] < kill_after:
        assert time.monotonic() < deadline, (
            f"only {acked_now[0]} batches acknowledged:\n{server.log.read_text()[-2000:]}"
        )
        assert any(t.is_alive() for t in threads), "every batch was acknowledged before the kill"
        time.sleep(0.005)
    time.sleep(pause)
    killed.set()  # from here on a failed request is the kill's doing
    server.kill()
    for thread in threads:
        thread.join(60)
    assert not problems, problems[:5]


def keep_duplicates_visible(server: ServerProcess) -> None:
    """Create the tables (a first start), then keep the events table from merging its parts:
    a ReplacingMergeTree merge folds an event stored twice into one within seconds, and the
    final count would not see it."""
    server.start()
    server.stop()
    query_stopped_store(
        server.data_dir,
        "ALTER TABLE flowsight.events MODIFY SETTING"
        " max_bytes_to_merge_at_max_space_in_pool = 1, max_bytes_to_merge_at_min_space_in_pool = 1",
    )


def test_sigkills_under_load_in_a_row_then_a_clean_run_lose_and_duplicate_nothing(
    server: ServerProcess,
) -> None:
    rng = random.Random(20261126)
    bodies = [body(i) for i in range(BATCHES)]
    acked: set[int] = set()
    keep_duplicates_visible(server)
    for kill in range(KILLS):
        server.start()
        before = len(acked)
        # What the last kill took unanswered is sent again first, as a client retrying would.
        todo = sorted(set(range(BATCHES)) - acked)
        load_until_killed(server, bodies, todo, acked, rng.randint(4, 16), rng.uniform(0, 0.3))
        assert before < len(acked) < BATCHES, f"kill {kill + 1} must land mid-load"

    server.start()
    try:
        # Every acknowledged batch is already stored: resending it adds nothing.
        for index in sorted(acked):
            result = send(server.url, bodies[index])
            assert result is not None
            assert (result["accepted"], result["duplicates"]) == (0, BATCH), (
                f"batch {index} was acknowledged but lost"
            )
        # The rest are sent again, as a client retrying would.
        for index in sorted(set(range(BATCHES)) - acked):
            result = send(server.url, bodies[index])
            assert result is not None and result["accepted"] + result["duplicates"] == BATCH
    finally:
        server.stop()

    [[rows, unique, state_orders]] = query_stopped_store(
        server.data_dir,
        "SELECT (SELECT count() FROM flowsight.events), (SELECT uniqExact(event_id) FROM flowsight.events),"
        " (SELECT count() FROM flowsight.order_state FINAL)",
    )
    assert (rows, unique) == (BATCHES * BATCH, BATCHES * BATCH)
    assert state_orders == BATCHES * ((BATCH + 6) // 7)
    assert list((server.data_dir / "wal").glob("*.wal")) == [], "a clean stop leaves the log empty"
