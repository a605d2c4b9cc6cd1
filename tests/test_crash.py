"""A process killed with SIGKILL mid-load loses no acknowledged event and duplicates none."""

from __future__ import annotations

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
BATCHES = 80


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
    return response.json() if response.status_code == 200 else None  # type: ignore[no-any-return]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path / "data")
    yield process
    process.kill()


def test_sigkill_under_load_then_restart_loses_and_duplicates_nothing(server: ServerProcess) -> None:
    bodies = [body(i) for i in range(BATCHES)]
    server.start()
    acked: set[int] = set()
    lock = threading.Lock()
    killed = threading.Event()

    def worker(indexes: list[int]) -> None:
        for index in indexes:
            if killed.is_set():
                return
            result = send(server.url, bodies[index])
            if result is not None:
                assert result["accepted"] == BATCH
                with lock:
                    acked.add(index)

    threads = [threading.Thread(target=worker, args=(list(range(k, BATCHES, 4)),)) for k in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    while len(acked) < BATCHES // 3:
        assert time.monotonic() < deadline, (
            f"only {len(acked)} batches acknowledged:\n{server.log.read_text()[-2000:]}"
        )
        time.sleep(0.005)
    server.kill()
    killed.set()
    for thread in threads:
        thread.join()
    assert 0 < len(acked) < BATCHES, "the kill must land mid-load"

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
