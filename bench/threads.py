"""CPU time of a server's threads, by thread name: where a benchmark's cores went.

The OS names every Python thread "python"; ``py-spy dump`` maps their native ids to Python's
thread names. chDB's threads keep their own names (``MergeMutate``: background merges).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path


def py_spy() -> str | None:
    """The py-spy executable: beside this Python, else on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def python_threads(pid: int) -> dict[str, str]:
    """Native thread id to Python thread name (empty without py-spy)."""
    exe = py_spy()
    if exe is None:
        return {}
    try:
        out = subprocess.run([exe, "dump", "-p", str(pid)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {m[1]: m[2] for m in re.finditer(r'^Thread (\d+) \([^)]*\): "(.*)"$', out, re.MULTILINE)}


def thread_ticks(pid: int) -> dict[str, tuple[str, float]]:
    """Per native thread id: its OS name and CPU seconds so far."""
    out: dict[str, tuple[str, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            comm = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[task.name] = (comm, (int(fields[11]) + int(fields[12])) / tick)
    return out


def cpu_by_name(
    before: dict[str, tuple[str, float]], after: dict[str, tuple[str, float]], names: dict[str, str]
) -> dict[str, float]:
    """CPU seconds between two :func:`thread_ticks`, added up by thread name (Python's where
    known, without a pool's numbering), largest first."""
    out: dict[str, float] = {}
    for tid, (comm, seconds) in after.items():
        name = names.get(tid) or ("other python threads" if comm == "python" else comm)
        name = re.sub(r"[-_]\d+(_\d+)?$", "", name)
        out[name] = out.get(name, 0.0) + seconds - before.get(tid, (comm, 0.0))[1]
    return dict(sorted(out.items(), key=lambda item: -item[1]))


def cores_by_name(
    before: dict[str, tuple[str, float]],
    after: dict[str, tuple[str, float]],
    names: dict[str, str],
    wall: float,
) -> dict[str, float]:
    """:func:`cpu_by_name` as cores over ``wall`` seconds, leaving out threads under 1% of one."""
    return {
        name: round(seconds / wall, 3)
        for name, seconds in cpu_by_name(before, after, names).items()
        if seconds >= 0.01 * wall
    }
