"""The writer's group commit: under steady load a small batch waits a moment for company, so
inserts stay large; it stops waiting once requests stop coming, and after a quiet spell a
request is written at once."""

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


def writer(services: Any, tmp_path: Path, gap_s: float = 1.0) -> EventWriter:
    services.start()
    services.writer.stop()  # the service's own writer; this test drives its own
    w = EventWriter(
        services.store, services.schema, Spool(tmp_path / "spool", 10_000_000), batch_rows=1000,
        linger_seconds=LINGER_S, linger_gap_seconds=gap_s,
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


def test_a_waiting_batch_is_written_once_no_other_request_comes_for_the_gap(
    services: Any, tmp_path: Path
) -> None:
    w = writer(services, tmp_path, gap_s=0.1)
    try:
        w.submit(batch("warm-4")).result(timeout=30)  # under load: a small batch may wait
        commits = w.stats.commits
        started = time.monotonic()
        first = w.submit(batch("e-1"))
        time.sleep(0.05)
        second = w.submit(batch("e-2"))  # within the gap: the writer waits on for it
        assert (first.result(timeout=30).accepted, second.result(timeout=30).accepted) == (1, 1)
        assert w.stats.commits == commits + 1
        assert time.monotonic() - started < LINGER_S / 2  # not the whole linger: no one else came
    finally:
        w.stop()
