"""The writer's group commit: under steady load a small batch waits a moment for company, so
inserts stay large; after a quiet spell a request is written at once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from flowsight.collector.events import EventBatch
from flowsight.collector.spool import Spool
from flowsight.collector.writer import EventWriter
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


def test_under_load_small_batches_arriving_together_share_one_insert(services: Any, tmp_path: Path) -> None:
    w = writer(services, tmp_path)
    try:
        w.submit(batch("warm-1")).result(timeout=30)  # a commit just ended: the writer is under load
        commits = w.stats.commits
        first = w.submit(batch("a-1", "a-2"))
        time.sleep(0.2)
        second = w.submit(batch("b-1"))
        assert (first.result(timeout=30).accepted, second.result(timeout=30).accepted) == (2, 1)
        assert w.stats.commits == commits + 1
    finally:
        w.stop()


def test_after_a_quiet_spell_a_request_is_written_without_waiting(services: Any, tmp_path: Path) -> None:
    w = writer(services, tmp_path)
    try:
        w.submit(batch("warm-2")).result(timeout=30)
        time.sleep(1.1)  # no commit for over a second: not under load any more
        started = time.monotonic()
        assert w.submit(batch("c-1")).result(timeout=30).accepted == 1
        assert time.monotonic() - started < LINGER_S / 2
    finally:
        w.stop()


def test_a_batch_of_a_quarter_of_the_insert_size_does_not_wait(services: Any, tmp_path: Path) -> None:
    w = writer(services, tmp_path)
    try:
        w.submit(batch("warm-3")).result(timeout=30)
        started = time.monotonic()
        big = batch(*(f"d-{i}" for i in range(250)))
        assert w.submit(big).result(timeout=30).accepted == 250
        assert time.monotonic() - started < LINGER_S / 2
    finally:
        w.stop()
