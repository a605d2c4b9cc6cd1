"""The embedded engine's background merges yield the CPU to ingest and queries.

chDB runs ClickHouse inside the service's process, so the engine's merge threads compete for
the same cores as the requests and the writer. A merge can wait: a part merged a few seconds
later costs nothing, while an insert that waits for a core holds every request behind it.
A ClickHouse server has ``os_threads_nice_value_merge_mutate`` for this; the embedded engine gets
the same here. A watcher raises the Linux niceness of each merge thread (the engine names them
``MergeMutate`` and starts them on demand). Merges still take any core nobody else wants: the
scheduler shares a core by weight, and nice 10 weighs about a tenth of nice 0.

Raising a thread's own niceness needs no privilege. Niceness is only ever raised here, never
lowered. Where threads have no priority of their own to set (no ``/proc/self/task``), nothing
happens.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_NICE = 10
"""The ``engine_merge_nice`` setting's default."""
MERGE_THREADS = frozenset({"MergeMutate"})
"""Thread names (``comm``) of the engine's merge and mutation pool."""
TASKS = Path("/proc/self/task")
CHECK_SECONDS = 1.0
"""How often the watcher looks for merge threads the engine started since."""


def renice_merge_threads(nice: int, tasks: Path = TASKS) -> int:
    """Give ``nice`` to each merge thread of this process whose niceness is lower; returns how
    many changed."""
    changed = 0
    try:
        entries = list(tasks.iterdir())
    except OSError:
        return 0
    for task in entries:
        try:
            if (task / "comm").read_text().strip() not in MERGE_THREADS:
                continue
            tid = int(task.name)
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
                changed += 1
        except (OSError, ValueError):  # the thread ended meanwhile
            continue
    return changed


class _Watcher:
    """One per process (chDB runs one engine per process): re-applies the niceness every
    ``CHECK_SECONDS`` to merge threads started since."""

    def __init__(self) -> None:
        self.nice = 0
        self.every = CHECK_SECONDS
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def keep(self, nice: int, every: float) -> None:
        with self._lock:
            self.nice, self.every = nice, every
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="flowsight-merge-priority", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            if self.nice > 0:
                changed = renice_merge_threads(self.nice)
                if changed:
                    log.debug("%d engine merge threads now run at nice %d", changed, self.nice)
            self._wake.wait(self.every)
            self._wake.clear()


_WATCHER = _Watcher()


def lower_merge_priority(nice: int, every: float = CHECK_SECONDS) -> bool:
    """From now on keep this process's engine merge threads at niceness ``nice`` (1 to 19; 0
    leaves them as they are): at once for those that exist, and within ``every`` seconds for
    those the engine starts later. False where threads have no priority of their own."""
    if not 0 <= nice <= 19:
        raise ValueError(f"nice must be between 0 and 19, not {nice}")
    if not TASKS.is_dir():
        return False
    if nice == 0:
        _WATCHER.nice = 0  # a watcher already running stops raising it
        return True
    renice_merge_threads(nice)
    _WATCHER.keep(nice, every)
    return True
