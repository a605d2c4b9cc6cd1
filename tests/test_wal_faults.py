"""Full volumes, for real: the database's disk filling up under load in a running ``flowsight
serve``, and the write-ahead log's disk filling up under the app.

Each volume is a tmpfs of its own (root only, as CI runs the tests): a full disk is the kernel's
``ENOSPC``, a short write and all, not a simulation of one.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from flowsight.app import Services, build_services, create_app
from flowsight.collector import wal
from flowsight.collector.wal import SUFFIX
from flowsight.settings import Settings
from flowsight.store import Store
from tests.conftest import event
from tests.faults import switchable_store
from tests.server import ServerProcess, query_stopped_store

MiB = 1024 * 1024

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (skips the test when it cannot be mounted)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {path}: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def resize(path: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def ndjson(events: list[dict[str, Any]]) -> bytes:
    return b"\n".join(orjson.dumps(e) for e in events)


class Senders:
    """Threads posting batches of new events until stopped; what was acknowledged, id by id."""

    def __init__(
        self,
        post: Callable[[bytes], Any],
        batch: int,
        threads: int,
        retry_after: str = "5",
        prefix: str = "s",
    ):
        self.post = post
        self.prefix = prefix
        self.batch = batch
        self.retry_after = retry_after
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.acked: set[str] = set()
        self.refused: set[str] = set()
        self.refusals: list[str] = []
        """The text of each 503."""
        self.answers: dict[int, int] = {}
        self.problems: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in range(threads)]

    def __enter__(self) -> Senders:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(120)
        assert not any(t.is_alive() for t in self.threads), "a sender is still waiting for an answer"

    def _run(self, sender: int) -> None:
        n = 0
        while not self.stopping.is_set():
            key = f"{self.prefix}{sender}-{n}"
            n += 1
            events = [event(f"{key}-{i}", correlation_id=f"SO-{key}-{i // 5}") for i in range(self.batch)]
            ids = {e["event_id"] for e in events}
            try:
                status, headers, text = self.post(ndjson(events))
            except Exception as exc:  # the server went away, or the app raised
                with self.lock:
                    self.problems.append(f"{key}: {exc!r}")
                continue
            with self.lock:
                self.answers[status] = self.answers.get(status, 0) + 1
                if status == 200:
                    answer = orjson.loads(text)
                    if answer["accepted"] != self.batch:
                        self.problems.append(f"{key}: answered {answer}")
                    self.acked |= ids
                elif status == 503 and headers.get("retry-after") == self.retry_after:
                    self.refused |= ids
                    self.refusals.append(text)
                else:
                    self.problems.append(f"{key}: answered {status} {headers} {text[:300]}")
            if status == 503:
                time.sleep(0.05)

    def wait(self, condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert not self.problems, self.problems[:5]
            assert time.monotonic() < deadline, f"no {what} within {timeout} s (answers: {self.answers})"
            time.sleep(0.05)


# -- the database's volume fills up ---------------------------------------------------------------


def metrics(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return {m[1]: float(m[2]) for m in re.finditer(r"^([a-z_]+) (\S+)$", text, re.MULTILINE)}


def test_the_database_volume_filling_up_under_load_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """chDB's data directory on an 8 MiB tmpfs: the start and its migrations take under 1 MiB,
    and some 50 000 events fill the rest. Inserts then fail (``NOT_ENOUGH_SPACE``, at times
    after the events part was written and before its views' parts), the log takes every batch,
    and once the volume grows the loader stores each acknowledged event once."""
    data = tmp_path / "data"
    database = data / "clickhouse"  # where tests.server.query_stopped_store looks
    log = tmp_path / "wal"  # on the test's own, roomy, disk
    with tmpfs(database, "8m"):
        server = ServerProcess(
            data,
            env={
                "FLOWSIGHT_CLICKHOUSE_DSN": f"chdb://{database}",
                "FLOWSIGHT_WAL_DIR": str(log),
                "FLOWSIGHT_LOAD_RETRY_SECONDS": "0.05",
                "FLOWSIGHT_LOAD_RETRY_MAX_SECONDS": "0.5",
            },
        )
        try:
            server.start()
            server.stop()  # the tables are made: keep the events table from merging an event
            # stored twice into one before it is counted
            query_stopped_store(
                data,
                "ALTER TABLE flowsight.events MODIFY SETTING"
                " max_bytes_to_merge_at_max_space_in_pool = 1, max_bytes_to_merge_at_min_space_in_pool = 1",
            )
            server.start()

            def post(body: bytes) -> tuple[int, Any, str]:
                response = httpx.post(
                    f"{server.url}/v1/events",
                    content=body,
                    headers={"content-type": "application/x-ndjson"},
                    timeout=60,
                )
                return response.status_code, response.headers, response.text

            with Senders(post, batch=500, threads=3) as senders:
                senders.wait(
                    lambda: metrics(server.url)["flowsight_loader_retries_total"] > 0, "loader retries"
                )
                failing_from = len(senders.acked)
                # The log takes what the database cannot store.
                senders.wait(lambda: len(senders.acked) >= failing_from + 20 * 500, "batches acknowledged")
            assert not senders.problems, senders.problems[:5]
            assert "loading into events failed" in server.log.read_text()
            resize(database, "512m")

            def caught_up() -> bool:
                assert "Exception in thread flowsight-loader" not in server.log.read_text(), (
                    f"the loader died:\n{server.log.read_text()[-3000:]}"
                )
                m = metrics(server.url)
                return m["flowsight_loader_lag_seconds"] == 0 and m["flowsight_loader_waiting_rows"] == 0

            senders.wait(caught_up, "loader catching up once the volume grew", timeout=90)
            server.stop()
            [[rows, ids, orders, distinct_orders]] = query_stopped_store(
                data,
                "SELECT count(), groupUniqArray(event_id), (SELECT count() FROM flowsight.order_state FINAL),"
                " uniqExact(correlation_id) FROM flowsight.events",
            )
            missing, unexpected = senders.acked - set(ids), set(ids) - senders.acked
            assert not missing, (
                f"{len(missing)} acknowledged events are not stored, e.g. {sorted(missing)[:5]}"
            )
            assert not unexpected, f"{len(unexpected)} events are stored but were never acknowledged"
            assert rows == len(ids), f"{rows - len(ids)} events are stored more than once"
            assert orders == distinct_orders, "the per-order state misses orders whose events are stored"
        finally:
            server.kill()


# -- the log's volume fills up --------------------------------------------------------------------


class WalWrites:
    """Counts, in the log's module only, writes the kernel cut short and writes it refused."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.short = 0
        self.refused = 0
        real = os.write

        def write(fd: int, data: Any) -> int:
            if sys._getframe(1).f_globals.get("__name__") != wal.__name__:
                return real(fd, data)
            try:
                written = real(fd, data)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    self.refused += 1
                raise
            if written < len(data):
                self.short += 1
            return written

        monkeypatch.setattr(wal.os, "write", write)


def in_process_post(client: TestClient) -> Callable[[bytes], tuple[int, Any, str]]:
    def post(body: bytes) -> tuple[int, Any, str]:
        response = client.post("/v1/events", content=body, headers={"content-type": "application/x-ndjson"})
        return response.status_code, response.headers, response.text

    return post


def fill_the_log(services: Services, client: TestClient) -> Senders:
    """Post from three clients until the log's volume refuses a record (503); returns what they
    were told."""
    retry_after = str(services.settings.retry_after_seconds)
    with Senders(in_process_post(client), batch=300, threads=3, retry_after=retry_after) as senders:
        senders.wait(lambda: len(senders.refused) >= 5 * 300, "503s from a full volume", timeout=60)
    assert not senders.problems, senders.problems[:5]
    assert senders.acked and senders.answers.keys() == {200, 503}
    assert all("volume is full" in text for text in senders.refusals), senders.refusals[:3]
    return senders


def keep_duplicates_visible(services: Services) -> None:
    """Stop background merges of the events table: a ReplacingMergeTree merge would fold a
    duplicate insert away before the counts are read."""
    services.store.command(f"SYSTEM STOP MERGES {services.schema.table('events')}")


def stored(services: Services) -> tuple[set[str], int]:
    """The distinct stored event ids, and how many rows the events table holds."""
    events = services.schema.table("events")
    [(rows,)] = services.store.rows(f"SELECT count() FROM {events}")
    return {r[0] for r in services.store.rows(f"SELECT DISTINCT event_id FROM {events}")}, rows


def assert_stored_exactly(services: Services, senders: Senders) -> None:
    thread = services.loader._thread
    assert thread is not None and thread.is_alive(), f"the loader died ({services.loader.stats.last_error})"
    assert services.writer.wait_idle(60), "acknowledged events were not loaded"
    ids, rows = stored(services)
    assert not senders.acked - ids, f"{len(senders.acked - ids)} acknowledged events are not stored"
    assert not ids - senders.acked, (
        f"{len(ids - senders.acked)} events are stored but were never acknowledged"
    )
    assert rows == len(ids), f"{rows - len(ids)} events are stored more than once"


def test_a_full_log_volume_answers_503_with_retry_after_and_loses_nothing(
    settings: Settings, engine: Store, clock: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log on a 2 MiB tmpfs and the database down: batches are acknowledged until the
    volume is full, then answered 503 with Retry-After (the write cut short is cut off, nothing
    of it acknowledged); once the database is back the loader empties the log, the volume takes
    batches again, and a clean stop leaves no file behind."""
    writes = WalWrites(monkeypatch)
    with tmpfs(tmp_path / "wal", "2m") as log:
        store, switch = switchable_store(engine)
        services = build_services(settings.model_copy(update={"wal_dir": log}), store=store, clock=clock)
        with TestClient(create_app(services)) as client, contextlib.ExitStack() as stack:
            stack.callback(switch.come_back)  # a failed test's stop must not wait for the database
            keep_duplicates_visible(services)
            switch.go_down()
            senders = fill_the_log(services, client)
            assert writes.refused > 0 and writes.short > 0, "the volume never filled within a record"
            assert services.loader.stats.retries > 0
            switch.come_back()
            assert_stored_exactly(services, senders)
            retry_after = str(services.settings.retry_after_seconds)
            with Senders(
                in_process_post(client), batch=300, threads=3, retry_after=retry_after, prefix="more"
            ) as more:
                more.wait(
                    lambda: len(more.acked) >= 2 * len(senders.acked), "the volume taking batches again"
                )
            assert not more.problems, more.problems[:5]
            senders.acked |= more.acked
            assert_stored_exactly(services, senders)
        assert [f.name for f in log.iterdir()] == [], "the log keeps files after a clean stop"


def test_a_record_cut_short_by_a_full_log_volume_is_not_recovered_after_a_restart(
    settings: Settings,
    engine: Store,
    clock: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Events loaded, then the database down and the log's volume full mid-record; the service
    stops with the log unloaded. Started again on the same log with the database back, it loads
    every record (whole ones only: nothing cut short to trip over), each event once."""
    caplog.set_level(logging.WARNING)
    writes = WalWrites(monkeypatch)
    with tmpfs(tmp_path / "wal", "2m") as log:
        store, switch = switchable_store(engine)
        on_log = settings.model_copy(update={"wal_dir": log})
        first = build_services(on_log, store=store, clock=clock)
        with TestClient(create_app(first)) as client, contextlib.ExitStack() as stack:
            stack.callback(first.loader.stop, 0)  # its stop must not wait for a database that is down
            keep_duplicates_visible(first)
            post = in_process_post(client)
            loaded: set[str] = set()
            for n in range(10):  # loaded; their records may stay in the open segment
                events = [event(f"loaded-{n}-{i}") for i in range(300)]
                assert post(ndjson(events))[0] == 200
                loaded |= {e["event_id"] for e in events}
            assert first.writer.wait_idle(60)
            switch.go_down()
            senders = fill_the_log(first, client)
            assert writes.refused > 0 and writes.short > 0, "the volume never filled within a record"
        assert list(log.glob(f"*{SUFFIX}")), "the unloaded records should be in the log"
        caplog.clear()
        restarted = build_services(on_log, store=engine, clock=clock)
        with TestClient(create_app(restarted)):
            senders.acked |= loaded
            assert_stored_exactly(restarted, senders)
            assert restarted.loader.stats.events_loaded == len(senders.acked - loaded)
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == []
        assert [f.name for f in log.iterdir()] == []
