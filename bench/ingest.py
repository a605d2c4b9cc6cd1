#!/usr/bin/env python3
"""Ingest benchmark: lifecycle events over HTTP (NDJSON) against a direct insert of the same rows.

One run, three steps, each timed on its own:

1. direct: a subprocess of this script (chDB holds one data directory per process) opens a fresh
   chDB directory, applies the flowsight schema and writes the same rows the HTTP phase will
   send, as Arrow tables of ``EVENT_SCHEMA``, with ``insert_arrow`` into ``events`` (and so its
   per-order state view), with the server's insert settings: the engine's limit for the
   server's storage work, minus HTTP, JSON parsing, validation and dedup.
2. http: one ``flowsight serve`` process on a fresh data directory; client threads, each with
   its own keep-alive connection, POST pre-serialized NDJSON bodies to ``/v1/events``.
3. verify: the server is stopped (SIGTERM) and its chDB directory is opened here to check that
   every event is stored exactly once.

Results go to stdout (a markdown table) and to a JSON file; progress goes to stderr.
Run ``python bench/ingest.py --help`` for the options and bench/README.md for how to read it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import itertools
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from bench.threads import cores_by_name, python_threads, thread_ticks  # noqa: E402

GOAL_HTTP_EVENTS_PER_S = 50_000
GOAL_RATIO = 0.4
DEFAULT_OUT = ROOT / "bench" / "results" / "ingest.json"
DATABASE = "flowsight"
MiB = 1024 * 1024

# -- event generation --------------------------------------------------------------------------
# Orders start evenly over one week and move through the seven in-sequence stages of
# order_to_cash; every value is derived from a hash of (seed, order, stage), so the HTTP phase
# and the direct phase (another process) generate exactly the same events.

WINDOW_START_MS = 1_795_046_400_000  # 2026-11-19T00:00:00Z
WINDOW_MS = 7 * 86_400_000
# Delay after the previous stage, in seconds (low, high), per in-sequence stage.
STAGE_GAPS_S = [(0, 0), (2, 120), (5, 300), (10, 900), (60, 3600), (2 * 3600, 20 * 3600), (600, 7200)]
CHANNELS = ("web", "app", "store", "marketplace")
REGIONS = ("de", "fr", "nl", "it", "es", "pl", "at", "uk")
TIERS = ("standard", "plus", "gold")
CARRIERS = ("dhl", "ups", "dpd", "gls", "postnl")


def _order_to_cash() -> tuple[list[tuple[str, str]], tuple[str, str]]:
    from flowsight.workflows import ORDER_TO_CASH

    sequence = [(stage.name, stage.owner) for stage in ORDER_TO_CASH.sequence]
    cancelled = ORDER_TO_CASH.stage("cancelled")
    assert cancelled is not None and len(sequence) == len(STAGE_GAPS_S)
    return sequence, (cancelled.name, cancelled.owner)


def _order_hash(seed: int, order: int) -> bytes:
    return hashlib.blake2b(b"%d:o:%d" % (seed, order), digest_size=32).digest()


def schedule(n: int, seed: int) -> list[tuple[int, int, int, bytes]]:
    """(occurred_at ms, order, stage index, order hash) of ``n`` events, in arrival (time) order."""
    per_order = len(STAGE_GAPS_S)
    orders = -(-n // per_order)
    step = WINDOW_MS / max(orders, 1)
    out: list[tuple[int, int, int, bytes]] = []
    for order in range(orders):
        h = _order_hash(seed, order)
        t = WINDOW_START_MS + int(order * step) + int.from_bytes(h[30:32], "big") % 1000
        for stage in range(min(per_order, n - order * per_order)):
            if stage:
                low, high = STAGE_GAPS_S[stage]
                t += (
                    low * 1000
                    + int.from_bytes(h[2 * stage : 2 * stage + 2], "big") * (high - low) * 1000 // 65536
                )
            out.append((t, order, stage, h))
    out.sort(key=lambda row: (row[0], row[1], row[2]))
    return out


def _rfc3339(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def iter_events(n: int, seed: int) -> Iterator[dict[str, Any]]:
    """``n`` valid order_to_cash lifecycle events (dicts as a client would send them)."""
    sequence, cancelled = _order_to_cash()
    for t, order, stage_index, h in schedule(n, seed):
        e = hashlib.blake2b(b"%d:e:%d:%d" % (seed, order, stage_index), digest_size=16).hexdigest()
        stage, system = sequence[stage_index]
        if stage_index == len(sequence) - 1 and h[20] < 5:  # ~2% of orders end cancelled
            stage, system = cancelled
        event: dict[str, Any] = {
            "event_id": f"{e[:8]}-{e[8:12]}-4{e[13:16]}-a{e[17:20]}-{e[20:32]}",
            "correlation_id": f"ORD-{10_000_000 + order}",
            "workflow": "order_to_cash",
            "stage": stage,
            "system": system,
            "occurred_at": _rfc3339(t),
            "status": "failed" if stage_index == 1 and h[21] < 3 else "ok",
        }
        if h[23] < 180:  # ~70% carry the sales channel
            event["channel"] = CHANNELS[h[22] % len(CHANNELS)]
        if h[24] < 80:  # ~30% of orders are traced
            event["trace_id"] = h[:16].hex()
            event["span_id"] = e[:16]
        if stage_index == 0:
            event["attributes"] = {
                "customer_tier": TIERS[h[25] % len(TIERS)],
                "region": REGIONS[h[26] % len(REGIONS)],
                "amount": f"{int.from_bytes(h[27:29], 'big') / 100:.2f}",
                "currency": "EUR",
            }
        elif stage_index == 5:
            event["attributes"] = {"carrier": CARRIERS[h[28] % len(CARRIERS)], "tracking_number": e[16:28]}
        elif h[29] < 64:
            event["attributes"] = {"region": REGIONS[h[26] % len(REGIONS)]}
        yield event


def ndjson_bodies(n: int, batch: int, seed: int, fmt: str = "ndjson") -> tuple[list[bytes], list[int]]:
    """The events as request bodies of ``batch`` events (NDJSON, or JSON arrays with ``fmt``
    "json"), and each body's event count."""
    import orjson

    def body(lines: list[bytes]) -> bytes:
        return b"\n".join(lines) + b"\n" if fmt == "ndjson" else b"[" + b",".join(lines) + b"]"

    bodies: list[bytes] = []
    counts: list[int] = []
    lines: list[bytes] = []
    for event in iter_events(n, seed):
        lines.append(orjson.dumps(event))
        if len(lines) == batch:
            bodies.append(body(lines))
            counts.append(len(lines))
            lines = []
    if lines:
        bodies.append(body(lines))
        counts.append(len(lines))
    return bodies, counts


CONTENT_TYPES = {"ndjson": "application/x-ndjson", "json": "application/json"}
PRELOAD_ORDERS_FROM = 100_000_000
"""Preloaded orders are numbered from here, apart from the ones the clients send."""
PRELOAD_HISTORY_MS = 30 * 86_400_000
"""Preloaded events arrived evenly over the 30 days before the run: the service's default dedup
window (7 days) holds about a quarter of their ids."""


def preload_only(args: argparse.Namespace) -> int:
    """Store ``--preload`` events in a fresh server data directory, straight into the tables
    (the order_state generator, a million orders at a time), before the server starts."""
    from bench.order_state import generate

    now_ms = int(time.time() * 1000)
    rng = np.random.default_rng(args.seed)

    def chunks() -> Iterator[pa.Table]:
        stored, first = 0, PRELOAD_ORDERS_FROM
        while stored < args.preload:
            orders = min(1_000_000, (args.preload - stored) // 5 + 1000)  # about 6 events an order
            table, _ = generate(orders, args.seed + first, first)
            table = table.slice(0, args.preload - stored)
            # Arrived over the history before the server's start, as a service that stored them
            # over that time would have them: its dedup window holds the most recent part.
            arrived = now_ms - rng.integers(0, PRELOAD_HISTORY_MS, table.num_rows)
            at = table.schema.get_field_index("ingested_at")
            table = table.set_column(at, "ingested_at", pa.array(arrived, pa.timestamp("ms", tz="UTC")))
            for offset in range(0, table.num_rows, 500_000):
                yield table.slice(offset, 500_000)
            stored += table.num_rows
            first += orders

    return preload_store(Path(args.data_dir), "events", chunks(), args.preload, "events")


def preload_store(data_dir: Path, table: str, chunks: Iterator[pa.Table], total: int, unit: str) -> int:
    """Insert ``chunks`` (``total`` rows) into ``table`` of a fresh server data directory,
    straight into the tables, as a service that loaded them and stopped cleanly leaves it (its
    write-ahead log empty); prints how many were stored, as JSON, for :func:`run_preload`."""
    from bench.order_state import settle_merges
    from flowsight import migrations
    from flowsight.app import MIGRATIONS
    from flowsight.collector.loader import INSERT_SETTINGS
    from flowsight.ddl import Schema
    from flowsight.store import Store

    store = Store.connect(f"chdb://{data_dir / 'clickhouse'}", DATABASE)
    schema = Schema(DATABASE)
    migrations.migrate(store, schema, MIGRATIONS)
    stored, reported = 0, 0
    for chunk in chunks:
        store.insert_arrow(schema.table(table), chunk, settings=INSERT_SETTINGS)
        stored += chunk.num_rows
        if stored - reported >= total // 8 or stored == total:
            log(f"preload: {stored * 100 // total:3d}% {stored:,}/{total:,} {unit}")
            reported = stored
    # As in a service that stored these rows over time: otherwise the server's engine would
    # start merging tens of half-million-row parts just as the timed phase begins.
    settle_merges(store, timeout_s=900.0, quiet_s=3.0)
    store.close()
    print(json.dumps({"preloaded": stored}))
    return 0


def preload_phase(args: argparse.Namespace, data_dir: Path, deadline: float) -> int:
    """Run :func:`preload_only` in its own process (chDB opens one directory per process)."""
    return run_preload(
        Path(__file__), ["--preload", str(args.preload), "--seed", str(args.seed)], data_dir, deadline
    )


def run_preload(
    script: Path, options: list[str], data_dir: Path, deadline: float, unit: str = "events"
) -> int:
    """Run ``script --preload-only`` on ``data_dir`` in its own process; how many it stored (the
    last line of its output, as JSON)."""
    started = time.perf_counter()
    cmd = [sys.executable, str(script.resolve()), "--preload-only", *options, "--data-dir", str(data_dir)]
    result = subprocess.run(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        timeout=max(1.0, deadline - time.monotonic()),
        check=False,
    )
    if result.returncode != 0:
        raise Aborted(f"preload failed ({result.returncode})")
    preloaded = int(json.loads(result.stdout.strip().splitlines()[-1])["preloaded"])
    log(f"preload: {preloaded:,} {unit} stored in {time.perf_counter() - started:.1f} s")
    return preloaded


# -- helpers -------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Aborted(Exception):
    """The benchmark cannot go on; the message says why."""


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


WRITER_SECONDS = {
    "commit": "flowsight_ingest_commit_seconds_total",
    "dedup": "flowsight_ingest_dedup_seconds_total",
    "insert": "flowsight_loader_insert_seconds_total",
}
"""The server's own time in each step of ingest (``/metrics``): the writer's write-ahead log
commits and dedup, and the loader's inserts."""


def proc_status(pid: int, field: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status (e.g. VmHWM), in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def proc_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def version_of(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "chdb": version_of("chdb"),
        "chdb_core": version_of("chdb-core"),
        "clickhouse_connect": version_of("clickhouse-connect"),
        "pyarrow": version_of("pyarrow"),
        "uvicorn": version_of("uvicorn"),
    }


class Run:
    """What must be cleaned up however the run ends: child processes and temp directories."""

    def __init__(self, keep: bool):
        self.keep = keep
        self.children: list[subprocess.Popen[bytes]] = []
        self.dirs: list[Path] = []
        self.lock = threading.Lock()

    def tempdir(self, prefix: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=prefix))
        self.dirs.append(path)
        return path

    def remove(self, *paths: Path) -> None:
        """Delete directories now (unless --keep), rather than at the end of the run."""
        for path in paths:
            if not self.keep:
                shutil.rmtree(path, ignore_errors=True)
                self.dirs.remove(path)

    def kill_children(self) -> None:
        with self.lock:
            for child in self.children:
                if child.poll() is None:
                    child.kill()
            for child in self.children:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=10)

    def cleanup(self) -> None:
        self.kill_children()
        for path in self.dirs:
            if self.keep:
                log(f"kept {path}")
            else:
                shutil.rmtree(path, ignore_errors=True)

    def watchdog(self, seconds: float) -> threading.Timer:
        def fire() -> None:
            log(f"TIMEOUT: the run took longer than --timeout {seconds:g} s; aborting")
            self.cleanup()
            os._exit(124)

        timer = threading.Timer(seconds, fire)
        timer.daemon = True
        timer.start()
        return timer


# -- direct phase (runs in its own process) ------------------------------------------------------


def direct_only(args: argparse.Namespace) -> int:
    """Time a direct insert of the same rows for each chunk size; print the result as JSON."""
    import pyarrow as pa

    from flowsight import migrations
    from flowsight.app import MIGRATIONS
    from flowsight.collector.events import EventBatch
    from flowsight.collector.loader import INSERT_SETTINGS
    from flowsight.ddl import Schema
    from flowsight.store import Store
    from flowsight.workflows import DEFAULT_WORKFLOWS

    class TimedStore(Store):
        """The server's Store, adding up the time spent in each call."""

        timings: dict[str, float]

        def rows(self, sql: str, parameters: Any = None) -> Any:
            start = time.perf_counter()
            try:
                return super().rows(sql, parameters)
            finally:
                self.timings["queries"] += time.perf_counter() - start

        def insert_arrow(self, table: str, data: pa.Table, settings: Any = None) -> None:
            start = time.perf_counter()
            try:
                super().insert_arrow(table, data, settings)
            finally:
                self.timings[f"insert {table.rsplit('.', 1)[-1]}"] += time.perf_counter() - start

    chunks = [int(c) for c in args.direct_chunks.split(",")]
    data_dir = Path(args.data_dir)
    started = time.perf_counter()
    # Validate exactly as the server does (untimed), so the rows are the rows it stores.
    now_ms = int(time.time() * 1000)
    pieces = []
    batch = EventBatch(DEFAULT_WORKFLOWS, "api", now_ms)
    for index, event in enumerate(iter_events(args.events, args.seed)):
        if not batch.add(index, event):
            raise Aborted(f"generated event rejected: {batch.errors[-1]}")
        if len(batch) == 50_000:
            pieces.append(batch.to_arrow())
            batch = EventBatch(DEFAULT_WORKFLOWS, "api", now_ms)
    if len(batch):
        pieces.append(batch.to_arrow())
    table = pa.concat_tables(pieces).combine_chunks()
    del pieces, batch
    build_s = time.perf_counter() - started
    log(f"direct: built {table.num_rows} rows as Arrow in {build_s:.1f} s")

    opened = Store.connect(f"chdb://{data_dir / 'clickhouse'}", DATABASE)
    store = TimedStore(opened.client, DATABASE, embedded=opened.embedded)
    store.timings = defaultdict(float)
    runs = []
    try:
        for number, chunk in enumerate(chunks):
            schema = Schema(DATABASE if number == 0 else f"{DATABASE}_chunk{chunk}")
            migrations.migrate(store, schema, MIGRATIONS)
            slices = [table.slice(offset, chunk) for offset in range(0, table.num_rows, chunk)]
            store.timings = defaultdict(float)
            accepted = 0
            next_report = table.num_rows / 10
            start = time.perf_counter()
            for piece in slices:
                # The same storage work a server commit does, minus HTTP, parsing, validation
                # and dedup: the rows into the per-order state pipeline, then into events.
                store.insert_arrow(schema.table("events"), piece, settings=INSERT_SETTINGS)
                accepted += piece.num_rows
                if accepted >= next_report:
                    log(
                        f"direct (chunk {chunk}): {accepted * 100 // table.num_rows:3d}% {accepted}/{table.num_rows} rows"
                    )
                    while next_report <= accepted:
                        next_report += table.num_rows / 10
            seconds = time.perf_counter() - start
            stored = store.rows(f"SELECT count() FROM {schema.table('events')}")[0][0]
            if accepted != table.num_rows or stored != table.num_rows:
                raise Aborted(
                    f"direct (chunk {chunk}): accepted {accepted}, stored {stored}, expected {table.num_rows}"
                )
            breakdown = dict(store.timings)
            breakdown["python (slicing)"] = seconds - sum(store.timings.values())
            runs.append(
                {
                    "chunk": chunk,
                    "commits": len(slices),
                    "seconds": seconds,
                    "events_per_s": table.num_rows / seconds,
                    "breakdown_s": breakdown,
                    "stored": stored,
                }
            )
            log(f"direct (chunk {chunk}): {table.num_rows / seconds:,.0f} rows/s in {seconds:.2f} s")
    finally:
        store.close()
    json.dump(
        {"build_s": build_s, "runs": runs, "peak_rss_bytes": proc_status(os.getpid(), "VmHWM")}, sys.stdout
    )
    return 0


def direct_phase(
    args: argparse.Namespace, run: Run, data_dir: Path, deadline: float, *, extra_chunks: bool = True
) -> dict[str, Any]:
    """The direct insert at the engine's limit (``--direct-chunk`` rows a commit), and with
    ``extra_chunks`` also at the largest commit the clients can cause and at their own batches."""
    chunks = [args.direct_chunk]
    server_max_commit = min(args.batch * args.concurrency, 50_000)
    if extra_chunks and server_max_commit not in chunks:
        chunks.append(server_max_commit)
    if extra_chunks and args.batch not in chunks:
        chunks.append(args.batch)  # the same batches the HTTP clients send, inserted directly
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--direct-only",
        "--events",
        str(args.events),
        "--seed",
        str(args.seed),
        "--direct-chunks",
        ",".join(map(str, chunks)),
        "--data-dir",
        str(data_dir),
    ]
    log(f"direct: {' '.join(cmd[2:])}")
    child = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE)
    run.children.append(child)
    try:
        out, _ = child.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        child.kill()
        raise Aborted("the direct phase did not finish before --timeout") from None
    if child.returncode != 0:
        raise Aborted(f"the direct phase failed (exit {child.returncode}); see its output above")
    return dict(json.loads(out))


# -- HTTP phase ----------------------------------------------------------------------------------


class Load:
    """Shared state of the client threads, which POST the bodies to ``path``; subclasses read
    other answers by overriding :meth:`count`."""

    path = "/v1/events"
    unit = "events"

    def __init__(self, bodies: list[bytes], counts: list[int], port: int, timeout: float, content_type: str):
        self.content_type = content_type
        self.bodies = bodies
        self.counts = counts
        self.port = port
        self.timeout = timeout
        self.next_body = itertools.count()
        self.starts = [0.0] * len(bodies)
        self.ends = [0.0] * len(bodies)
        self.accepted = 0
        self.duplicates = 0
        self.rejected = 0
        self.errors: list[str] = []
        self.failed = threading.Event()
        self.lock = threading.Lock()
        self.total = sum(counts)
        self.next_report = self.total / 10
        self.first = 0.0
        self.on_progress: Any = None  # called (under the lock) with (accepted, per second so far)

    def count(self, i: int, data: bytes) -> tuple[int, int, int, str]:
        """(accepted, duplicates, rejected, an error or '') from request ``i``'s answer."""
        import orjson

        answer = orjson.loads(data)
        error = "" if answer["accepted"] == self.counts[i] else f"request {i}: {data[:300]!r}"
        return answer["accepted"], answer["duplicates"], answer["rejected"], error

    def worker(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        headers = {"Content-Type": self.content_type}
        try:
            while not self.failed.is_set():
                i = next(self.next_body)
                if i >= len(self.bodies):
                    return
                self.starts[i] = time.perf_counter()
                conn.request("POST", self.path, body=self.bodies[i], headers=headers)
                response = conn.getresponse()
                data = response.read()
                self.ends[i] = time.perf_counter()
                if response.status != 200:
                    raise Aborted(f"request {i}: HTTP {response.status}: {data[:300]!r}")
                accepted, duplicates, rejected, error = self.count(i, data)
                with self.lock:
                    self.accepted += accepted
                    self.duplicates += duplicates
                    self.rejected += rejected
                    if error:
                        self.errors.append(error)
                    if self.accepted >= self.next_report:
                        rate = self.accepted / (self.ends[i] - self.first)
                        log(
                            f"http: {self.accepted * 100 // self.total:3d}% {self.accepted:,}/{self.total:,} "
                            f"{self.unit}, {rate:,.0f} {self.unit}/s"
                        )
                        while self.next_report <= self.accepted:
                            self.next_report += self.total / 10
                        if self.on_progress is not None:
                            self.on_progress(self.accepted, rate)
        except Exception as exc:
            with self.lock:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.failed.set()
        finally:
            conn.close()


def get(
    port: int, path: str, timeout: float = 5.0, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def server_log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def start_server(
    run: Run,
    data_dir: Path,
    port: int,
    deadline: float,
    headers: dict[str, str] | None = None,
    after_evaluation: bool = True,
    settings: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``flowsight serve`` on its defaults (no FLOWSIGHT_* variable of the caller leaks in) but
    for the ``settings`` the benchmark names, once ready and (``after_evaluation``) once its
    start-up evaluation is done; ``headers`` go with the requests that ask."""
    server_log = data_dir / "server.log"
    cmd = [sys.executable, "-m", "flowsight.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--data-dir", str(data_dir)]
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FLOWSIGHT_")}
    env.update({f"FLOWSIGHT_{name.upper()}": value for name, value in (settings or {}).items()})
    log(f"http: starting {shlex.join(cmd[1:])}")
    with server_log.open("wb") as sink:
        server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    run.children.append(server)
    started = time.monotonic()
    while True:
        if server.poll() is not None:
            raise Aborted(f"the server exited with {server.returncode}:\n{server_log_tail(server_log)}")
        if time.monotonic() > min(deadline, started + 120):
            raise Aborted(f"the server was not ready within 120 s:\n{server_log_tail(server_log)}")
        with contextlib.suppress(OSError):
            if get(port, "/readyz", timeout=2, headers=headers)[0] == 200:
                break
        time.sleep(0.1)
    log(f"http: server ready in {time.monotonic() - started:.1f} s (pid {server.pid}, port {port})")
    if not after_evaluation:
        return server
    # The service evaluates its SLOs at start, then every minute; time the load after that
    # first evaluation (over preloaded data it takes seconds of both cores), as between two
    # evaluations.
    while True:
        status, text = get(port, "/metrics", timeout=10, headers=headers)
        taken = metric(text.decode(), "flowsight_evaluation_duration_seconds") if status == 200 else None
        if taken is not None:
            log(f"http: the start-up evaluation took {taken:.1f} s; timing starts after it")
            return server
        if time.monotonic() > min(deadline, started + 600):
            raise Aborted(f"no evaluation finished within 600 s of the start:\n{server_log_tail(server_log)}")
        time.sleep(0.2)


def http_phase(
    args: argparse.Namespace,
    run: Run,
    data_dir: Path,
    bodies: list[bytes],
    counts: list[int],
    deadline: float,
) -> dict[str, Any]:
    port = free_port()
    server_log = data_dir / "server.log"
    server = start_server(run, data_dir, port, deadline)
    try:
        load = Load(bodies, counts, port, max(30.0, deadline - time.monotonic()), CONTENT_TYPES[args.format])
        threads = [
            threading.Thread(target=load.worker, name=f"client-{n}", daemon=True)
            for n in range(args.concurrency)
        ]
        server_cpu_before = proc_cpu_seconds(server.pid)
        threads_before = thread_ticks(server.pid)
        client_cpu_before = time.process_time()
        load.first = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        client_cpu = time.process_time() - client_cpu_before
        server_cpu_after = proc_cpu_seconds(server.pid)
        threads_after = thread_ticks(server.pid)
        # The request pool's threads exist only once requests came: name them now.
        thread_names = python_threads(server.pid)
        if load.errors:
            raise Aborted(
                "the HTTP phase failed:\n  "
                + "\n  ".join(load.errors[:10])
                + f"\nserver log:\n{server_log_tail(server_log)}"
            )
        total = sum(counts)
        if load.accepted != total:
            raise Aborted(f"the server accepted {load.accepted} events, expected {total}")
        first = min(load.starts)
        wall = max(load.ends) - first
        latencies = sorted(end - start for start, end in zip(load.starts, load.ends, strict=True))

        status, metrics_text = get(port, "/metrics")
        commits = metric(metrics_text.decode(), "flowsight_ingest_commits_total") if status == 200 else None
        writer_seconds = {
            step: metric(metrics_text.decode(), name) if status == 200 else None
            for step, name in WRITER_SECONDS.items()
        }
        peak_rss = proc_status(server.pid, "VmHWM")

        log("http: stopping the server (SIGTERM)")
        stop_started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=max(1.0, min(120.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            server.kill()
            raise Aborted(
                f"the server did not stop within 120 s of SIGTERM:\n{server_log_tail(server_log)}"
            ) from None
        # uvicorn re-raises the signal after a graceful shutdown, so -SIGTERM is a clean exit too.
        if code not in (0, -signal.SIGTERM):
            log(f"WARNING: the server exited with {code}:\n{server_log_tail(server_log)}")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

    cpu = (
        server_cpu_after - server_cpu_before
        if server_cpu_after is not None and server_cpu_before is not None
        else None
    )
    return {
        "wall_s": wall,
        "events_per_s": total / wall,
        "requests": len(bodies),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": latencies[-1] * 1000,
        "accepted": load.accepted,
        "duplicates": load.duplicates,
        "rejected": load.rejected,
        "server_commits": int(commits) if commits is not None else None,
        "server_mean_commit_rows": total / commits if commits else None,
        "server_writer_seconds": writer_seconds,
        "server_peak_rss_bytes": peak_rss,
        "server_cpu_s": cpu,
        "client_cpu_s": client_cpu,
        "thread_cpu_cores": cores_by_name(threads_before, threads_after, thread_names, wall),
        "server_stop_s": time.monotonic() - stop_started,
        "server_exit_code": code,
    }


def verify(data_dir: Path) -> dict[str, int]:
    """Counts in the stopped server's chDB directory (opened in this process)."""
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=f"chdb://{data_dir / 'clickhouse'}")
    try:
        count, unique = client.query(
            f"SELECT count(), uniqExact(event_id) FROM {DATABASE}.events"
        ).result_rows[0]
        orders = client.query(f"SELECT uniqExact(correlation_id) FROM {DATABASE}.order_state").result_rows[0][
            0
        ]
    finally:
        client.close()
    return {
        "stored": int(count),
        "unique_ids": int(unique),
        "orders": int(orders),
    }


# -- report --------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def markdown(result: dict[str, Any]) -> str:
    h, d = result["http_detail"], result["direct_detail"]
    rss = result["server_peak_rss_mib"]
    rows = [
        (
            f"Events ({result['format']} batch, client connections; stored before)",
            f"{result['events']:,} ({result['batch']:,}, {result['concurrency']}; {result['preloaded']:,})",
            "",
            "",
        ),
        (
            "HTTP ingest",
            f"{result['http_events_per_s']:,.0f} events/s ({h['wall_s']:.2f} s)",
            f">= {GOAL_HTTP_EVENTS_PER_S:,}",
            result["goals"]["http_events_per_s"]["verdict"],
        ),
        (
            "HTTP request latency p50 / p99",
            f"{result['http_p50_ms']:.1f} / {result['http_p99_ms']:.1f} ms",
            "",
            "",
        ),
        (
            f"Direct insert_arrow of the same rows (chunk {result['direct_chunk']:,})",
            f"{result['direct_events_per_s']:,.0f} rows/s ({d['runs'][0]['seconds']:.2f} s)",
            "",
            "",
        ),
        (
            "HTTP / direct at the engine's limit",
            f"{result['ratio']:.2f}",
            f">= {GOAL_RATIO}",
            result["goals"]["ratio"]["verdict"],
        ),
    ]
    if len(result.get("pairs", [])) > 1:
        rows.append(
            (
                "Every pair, in order (HTTP events/s / direct rows/s = ratio; the median stands above)",
                "; ".join(
                    f"{p['http_events_per_s']:,.0f} / {p['direct_events_per_s']:,.0f} = {p['ratio']:.2f}"
                    for p in result["pairs"]
                ),
                "",
                "",
            )
        )
    for extra in d.get("same_batches", d["runs"][1:]):
        label = (
            "the same batches the clients send"
            if extra["chunk"] == result["batch"]
            else "largest commit this client can cause"
        )
        rows.append(
            (
                f"Direct insert, chunk {extra['chunk']:,} ({label})",
                f"{extra['events_per_s']:,.0f} rows/s",
                "",
                "",
            )
        )
    rows.append(
        (
            "HTTP / direct insert of the same batches",
            f"{result['ratio_same_batches']:.2f}",
            f">= {GOAL_RATIO}",
            result["goals"]["ratio_same_batches"]["verdict"],
        )
    )
    commits = h["server_commits"]
    ws = h.get("server_writer_seconds") or {}
    busy = (
        f"; writer busy {ws['commit'] / h['wall_s']:.0%} of the time"
        f" (dedup {ws['dedup']:.2f} s, inserts {ws['insert']:.2f} s)"
        if ws.get("commit") is not None
        else ""
    )
    rows += [
        (
            "Server commits (mean rows per commit)",
            (f"{commits} ({h['server_mean_commit_rows']:,.0f}){busy}") if commits else "n/a",
            "",
            "",
        ),
        (
            "Stored in events (unique ids)",
            f"{result['stored_count']:,} ({result['verify']['unique_ids']:,})",
            f"= {result['events'] + result['preloaded']:,}",
            "OK" if result["stored_ok"] else "FAIL",
        ),
        ("Server peak RSS", f"{rss:,.0f} MiB" if rss is not None else "n/a", "", ""),
        (
            "CPU during HTTP phase: server / client",
            f"{h['server_cpu_s'] / h['wall_s']:.2f} / {h['client_cpu_s'] / h['wall_s']:.2f} cores"
            if h["server_cpu_s"] is not None
            else "n/a",
            f"of {result['machine']['nproc']}",
            "",
        ),
        (
            "Server CPU by thread (cores)",
            ", ".join(f"{name} {cores:.2f}" for name, cores in h.get("thread_cpu_cores", {}).items())
            or "n/a",
            "",
            "",
        ),
    ]
    out = ["| Measure | Value | Goal | |", "|---|---:|---|---|"]
    out += [f"| {a} | {b} | {c} | {e} |" for a, b, c, e in rows]
    breakdown = d["runs"][0]["breakdown_s"]
    total = sum(breakdown.values())
    out += ["", f"Direct commit time by step (chunk {result['direct_chunk']:,}):", ""]
    out += ["| Step | Seconds | Share |", "|---|---:|---:|"]
    steps = sorted(((k, v) for k, v in breakdown.items() if v >= 0.005), key=lambda kv: -kv[1])
    out += [f"| {k} | {v:.2f} | {v / total:.0%} |" for k, v in steps]
    m = result["machine"]
    out += [
        "",
        f"Machine: {m['nproc']} CPUs, Python {m['python']}, chdb {m['chdb']} (core {m['chdb_core']}), "
        f"clickhouse-connect {m['clickhouse_connect']}.",
        f"Command: `{result['command']}`",
    ]
    return "\n".join(out)


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)


@dataclass
class Pair:
    """One direct phase and the HTTP phase after it."""

    direct: dict[str, Any]
    http: dict[str, Any]
    stored: dict[str, int]
    preloaded: int

    @property
    def direct_rate(self) -> float:
        return float(self.direct["runs"][0]["events_per_s"])

    @property
    def ratio(self) -> float:
        return float(self.http["events_per_s"]) / self.direct_rate


def benchmark(args: argparse.Namespace) -> int:
    run = Run(args.keep)
    started = time.monotonic()
    deadline = started + args.timeout
    timer = run.watchdog(args.timeout)
    pairs: list[Pair] = []
    try:
        bodies: list[bytes] = []
        counts: list[int] = []
        for number in range(args.pairs):
            label = f"pair {number + 1}/{args.pairs}: " if args.pairs > 1 else ""
            direct_dir = run.tempdir("flowsight-bench-direct-")
            direct = direct_phase(args, run, direct_dir, deadline, extra_chunks=number == 0)
            if not bodies:
                log(f"generating {args.events:,} events as {args.format} bodies of {args.batch}")
                gen_started = time.perf_counter()
                bodies, counts = ndjson_bodies(args.events, args.batch, args.seed, args.format)
                size = sum(map(len, bodies))
                log(
                    f"generated {len(bodies)} bodies, {size / MiB:,.1f} MiB "
                    f"({size / args.events:.0f} bytes/event) in {time.perf_counter() - gen_started:.1f} s"
                )
            http_dir = run.tempdir("flowsight-bench-http-")
            preloaded = preload_phase(args, http_dir, deadline) if args.preload else 0
            h = http_phase(args, run, http_dir, bodies, counts, deadline)
            log("verify: opening the server's chDB directory")
            pair = Pair(direct, h, verify(http_dir), preloaded)
            pairs.append(pair)
            log(
                f"{label}HTTP {h['events_per_s']:,.0f} events/s, direct {pair.direct_rate:,.0f} rows/s, "
                f"ratio {pair.ratio:.3f}"
            )
            if number + 1 < args.pairs:  # the next pair starts from fresh directories
                run.remove(direct_dir, http_dir)
        del bodies
    except Aborted as exc:
        log(f"FAILED: {exc}")
        run.cleanup()
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        run.cleanup()
        return 130
    finally:
        timer.cancel()

    # The pair of median ratio stands for the run: its HTTP and direct figures were measured
    # minutes apart at most, on a machine whose speed drifts (see bench/README.md).
    middle = sorted(pairs, key=lambda p: p.ratio)[len(pairs) // 2]
    direct, h, counts_stored, preloaded = middle.direct, middle.http, middle.stored, middle.preloaded
    direct_rate = middle.direct_rate
    ratio = middle.ratio
    same_rate = next(r["events_per_s"] for r in pairs[0].direct["runs"] if r["chunk"] == args.batch)
    ratio_same = h["events_per_s"] / same_rate
    stored_ok = all(p.stored["stored"] == args.events + p.preloaded == p.stored["unique_ids"] for p in pairs)
    peaks = [p.http["server_peak_rss_bytes"] for p in pairs if p.http["server_peak_rss_bytes"] is not None]
    rss = max(peaks) if peaks else None
    result: dict[str, Any] = {
        "events": args.events,
        "format": args.format,
        "preloaded": preloaded,
        "batch": args.batch,
        "concurrency": args.concurrency,
        "direct_chunk": args.direct_chunk,
        "http_events_per_s": round(h["events_per_s"], 1),
        "http_p50_ms": round(h["p50_ms"], 2),
        "http_p99_ms": round(h["p99_ms"], 2),
        "direct_events_per_s": round(direct_rate, 1),
        "ratio": round(ratio, 3),
        "direct_same_batches_events_per_s": round(same_rate, 1),
        "ratio_same_batches": round(ratio_same, 3),
        "stored_count": counts_stored["stored"],
        "stored_ok": stored_ok,
        "server_peak_rss_mib": round(rss / MiB, 1) if rss is not None else None,
        "goals": {
            "http_events_per_s": {
                "goal": GOAL_HTTP_EVENTS_PER_S,
                "verdict": verdict(h["events_per_s"] >= GOAL_HTTP_EVENTS_PER_S),
            },
            "ratio": {"goal": GOAL_RATIO, "verdict": verdict(ratio >= GOAL_RATIO)},
            "ratio_same_batches": {"goal": GOAL_RATIO, "verdict": verdict(ratio_same >= GOAL_RATIO)},
        },
        "pairs": [
            {
                "http_events_per_s": round(p.http["events_per_s"], 1),
                "direct_events_per_s": round(p.direct_rate, 1),
                "ratio": round(p.ratio, 3),
                "server_peak_rss_mib": round(p.http["server_peak_rss_bytes"] / MiB, 1)
                if p.http["server_peak_rss_bytes"] is not None
                else None,
            }
            for p in pairs
        ],
        "http_detail": h,
        "direct_detail": {**direct, "same_batches": pairs[0].direct["runs"][1:]},
        "verify": counts_stored,
        "machine": machine_info(),
        "command": shlex.join(sys.orig_argv),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "total_s": round(time.monotonic() - started, 1),
    }
    write_json(args.out, result)
    print(markdown(result))
    log(f"wrote {args.out}")
    run.cleanup()
    if not stored_ok:
        log(
            f"FAILED: stored counts {[p.stored for p in pairs]} do not match {args.events} events "
            f"(and {preloaded} preloaded) stored exactly once in every pair"
        )
        return 1
    return 0


def positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Ingest benchmark: NDJSON over HTTP to one `flowsight serve` process, against a "
        "direct insert of the same rows through clickhouse-connect (chDB). Prints a markdown table "
        "to stdout, progress to stderr, and writes a JSON result.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--events", type=positive, default=1_000_000, help="lifecycle events to send")
    p.add_argument(
        "--batch", type=positive, default=1000, help="events per request (the server refuses more than 50000)"
    )
    p.add_argument(
        "--concurrency",
        type=positive,
        default=64,
        help="client threads, each with one keep-alive connection; events in flight (batch x concurrency) "
        "bound the size of the server's inserts",
    )
    p.add_argument(
        "--direct-chunk",
        type=positive,
        default=50_000,
        help="rows per direct commit (the server's write_batch_rows default)",
    )
    p.add_argument(
        "--pairs",
        type=positive,
        default=1,
        help="direct and HTTP phases run in turn this many times (fresh directories each, the "
        "preload repeated); the pair of median ratio is reported, every pair listed",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result file")
    p.add_argument("--keep", action="store_true", help="keep the temporary data directories (and server log)")
    p.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="seconds after which the whole run aborts and kills the server",
    )
    p.add_argument("--seed", type=int, default=20261126, help="seed of the generated events")
    # Internal: the direct phase, re-invoked in its own process (chDB allows one directory per process).
    p.add_argument(
        "--format",
        choices=sorted(CONTENT_TYPES),
        default="ndjson",
        help="request bodies: NDJSON or JSON arrays",
    )
    add_preload_options(p, "events")
    p.add_argument("--direct-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--direct-chunks", help=argparse.SUPPRESS)
    return p


def add_preload_options(p: argparse.ArgumentParser, unit: str) -> None:
    """``--preload N`` and the options of the process that stores them (:func:`run_preload`)."""
    p.add_argument(
        "--preload",
        type=int,
        default=0,
        help=f"{unit} stored in the server's database before it starts (ingest cost at that much data)",
    )
    p.add_argument("--preload-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data-dir", help=argparse.SUPPRESS)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.preload_only:
        return preload_only(args)
    if args.direct_only:
        try:
            return direct_only(args)
        except Aborted as exc:
            log(f"FAILED: {exc}")
            return 1
    return benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
