"""The embedded engine's merge threads run at a lower priority than the service's own threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from flowsight import merge_priority
from flowsight.merge_priority import DEFAULT_NICE, MERGE_THREADS, lower_merge_priority, renice_merge_threads

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="Linux per-thread priorities")


def nice_of(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


@contextmanager
def named_thread(name: str) -> Iterator[int]:
    """A waiting thread whose name, as the kernel knows it, is ``name``; yields its id."""
    release, started = threading.Event(), threading.Event()
    box: list[int] = []

    def run() -> None:
        box.append(threading.get_native_id())
        Path(f"/proc/self/task/{box[0]}/comm").write_text(name)
        started.set()
        release.wait(30)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(5)
    try:
        yield box[0]
    finally:
        release.set()
        thread.join(5)


@contextmanager
def watching(nice: int, every: float) -> Iterator[None]:
    """The process's watcher at ``nice`` and ``every`` for a block, then back to the defaults."""
    try:
        assert lower_merge_priority(nice, every)
        yield
    finally:
        lower_merge_priority(DEFAULT_NICE, merge_priority.CHECK_SECONDS)


def wait_for(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_a_merge_thread_gets_the_niceness_and_other_threads_keep_theirs() -> None:
    (merge_name,) = MERGE_THREADS
    with named_thread(merge_name) as merge, named_thread("flowsight-other") as other:
        before = nice_of(other)

        changed = renice_merge_threads(7)

        assert changed >= 1
        assert nice_of(merge) == 7
        assert nice_of(other) == before
        assert nice_of(threading.get_native_id()) == before


def test_niceness_is_only_ever_raised() -> None:
    (merge_name,) = MERGE_THREADS
    with named_thread(merge_name) as merge:
        os.setpriority(os.PRIO_PROCESS, merge, 15)

        renice_merge_threads(7)

        assert nice_of(merge) == 15


def test_merge_threads_started_later_are_reached_by_the_watcher() -> None:
    (merge_name,) = MERGE_THREADS
    with watching(9, every=0.05), named_thread(merge_name) as late:
        assert wait_for(lambda: nice_of(late) == 9), f"nice {nice_of(late)}"


def test_a_niceness_outside_what_linux_allows_is_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and 19"):
        lower_merge_priority(20)
    with pytest.raises(ValueError, match="between 0 and 19"):
        lower_merge_priority(-1)


ENGINE_SCRIPT = """
import json, os, sys, time
from pathlib import Path
from flowsight.store import Store

store = Store.connect("chdb://" + sys.argv[1], "default", merge_nice=int(sys.argv[2]))
store.command("CREATE TABLE t (x UInt64) ENGINE = MergeTree ORDER BY x")
for i in range(6):  # parts enough for the engine to start merging them
    store.command(f"INSERT INTO t SELECT number FROM numbers({i * 1000}, 1000)")

def nices(name):
    return [os.getpriority(os.PRIO_PROCESS, int(t.name)) for t in Path("/proc/self/task").iterdir()
            if (t / "comm").read_text().strip() == name]

deadline = time.monotonic() + 20
while time.monotonic() < deadline and (not nices("MergeMutate") or min(nices("MergeMutate")) < int(sys.argv[2])):
    time.sleep(0.05)
print(json.dumps({"merge": nices("MergeMutate"), "self": os.getpriority(os.PRIO_PROCESS, 0),
                  "rows": store.rows("SELECT count() FROM t")[0][0]}))
"""


@pytest.mark.parametrize("nice", [DEFAULT_NICE, 0])
def test_the_embedded_engines_merge_threads_run_at_the_niceness_the_store_was_opened_with(
    tmp_path: Path, nice: int
) -> None:
    # Its own process: chDB holds one engine per process, and this one must start from nothing.
    done = subprocess.run(
        [sys.executable, "-c", ENGINE_SCRIPT, str(tmp_path / "chdb"), str(nice)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    assert seen["merge"], "the engine started no merge thread"
    assert set(seen["merge"]) == {seen["self"] + nice}
    assert seen["rows"] == 6000
