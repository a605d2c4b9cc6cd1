"""The writer's group commit: a small batch waits a moment while other requests are still
arriving, so they share its insert; a lone request, or one after the others stopped coming, is
written at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from flowsight.collector.events import EventBatch
from flowsight.collector.spool import Spool
from flowsight.collector.writer import EventWriter, WriteOutcome
from flowsight.workflows import DEFAULT_WORKFLOWS
from tests.conftest import event

LINGER_S = 1.5


def batch(*ids: str) -> Any:
    b = EventBatch(DEFAULT_WORKFLOWS, "api", 1_795_600_000_000)
    for i, event_id in enumerate(ids):
        assert b.add(i, event(event_id))
    return b.to_arrow()


def writer(services: Any, tmp_path: Path) -> EventWriter:
    services.start()
    services.writer.stop()  # the service's own writer; this test drives its own
    w = EventWriter(
        services.store, services.schema, Spool(tmp_path / "spool", 10_000_000), batch_rows=1000,
        linger_seconds=LINGER_S,
    )  # fmt: skip
    w.start()
    return w


def another_request(
    w: EventWriter, seconds: float, ids: tuple[str, ...]
) -> tuple[threading.Thread, list[Future[WriteOutcome]]]:
    """A request on its own thread (its own context): it arrives, takes ``seconds`` to read and
    validate, then submits ``ids`` (none: it ends without a batch, as a rejected body does)."""
    futures: list[Future[WriteOutcome]] = []
    started = threading.Event()

    def run() -> None:
        with w.arriving():
            started.set()
            time.sleep(seconds)
            if ids:
                futures.append(w.submit(batch(*ids)))

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(10)
    return thread, futures


def test_a_small_batch_waits_for_a_request_still_arriving_and_they_share_one_insert(
    services: Any, tmp_path: Path
) -> None:
    w = writer(services, tmp_path)
    try:
        commits = w.stats.commits
        thread, later = another_request(w, 0.3, ("b-1",))
        first = w.submit(batch("a-1", "a-2"))
        thread.join()
        assert (first.result(timeout=30).accepted, later[0].result(timeout=30).accepted) == (2, 1)
        assert w.stats.commits == commits + 1
    finally:
        w.stop()


def test_a_lone_request_is_written_without_waiting(services: Any, tmp_path: Path) -> None:
    w = writer(services, tmp_path)
    try:
        w.submit(batch("warm-2")).result(timeout=30)
        started = time.monotonic()
        with w.arriving():  # its own mark ends at its submit: it never waits for itself
            future = w.submit(batch("c-1"))
            assert future.result(timeout=30).accepted == 1
        assert time.monotonic() - started < LINGER_S / 2
    finally:
        w.stop()


def test_a_batch_of_a_quarter_of_the_insert_size_does_not_wait(services: Any, tmp_path: Path) -> None:
    w = writer(services, tmp_path)
    try:
        thread, _ = another_request(w, LINGER_S, ())
        started = time.monotonic()
        big = batch(*(f"d-{i}" for i in range(250)))
        assert w.submit(big).result(timeout=30).accepted == 250
        assert time.monotonic() - started < LINGER_S / 2
        thread.join()
    finally:
        w.stop()


def test_the_wait_ends_when_the_other_request_ends_without_a_batch(services: Any, tmp_path: Path) -> None:
    w = writer(services, tmp_path)
    try:
        commits = w.stats.commits
        thread, _ = another_request(w, 0.2, ())  # rejected: nothing to submit
        started = time.monotonic()
        assert w.submit(batch("e-1")).result(timeout=30).accepted == 1
        waited = time.monotonic() - started
        thread.join()
        assert 0.1 < waited < LINGER_S / 2  # waited for it, and not the whole linger
        assert w.stats.commits == commits + 1
    finally:
        w.stop()
