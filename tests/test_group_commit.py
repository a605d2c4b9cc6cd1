"""The writer's group commit: requests that arrive while a record is being fsynced share the next
record; no request is acknowledged before the fsync of its record returned; a failed write or
fsync acknowledges nothing and answers 503."""

from __future__ import annotations

import errno
import os
import threading
import time
from concurrent.futures import Future
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from flowsight.collector import wal
from flowsight.collector.events import EventBatch
from flowsight.collector.writer import WriteOutcome
from flowsight.workflows import DEFAULT_WORKFLOWS
from tests.conftest import event


def batch(*ids: str) -> Any:
    b = EventBatch(DEFAULT_WORKFLOWS, "api", 1_795_600_000_000)
    for i, event_id in enumerate(ids):
        assert b.add(i, event(event_id))
    return b.to_arrow()


class Journal:
    """What happened, in order, on the log's file descriptors and to the requests' futures."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fsync_seconds: float = 0.0):
        self.lock = threading.Lock()
        self.entries: list[tuple[str, Any]] = []
        self.in_fsync = threading.Event()
        real_write, real_fsync = os.write, os.fsync

        def write(fd: int, data: Any) -> int:
            n = real_write(fd, data)
            self.note("write", fd)
            return n

        def fsync(fd: int) -> None:
            self.in_fsync.set()
            time.sleep(fsync_seconds)
            real_fsync(fd)
            self.note("fsynced", fd)
            self.in_fsync.clear()

        monkeypatch.setattr(wal.os, "write", write)
        monkeypatch.setattr(wal.os, "fsync", fsync)

    def note(self, what: str, detail: Any) -> None:
        with self.lock:
            self.entries.append((what, detail))

    def watch(self, name: str, future: Future[WriteOutcome]) -> Future[WriteOutcome]:
        future.add_done_callback(lambda _: self.note("ack", name))
        return future


def test_no_acknowledgement_before_the_fsync_of_its_record_returned(
    client: TestClient, services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(monkeypatch, fsync_seconds=0.02)
    futures = []
    threads = []
    for t in range(6):

        def send(t: int = t) -> None:
            for n in range(5):
                futures.append(journal.watch(f"{t}-{n}", services.writer.submit(batch(f"o-{t}-{n}"))))
                futures[-1].result(timeout=30)

        threads.append(threading.Thread(target=send))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(futures) == 30 and all(f.result().accepted == 1 for f in futures)
    unsynced = set()  # descriptors written to since their last fsync returned
    acks = 0
    for what, detail in journal.entries:
        if what == "write":
            unsynced.add(detail)
        elif what == "fsynced":
            unsynced.discard(detail)
        else:
            acks += 1
            assert not unsynced, f"request {detail} was acknowledged while its record was not fsynced"
    assert acks == 30


def test_requests_arriving_during_an_fsync_share_the_next_record(
    client: TestClient, services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(monkeypatch, fsync_seconds=0.3)
    commits = services.writer.stats.commits
    first = services.writer.submit(batch("first"))
    assert journal.in_fsync.wait(10)
    waiting = [services.writer.submit(batch(f"w-{i}")) for i in range(10)]  # while it fsyncs
    assert first.result(timeout=30).accepted == 1
    assert all(f.result(timeout=30).accepted == 1 for f in waiting)
    assert services.writer.stats.commits == commits + 2
    assert services.writer.wait_idle()
    [(stored,)] = services.store.rows(f"SELECT count() FROM {services.schema.table('events')}")
    assert stored == 11


@pytest.mark.parametrize(
    ("failure", "answer"),
    [
        pytest.param(errno.EIO, "writing the write-ahead log failed", id="a failed fsync answers 503"),
        pytest.param(errno.ENOSPC, "volume is full", id="a full volume at fsync answers 503"),
    ],
)
def test_a_failed_fsync_acknowledges_nothing(
    client: TestClient, services: Any, monkeypatch: pytest.MonkeyPatch, failure: int, answer: str
) -> None:
    def fails(fd: int) -> None:
        raise OSError(failure, os.strerror(failure))

    monkeypatch.setattr(wal.os, "fsync", fails)
    response = client.post(
        "/v1/events", content=orjson.dumps([event("lost")]), headers={"content-type": "application/json"}
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == str(services.settings.retry_after_seconds)
    assert answer in response.json()["error"]
    monkeypatch.undo()
    again = client.post(
        "/v1/events", content=orjson.dumps([event("lost")]), headers={"content-type": "application/json"}
    )
    assert (again.status_code, again.json()["accepted"]) == (200, 1)  # not taken for a duplicate
    assert services.writer.wait_idle()
    [(stored,)] = services.store.rows(f"SELECT count() FROM {services.schema.table('events')}")
    assert stored == 1
