#!/usr/bin/env python3
"""Senders benchmark: the ingest API loaded as real senders load it, with wrk as the client.

bench/ingest.py measures what the service stores when Python threads post pre-built bodies;
here the client is wrk (C, epoll, a few threads), so the load costs the 2-core machine little,
and the senders are the ones a service meets: many small requests, steady batches, one
sender alone, paced senders that care about acknowledgement latency, and readers of order
timelines while ingest runs. Every scenario run starts its own ``flowsight serve`` on a fresh
data directory (bench/ingest.py's ``start_server``: ready, start-up evaluation done):

1. ``healthz``: GET /healthz, 64 connections: the HTTP stack's own rate, the reference for 2;
2. ``single``: one event per request (JSON array), 64 connections, on the same server as 1;
3. ``batch100``: 100 events per request (NDJSON), 32 connections;
4. ``batch1000-sustained``: 1,000 events per request, 16 connections, 60 s, the server
   evaluating every 20 s so evaluations fall inside the window;
5. ``one-sender``: one connection sending 1,000-event requests back to back, against a direct
   ``insert_arrow`` of 1,000-row batches in another process (bench/ingest.py's direct phase);
6. ``half-rate``: 1,000-event requests paced at half the rate of 4: acknowledgement latency;
7. ``timeline-under-load``: timeline reads of seeded orders, idle, then while ingest runs at
   80% of the rate of 4.

The wrk scripts (bench/wrk/) give every request new event ids, count answers by status and
sum ``accepted``; after each ingest scenario the server's own stored count (``/metrics``) is
compared with what wrk had acknowledged. Each scenario runs ``--runs`` times, each on a fresh
server, and the median stands, every run listed. Progress to stderr; results to
bench/results/senders.json and senders.md. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.ingest import (  # noqa: E402
    CONTENT_TYPES,
    Aborted,
    Load,
    Run,
    direct_phase,
    free_port,
    get,
    iter_events,
    machine_info,
    metric,
    ndjson_bodies,
    percentile,
    positive,
    proc_cpu_seconds,
    proc_status,
    start_server,
    write_json,
)

WRK_DIR = ROOT / "bench" / "wrk"
DEFAULT_OUT = ROOT / "bench" / "results" / "senders.json"
SCENARIOS = (
    "healthz",
    "single",
    "batch100",
    "batch1000-sustained",
    "one-sender",
    "half-rate",
    "timeline-under-load",
)
MiB = 1024 * 1024

WRK_TIMEOUT_S = 30
"""wrk's per-request timeout; it is also the top of wrk's latency histogram (its default, 2 s,
would count a request that waited for an evaluation as a socket timeout and drop its latency)."""
PLACEHOLDER = b"\x01"
"""The byte bench/wrk/events.lua replaces by a tag unique to each request (JSON text cannot
hold it raw, so it cannot clash with an event's own content)."""
MARK = "@@ID@@"
HEALTHZ_CONNECTIONS = 64
SINGLE_CONNECTIONS = 64
BATCH100_CONNECTIONS = 32
SUSTAINED_CONNECTIONS = 16
HALF_RATE_CONNECTIONS = 8
"""One wrk thread per connection, so Lua can time every request exactly (see common.lua)."""
TIMELINE_CONNECTIONS = 4
TIMELINE_ORDERS = 2000
TIMELINE_SECONDS = 15
LOADER_SHARE = 0.8
LOADER_WARMUP_S = 3
WRK_THREADS = 2
QUIET_CORES = 0.3
"""Other processes' load under which a run starts without waiting (see ``--quiet-wait``)."""

GOAL_SINGLE_RATIO = 0.8
GOAL_SINGLE_EVENTS_PER_S = 4000
GOAL_SINGLE_P99_MS = 50.0
GOAL_BATCH100_EVENTS_PER_S = 150_000
GOAL_SUSTAINED_EVENTS_PER_S = 200_000
GOAL_SUSTAINED_EVALUATIONS = 2
GOAL_ONE_SENDER_RATIO = 1.0
GOAL_HALF_RATE_P99_MS = 20.0
GOAL_TIMELINE_RATIO = 3.0


def log(message: str) -> None:
    print(f"[senders {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- request templates ----------------------------------------------------------------------------


def single_template(occurred_at: str) -> bytes:
    """One order_created event as a JSON array (the shape of tests/conftest.py ``event()``)."""
    import orjson

    event = {
        "event_id": MARK,
        "correlation_id": f"SO-{MARK}",
        "workflow": "order_to_cash",
        "stage": "order_created",
        "system": "oms",
        "occurred_at": occurred_at,
    }
    return orjson.dumps([event]).replace(MARK.encode(), PLACEHOLDER)


def batch_template(events: int, seed: int) -> bytes:
    """``events`` of bench/ingest.py's generator (every stage of order_to_cash, channels, trace
    ids, attributes) as NDJSON, each event_id and correlation_id holding the placeholder, so
    each request carries new events of the orders it starts, as bench/ingest.py's bodies do."""
    import orjson

    orders: dict[str, int] = {}
    lines = []
    for number, event in enumerate(iter_events(events, seed)):
        order = orders.setdefault(event["correlation_id"], len(orders))
        event["event_id"] = f"{MARK}-{number}"
        event["correlation_id"] = f"ORD-{MARK}-{order}"
        lines.append(orjson.dumps(event))
    return (b"\n".join(lines) + b"\n").replace(MARK.encode(), PLACEHOLDER)


# -- wrk ------------------------------------------------------------------------------------------


@dataclass
class WrkSpec:
    """One wrk run: a script of bench/wrk/ against a path, and the variables it reads."""

    script: str
    path: str
    connections: int
    threads: int
    duration_s: int
    env: dict[str, str] = field(default_factory=dict)
    events_per_request: int = 0

    @property
    def exact(self) -> bool:
        return self.env.get("SENDERS_EXACT") == "1"

    @property
    def counted(self) -> bool:
        return self.exact or self.env.get("SENDERS_COUNT") == "1" or self.script == "timeline.lua"


@dataclass
class Cpu:
    """CPU seconds over a wrk run: wrk's own, the server's, and every core's busy time, so
    what other processes took shows (this VM is shared: their load moves every figure)."""

    client_s: float
    server_s: float | None
    machine_s: float

    def cores(self, seconds: float) -> dict[str, float | None]:
        # Ticks are counted apart for the machine and each process: a few go astray either way.
        other = max(0.0, self.machine_s - self.client_s - (self.server_s or 0.0))
        return {
            "server": self.server_s / seconds if self.server_s is not None else None,
            "client": self.client_s / seconds,
            "other": other / seconds if self.server_s is not None else None,
        }


def machine_busy_s() -> float:
    """Busy CPU seconds of all cores since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def others_cores(seconds: float = 2.0) -> float:
    """Cores busy over ``seconds`` while this process sleeps: what other processes use."""
    before = machine_busy_s()
    time.sleep(seconds)
    return (machine_busy_s() - before) / seconds


@dataclass
class WrkResult:
    """What a wrk run reported: its own figures (latency with its coordinated-omission
    correction) and the counters of bench/wrk/common.lua."""

    spec: WrkSpec
    duration_s: float
    requests: int
    status_errors: int
    socket_errors: dict[str, int]
    latency_ms: dict[str, float]
    issued: int
    accepted: int
    statuses: dict[int, int]
    samples_ms: list[float]
    report: str
    cpu: Cpu = field(default_factory=lambda: Cpu(0.0, None, 0.0))

    def cores(self) -> dict[str, float | None]:
        """Server, wrk and other processes' cores over the run."""
        return self.cpu.cores(self.duration_s)

    @property
    def ok(self) -> int:
        """Answers 200 (without counting, every answer under 400: wrk's own split)."""
        if self.spec.counted:
            return self.statuses.get(200, 0)
        return self.requests - self.status_errors

    @property
    def non_200(self) -> int:
        return self.requests - self.ok

    @property
    def sent(self) -> int:
        """Requests wrk sent: wrk calls request() once more, to check the script, before it
        sends anything."""
        return max(0, self.issued - 1)

    @property
    def rate(self) -> float:
        """Requests answered 200 a second."""
        return self.ok / self.duration_s

    @property
    def events_per_s(self) -> float:
        return self.acknowledged / self.duration_s

    @property
    def acknowledged(self) -> int:
        """Events the answers acknowledged (``accepted`` where counted)."""
        return self.accepted if self.spec.counted else self.ok * self.spec.events_per_request

    def exact_ms(self, q: float) -> float | None:
        """Percentile of the latencies Lua measured (None unless one connection per thread)."""
        return percentile(sorted(self.samples_ms), q) if self.samples_ms else None

    def p_ms(self, q: float) -> float:
        """The exact percentile where measured, else wrk's."""
        exact = self.exact_ms(q)
        return exact if exact is not None else self.latency_ms[f"p{q:g}"]

    def detail(self) -> dict[str, Any]:
        out = {
            "script": self.spec.script,
            "path": self.spec.path,
            "connections": self.spec.connections,
            "threads": self.spec.threads,
            "duration_s": round(self.duration_s, 3),
            "requests": self.requests,
            "sent": self.sent,
            "ok": self.ok,
            "non_200": self.non_200,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "status_errors_wrk": self.status_errors,
            "socket_errors": self.socket_errors,
            "requests_per_s": round(self.rate, 1),
            "wrk_latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()},
            "cpu_cores": {k: round(v, 3) if v is not None else None for k, v in self.cores().items()},
            "report": self.report,
        }
        if self.spec.events_per_request:
            out["events_per_request"] = self.spec.events_per_request
            out["acknowledged_events"] = self.acknowledged
            out["events_per_s"] = round(self.events_per_s, 1)
        if self.samples_ms:
            out["exact_latency_ms"] = {
                f"p{q:g}": round(float(self.exact_ms(q) or 0.0), 3) for q in (50, 90, 99, 99.9)
            } | {"max": round(max(self.samples_ms), 3), "count": len(self.samples_ms)}
        return out


@dataclass
class WrkJob:
    """A wrk process under way; its report goes to a file (a pipe could fill and stall it)."""

    spec: WrkSpec
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    server_pid: int
    server_cpu_before: float | None
    machine_before: float


def start_wrk(run: Run, spec: WrkSpec, port: int, server_pid: int, directory: Path) -> WrkJob:
    cmd = [
        "wrk",
        f"--threads={spec.threads}",
        f"--connections={spec.connections}",
        f"--duration={spec.duration_s}s",
        f"--timeout={WRK_TIMEOUT_S}s",
        "--latency",
        f"--script={WRK_DIR / spec.script}",
        f"http://127.0.0.1:{port}{spec.path}",
    ]
    name = f"wrk-{secrets.token_hex(4)}"
    out, err = directory / f"{name}.out", directory / f"{name}.err"
    env = {**os.environ, "SENDERS_THREADS": str(spec.threads), **spec.env}
    before, machine = proc_cpu_seconds(server_pid), machine_busy_s()
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, env=env)
    run.children.append(proc)
    return WrkJob(spec, proc, out, err, server_pid, before, machine)


def reap(proc: subprocess.Popen[bytes], timeout_s: float) -> float:
    """Wait for ``proc``; its CPU seconds (wait4's rusage: the client's cost, measured apart
    from any other child, even one running beside it)."""
    end = time.monotonic() + timeout_s
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return float(usage.ru_utime + usage.ru_stime)
        if time.monotonic() > end:
            proc.kill()
            raise Aborted(f"wrk did not finish within {timeout_s:.0f} s")
        time.sleep(0.05)


def finish_wrk(job: WrkJob) -> WrkResult:
    client_cpu = reap(job.proc, job.spec.duration_s + 120)
    after = proc_cpu_seconds(job.server_pid)
    server_cpu = (
        after - job.server_cpu_before if after is not None and job.server_cpu_before is not None else None
    )
    cpu = Cpu(client_cpu, server_cpu, machine_busy_s() - job.machine_before)
    text = job.out.read_text(errors="replace")
    errors = job.err.read_text(errors="replace").strip()
    line = next((x for x in text.splitlines() if x.startswith("SENDERS_RESULT ")), None)
    if job.proc.returncode != 0 or line is None:
        raise Aborted(f"wrk ({job.spec.script}) exited {job.proc.returncode}: {errors or text[-2000:]}")
    if errors:
        log(f"wrk ({job.spec.script}) stderr: {errors[:500]}")
    data = json.loads(line.split(" ", 1)[1])
    report = "\n".join(x for x in text.splitlines() if not x.startswith("SENDERS_RESULT "))
    return parse_wrk(job.spec, data, report, cpu)


def parse_wrk(spec: WrkSpec, data: dict[str, Any], report: str, cpu: Cpu) -> WrkResult:
    statuses: dict[int, int] = {}
    for thread in data["threads"]:
        for status, count in (thread["statuses"] or {}).items():
            statuses[int(status)] = statuses.get(int(status), 0) + int(count)
    errors = {k: int(v) for k, v in data["errors"].items()}
    return WrkResult(
        spec=spec,
        duration_s=data["duration_us"] / 1e6,
        requests=int(data["requests"]),
        status_errors=errors.pop("status"),
        socket_errors=errors,
        latency_ms={k: (v or 0.0) / 1000 for k, v in data["latency_us"].items()},
        issued=sum(int(t["issued"]) for t in data["threads"]),
        accepted=sum(int(t["accepted"]) for t in data["threads"]),
        statuses=statuses,
        samples_ms=[float(x) for x in data["samples_ms"] or []],
        report=report,
        cpu=cpu,
    )


@functools.cache
def wrk_version() -> str:
    done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).splitlines()[0].strip() if (done.stdout or done.stderr) else "?"


# -- the service ----------------------------------------------------------------------------------


@dataclass
class Counters:
    """The service's own ingest counters (``/metrics``). ``logged`` and ``waiting`` exist once
    acknowledgement means "in the write-ahead log" and a loader fills ClickHouse after it
    (None before): then ``stored`` trails the answers and the check waits for the loader."""

    stored: int
    duplicates: int
    rejected: int
    commits: int
    logged: int | None = None
    waiting: int | None = None


@dataclass
class Service:
    """One ``flowsight serve`` process of a scenario run."""

    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path

    def metrics(self) -> str:
        status, body = get(self.port, "/metrics", timeout=30)
        if status != 200:
            raise Aborted(f"/metrics answered {status}")
        return body.decode()

    def counters(self) -> Counters:
        text = self.metrics()

        def value(name: str) -> int:
            found = metric(text, name)
            if found is None:
                raise Aborted(f"/metrics has no {name}")
            return int(found)

        def optional(name: str) -> int | None:
            found = metric(text, name)
            return int(found) if found is not None else None

        return Counters(
            stored=value("flowsight_ingest_events_stored_total"),
            duplicates=value("flowsight_ingest_duplicates_total"),
            rejected=value("flowsight_ingest_rejected_total"),
            commits=value("flowsight_ingest_commits_total"),
            logged=optional("flowsight_ingest_events_logged_total"),
            waiting=optional("flowsight_loader_waiting_rows"),
        )

    def settled_counters(self, timeout_s: float = 180.0) -> tuple[Counters, float]:
        """The counters once nothing moves (and no acknowledged row waits for the loader), and
        how long that took: requests wrk left in flight when it stopped are still committed
        (a commit is never cut short), and a loader may still be inserting what was logged."""
        started = time.monotonic()
        last = self.counters()
        while time.monotonic() - started < timeout_s:
            time.sleep(0.5)
            now = self.counters()
            if now == last and not now.waiting:
                break
            last = now
        else:
            log(f"WARNING: the ingest counters still moved {timeout_s:.0f} s after the load")
        return last, time.monotonic() - started


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as an orchestrator stops the service; killed if it takes over a minute."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        log("WARNING: the server did not stop within 60 s of SIGTERM; killed")
        proc.kill()
        proc.wait()
        return
    if code not in (0, -signal.SIGTERM):
        log(f"WARNING: the server exited with {code}")


def watched_metrics(text: str) -> dict[str, float]:
    """Series whose metric name contains ``loader_lag`` or ``wal``: the write-ahead log's and
    its loader's, where the service has them (a service that writes straight to ClickHouse has
    none)."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = re.split(r"[{\s]", line, maxsplit=1)[0]
        if "loader_lag" in name or "wal" in name:
            series, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                found[series] = float(value)
    return found


def brief(series: dict[str, float]) -> str:
    """The series for a log line, without histogram buckets."""
    kept = {k: v for k, v in series.items() if "_bucket{" not in k}
    return ", ".join(f"{k} {v:g}" for k, v in kept.items()) or "not exposed"


class EvaluationWatch:
    """Polls ``/metrics`` once a second during a load: each change of
    ``flowsight_evaluation_duration_seconds`` is an evaluation that finished, and the
    ``loader_lag``/``wal`` series are kept at their highest."""

    def __init__(self, port: int):
        self.port = port
        self.durations: list[float] = []
        self.watched_max: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.poll, name="evaluation-watch", daemon=True)
        self.last: float | None = None

    def sample(self) -> None:
        status, body = get(self.port, "/metrics", timeout=30)
        if status != 200:
            return
        text = body.decode()
        taken = metric(text, "flowsight_evaluation_duration_seconds")
        if self.last is not None and taken is not None and taken != self.last:
            self.durations.append(taken)
        if taken is not None:
            self.last = taken
        for series, value in watched_metrics(text).items():
            self.watched_max[series] = max(value, self.watched_max.get(series, value))

    def poll(self) -> None:
        while not self.stop.wait(1.0):
            with contextlib.suppress(OSError):
                self.sample()

    def __enter__(self) -> EvaluationWatch:
        self.sample()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


# -- the benchmark ------------------------------------------------------------------------------------


def storage_check(before: Counters, after: Counters, result: WrkResult) -> dict[str, Any]:
    """Stored events against what wrk saw: every acknowledged event stored, none twice, and
    nothing beyond the requests wrk had sent (those in flight when it stopped may be stored
    without an answer wrk read); with a write-ahead log, everything logged is stored too."""
    batch = result.spec.events_per_request
    stored = after.stored - before.stored
    acknowledged = result.acknowledged
    sent = result.sent * batch
    whole_batches = not result.spec.counted or result.accepted == result.ok * batch
    duplicates = after.duplicates - before.duplicates
    rejected = after.rejected - before.rejected
    logged = after.logged - before.logged if after.logged is not None and before.logged is not None else None
    return {
        "stored": stored,
        "logged": logged,
        "acknowledged": acknowledged,
        "sent": sent,
        "stored_beyond_acknowledged": stored - acknowledged,
        "in_flight_at_stop": (result.sent - result.requests) * batch,
        "duplicates": duplicates,
        "rejected": rejected,
        "commits": after.commits - before.commits,
        "ok": acknowledged <= stored <= sent
        and logged in (None, stored)
        and whole_batches
        and duplicates == 0
        and rejected == 0,
    }


def events_env(
    template: Path, content_type: str, prefix: str, *, count: bool, exact: bool = False
) -> dict[str, str]:
    env = {
        "SENDERS_TEMPLATE": str(template),
        "SENDERS_CONTENT_TYPE": content_type,
        "SENDERS_PREFIX": prefix,
    }
    if count:
        env["SENDERS_COUNT"] = "1"
    if exact:
        env["SENDERS_EXACT"] = "1"
    return env


def paced(env: dict[str, str], events_per_s: float, batch: int, threads: int) -> dict[str, str]:
    """``env`` with each of ``threads`` wrk threads sending one request every period: with C
    connections a fixed delay would be 1000·C·batch/rate ms after each answer; the schedule of
    common.lua's pacer keeps the rate whatever the latency."""
    requests_per_s = events_per_s / batch
    return {**env, "SENDERS_PERIOD_MS": f"{1000.0 * threads / requests_per_s:.4f}"}


class Bench:
    """The run's state: options, cleanup, templates, results so far."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.run = Run(args.keep)
        self.started = time.monotonic()
        self.deadline = self.started + args.timeout
        self.work = self.run.tempdir("flowsight-senders-work-")
        self.results: dict[str, list[dict[str, Any]]] = {}
        self.sustained_rates: list[float] = []
        self.failures: list[str] = []
        self.templates: dict[str, Path] = {}

    # -- set-up ---------------------------------------------------------------------------

    def write_templates(self) -> None:
        """Bodies are built once, before any load: wrk only fills in the ids."""
        occurred = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 300))
        bodies = {
            "single": single_template(occurred),
            "batch100": batch_template(100, self.args.seed),
            "batch1000": batch_template(1000, self.args.seed),
        }
        for name, body in bodies.items():
            path = self.work / f"{name}.body"
            path.write_bytes(body)
            self.templates[name] = path
        log(
            f"templates: single occurred_at {occurred}; 100 and 1,000 events ({len(bodies['batch1000']):,} bytes)"
        )

    def prefix(self, code: str, number: int) -> str:
        """A tag prefix unique to one wrk run (its event ids never meet another run's)."""
        return f"{code}{number}{secrets.token_hex(2)}"

    @contextlib.contextmanager
    def service(self, evaluation_interval_s: float | None = None) -> Iterator[Service]:
        data_dir = self.run.tempdir("flowsight-senders-")
        port = free_port()
        settings = (
            {}
            if evaluation_interval_s is None
            else {"evaluation_interval_seconds": f"{evaluation_interval_s:g}"}
        )
        proc = start_server(self.run, data_dir, port, self.deadline, settings=settings)
        try:
            yield Service(proc, port, data_dir)
        finally:
            peak = proc_status(proc.pid, "VmHWM")
            stop_server(proc)
            if peak is not None:
                log(f"server peak RSS {peak / MiB:,.0f} MiB")
            self.run.remove(data_dir)

    def wrk(self, service: Service, spec: WrkSpec) -> WrkResult:
        log(
            f"wrk {spec.script} {spec.path}: {spec.connections} connections, {spec.threads} threads, "
            f"{spec.duration_s} s"
        )
        result = finish_wrk(start_wrk(self.run, spec, service.port, service.proc.pid, self.work))
        self.log_result(result)
        return result

    def log_result(self, result: WrkResult) -> None:
        rate = (
            f"{result.events_per_s:,.0f} events/s"
            if result.spec.events_per_request
            else f"{result.rate:,.0f} req/s"
        )
        exact = f", exact p99 {result.exact_ms(99):.1f} ms" if result.samples_ms else ""
        log(
            f"  {rate}, wrk p50 {result.latency_ms['p50']:.1f} ms p99 {result.latency_ms['p99']:.1f} ms{exact}, "
            f"non-200 {result.non_200}; cores: "
            + ", ".join(f"{k} {v:.2f}" for k, v in result.cores().items() if v is not None)
        )
        if result.non_200:
            log(f"  answers by status: {result.statuses or 'not counted'}; wrk errors {result.socket_errors}")

    # -- scenarios ------------------------------------------------------------------------

    def healthz_and_single(self, number: int) -> dict[str, dict[str, Any]]:
        """1 and 2 on one server: the ratio compares the same process at the same time."""
        d = self.args.duration
        with self.service() as service:
            healthz = self.wrk(
                service, WrkSpec("healthz.lua", "/healthz", HEALTHZ_CONNECTIONS, WRK_THREADS, d)
            )
            if "single" not in self.args.scenarios:
                return {"healthz": self.figures_http(healthz)}
            before, _ = service.settled_counters()
            env = events_env(
                self.templates["single"], CONTENT_TYPES["json"], self.prefix("s", number), count=False
            )
            single = self.wrk(
                service,
                WrkSpec(
                    "events.lua", "/v1/events", SINGLE_CONNECTIONS, WRK_THREADS, d, env, events_per_request=1
                ),
            )
            stored = self.check_stored(service, before, single)
        out = {"healthz": self.figures_http(healthz)}
        out["single"] = {
            "figures": {
                "events_per_s": single.events_per_s,
                "ratio_to_healthz": single.rate / healthz.rate,
                "p50_ms": single.latency_ms["p50"],
                "p99_ms": single.latency_ms["p99"],
                **self.common_figures(single, stored),
            },
            "detail": {"wrk": single.detail(), "stored": stored, "healthz_requests_per_s": healthz.rate},
        }
        return out

    def figures_http(self, result: WrkResult) -> dict[str, Any]:
        return {
            "figures": {
                "requests_per_s": result.rate,
                "p50_ms": result.latency_ms["p50"],
                "p99_ms": result.latency_ms["p99"],
                "non_200": result.non_200,
                **cpu_figures(result.cores()),
            },
            "detail": {"wrk": result.detail()},
        }

    def common_figures(self, result: WrkResult, stored: dict[str, Any]) -> dict[str, Any]:
        return {
            "non_200": result.non_200,
            "stored_beyond_acknowledged": stored["stored_beyond_acknowledged"],
            "stored_ok": stored["ok"],
            **cpu_figures(result.cores()),
        }

    def ingest_run(self, service: Service, spec: WrkSpec) -> tuple[WrkResult, dict[str, Any]]:
        before, _ = service.settled_counters()
        result = self.wrk(service, spec)
        return result, self.check_stored(service, before, result)

    def check_stored(self, service: Service, before: Counters, result: WrkResult) -> dict[str, Any]:
        """:func:`storage_check` once the service has settled, with the ``loader_lag``/``wal``
        series as the load left them and how long the settling took."""
        at_end = watched_metrics(service.metrics())
        after, settle_s = service.settled_counters()
        stored = storage_check(before, after, result) | {
            "settle_s": round(settle_s, 1),
            "watched_at_end": at_end,
        }
        log(
            f"  stored {stored['stored']:,} events, acknowledged {stored['acknowledged']:,} "
            f"(+{stored['stored_beyond_acknowledged']:,} of requests in flight at the stop; settled in "
            f"{settle_s:.1f} s): {'OK' if stored['ok'] else 'MISMATCH'}"
        )
        if at_end:
            log(f"  at the end of the load: {brief(at_end)}")
        return stored

    def batch_spec(
        self, code: str, number: int, batch: int, connections: int, threads: int, seconds: int, **kw: Any
    ) -> WrkSpec:
        env = events_env(
            self.templates[f"batch{batch}"],
            CONTENT_TYPES["ndjson"],
            self.prefix(code, number),
            count=True,
            **kw,
        )
        return WrkSpec(
            "events.lua", "/v1/events", connections, threads, seconds, env, events_per_request=batch
        )

    def batch100(self, number: int) -> dict[str, Any]:
        spec = self.batch_spec("b", number, 100, BATCH100_CONNECTIONS, WRK_THREADS, self.args.duration)
        with self.service() as service:
            result, stored = self.ingest_run(service, spec)
        return self.batch_result(result, stored)

    def batch_result(self, result: WrkResult, stored: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {
            "figures": {
                "events_per_s": result.events_per_s,
                "p50_ms": result.p_ms(50),
                "p99_ms": result.p_ms(99),
                **self.common_figures(result, stored),
            },
            "detail": {"wrk": result.detail(), "stored": stored, **extra},
        }

    def sustained(self, number: int) -> dict[str, Any]:
        seconds = self.args.sustained_duration
        spec = self.batch_spec("k", number, 1000, SUSTAINED_CONNECTIONS, WRK_THREADS, seconds)
        with self.service(self.args.evaluation_interval) as service:
            before, _ = service.settled_counters()
            with EvaluationWatch(service.port) as watch:  # only while wrk runs
                result = self.wrk(service, spec)
            stored = self.check_stored(service, before, result)
            after = watched_metrics(service.metrics())
        log(
            f"  evaluations finished in the window: {len(watch.durations)} "
            f"({', '.join(f'{s:.2f} s' for s in watch.durations) or 'none'})"
        )
        log(f"  loader_lag / wal metrics once settled: {brief(after)}")
        self.sustained_rates.append(result.events_per_s)
        out = self.batch_result(
            result,
            stored,
            evaluation_seconds=watch.durations,
            evaluation_interval_s=self.args.evaluation_interval,
            watched_metrics_after=after,
            watched_metrics_max=watch.watched_max,
        )
        out["figures"]["evaluations"] = len(watch.durations)
        return out

    def one_sender(self, number: int) -> dict[str, Any]:
        spec = self.batch_spec("o", number, 1000, 1, 1, self.args.duration, exact=True)
        with self.service() as service:
            result, stored = self.ingest_run(service, spec)
        try:
            direct = self.direct(result.acknowledged)
        except Aborted as exc:  # the HTTP figures stand; the comparison is missing, and said so
            log(f"FAILED: the direct insert: {exc}")
            self.failures.append(f"one-sender run {number}: the direct insert: {exc}")
            direct = {"error": str(exc), "events_per_s": None}
        out = self.batch_result(result, stored, direct=direct)
        rate = direct["events_per_s"]
        out["figures"]["direct_rows_per_s"] = rate
        out["figures"]["ratio_to_direct"] = result.events_per_s / rate if rate else None
        return out

    def direct(self, acknowledged: int) -> dict[str, Any]:
        """bench/ingest.py's direct phase (its own process, a fresh chDB directory, the server
        stopped): ``insert_arrow`` of 1,000-row batches of the same generator's rows, as many
        as the sender stored (between 20,000 and ``--direct-events-max``)."""
        events = max(20_000, min(self.args.direct_events_max, acknowledged // 1000 * 1000))
        options = argparse.Namespace(
            direct_chunk=1000, batch=1000, concurrency=1, events=events, seed=self.args.seed
        )
        directory = self.run.tempdir("flowsight-senders-direct-")
        try:
            out = direct_phase(options, self.run, directory, self.deadline, extra_chunks=False)
        finally:
            self.run.remove(directory)
        first = out["runs"][0]
        log(
            f"  direct insert_arrow, 1,000-row batches: {first['events_per_s']:,.0f} rows/s ({events:,} rows)"
        )
        return {
            "events": events,
            "events_per_s": first["events_per_s"],
            "seconds": first["seconds"],
            "chunk": 1000,
        }

    def sustained_rate(self) -> tuple[float, str]:
        """The rate scenarios 6 and 7 derive theirs from: the median of scenario 4 so far in
        this run, else ``--sustained-rate``, else the last results file's median."""
        if self.sustained_rates:
            rate = statistics.median(self.sustained_rates)
            return rate, f"median of {len(self.sustained_rates)} sustained run(s)"
        if self.args.sustained_rate:
            return float(self.args.sustained_rate), "--sustained-rate"
        with contextlib.suppress(OSError, KeyError, TypeError, ValueError):
            last = json.loads(self.args.out.read_text())
            rate = last["scenarios"]["batch1000-sustained"]["figures"]["events_per_s"]["median"]
            return float(rate), f"{self.args.out} (an earlier run)"
        raise Aborted("no sustained rate: run batch1000-sustained too, or give --sustained-rate")

    def half_rate(self, number: int) -> dict[str, Any]:
        sustained, source = self.sustained_rate()
        target = sustained / 2
        log(f"  half of {sustained:,.0f} events/s ({source}): {target:,.0f} events/s")
        spec = self.batch_spec(
            "h", number, 1000, HALF_RATE_CONNECTIONS, HALF_RATE_CONNECTIONS, self.args.duration, exact=True
        )
        spec.env = paced(spec.env, target, 1000, spec.threads)
        with self.service() as service:
            result, stored = self.ingest_run(service, spec)
        out = self.batch_result(result, stored, sustained_rate=sustained, sustained_rate_source=source)
        out["figures"] |= {
            "target_events_per_s": target,
            "wrk_p99_ms": result.latency_ms["p99"],
        }
        return out

    def seed_orders(self, service: Service) -> Path:
        """Store TIMELINE_ORDERS orders (every stage: bench/ingest.py's bodies, posted by its
        Load), and write their ids for timeline.lua."""
        import orjson

        bodies, counts = ndjson_bodies(TIMELINE_ORDERS * 7, 1000, self.args.seed + 1)
        load = Load(bodies, counts, service.port, 120.0, CONTENT_TYPES["ndjson"])
        load.first = time.perf_counter()
        load.worker()
        if load.errors or load.accepted != sum(counts):
            raise Aborted(
                f"seeding the timeline's orders: accepted {load.accepted}, errors {load.errors[:3]}"
            )
        ids = sorted({orjson.loads(line)["correlation_id"] for body in bodies for line in body.splitlines()})
        path = self.work / "timeline-ids.txt"
        path.write_text("\n".join(ids) + "\n")
        log(f"  seeded {len(ids):,} orders ({sum(counts):,} events)")
        return path

    def timeline_spec(self, ids: Path, seconds: int) -> WrkSpec:
        env = {"SENDERS_IDS": str(ids), "SENDERS_EXACT": "1"}
        return WrkSpec("timeline.lua", "/", TIMELINE_CONNECTIONS, TIMELINE_CONNECTIONS, seconds, env)

    def timeline(self, number: int) -> dict[str, Any]:
        seconds = min(TIMELINE_SECONDS, self.args.duration)
        sustained, source = self.sustained_rate()
        rate = LOADER_SHARE * sustained
        loader = self.batch_spec(
            "l", number, 1000, SUSTAINED_CONNECTIONS, WRK_THREADS, seconds + LOADER_WARMUP_S + 2
        )
        loader.env = paced(loader.env, rate, 1000, loader.threads)
        with self.service() as service:
            ids = self.seed_orders(service)
            before, _ = service.settled_counters()  # the seeded orders readable (loaded, if logged first)
            idle = self.wrk(service, self.timeline_spec(ids, seconds))
            log(
                f"  ingest at {LOADER_SHARE:.0%} of {sustained:,.0f} events/s ({source}): {rate:,.0f} events/s"
            )
            job = start_wrk(self.run, loader, service.port, service.proc.pid, self.work)
            time.sleep(LOADER_WARMUP_S)
            loaded = self.wrk(service, self.timeline_spec(ids, seconds))
            ingest = finish_wrk(job)
            self.log_result(ingest)
            stored = self.check_stored(service, before, ingest)
        return {
            "figures": {
                "idle_p99_ms": idle.p_ms(99),
                "loaded_p99_ms": loaded.p_ms(99),
                "ratio": loaded.p_ms(99) / idle.p_ms(99),
                "idle_p50_ms": idle.p_ms(50),
                "loaded_p50_ms": loaded.p_ms(50),
                "ingest_target_events_per_s": rate,
                "ingest_events_per_s": ingest.events_per_s,
                "non_200": idle.non_200 + loaded.non_200 + ingest.non_200,
                "stored_beyond_acknowledged": stored["stored_beyond_acknowledged"],
                "stored_ok": stored["ok"],
                # Over the ingest run, which spans the loaded reads: both wrk count as clients.
                **cpu_figures(
                    Cpu(
                        ingest.cpu.client_s + loaded.cpu.client_s, ingest.cpu.server_s, ingest.cpu.machine_s
                    ).cores(ingest.duration_s)
                ),
            },
            "detail": {
                "idle": idle.detail(),
                "loaded": loaded.detail(),
                "ingest": ingest.detail(),
                "stored": stored,
                "sustained_rate": sustained,
                "sustained_rate_source": source,
            },
        }

    # -- driving --------------------------------------------------------------------------

    def plan(self) -> list[tuple[str, Callable[[int], dict[str, Any]]]]:
        """The scenario groups in order (healthz and single share a server); 6 and 7 come after
        4, whose rate they use."""
        chosen = set(self.args.scenarios)
        groups: list[tuple[str, Callable[[int], dict[str, Any]]]] = []
        if chosen & {"healthz", "single"}:
            groups.append(("healthz+single", self.healthz_and_single))
        steps: list[tuple[str, Callable[[int], dict[str, Any]]]] = [
            ("batch100", self.batch100),
            ("batch1000-sustained", self.sustained),
            ("one-sender", self.one_sender),
            ("half-rate", self.half_rate),
            ("timeline-under-load", self.timeline),
        ]
        return groups + [(name, fn) for name, fn in steps if name in chosen]

    def wait_for_quiet(self) -> float:
        """Other processes' cores before a run, waiting up to ``--quiet-wait`` s for them to
        drop under QUIET_CORES: on a shared 2-core VM a test suite beside the server moves
        every figure, so the run records what it started with."""
        started = time.monotonic()
        reported = -30.0
        while True:
            busy = others_cores()
            waited = time.monotonic() - started
            if busy < QUIET_CORES or waited >= self.args.quiet_wait:
                break
            if waited - reported >= 30:
                log(
                    f"other processes use {busy:.2f} cores; waiting (up to --quiet-wait {self.args.quiet_wait:g} s)"
                )
                reported = waited
        if busy >= QUIET_CORES:
            log(f"WARNING: starting with other processes using {busy:.2f} cores")
        return busy

    def execute(self) -> None:
        plan = self.plan()
        for number in range(1, self.args.runs + 1):
            for name, step in plan:
                log(f"run {number}/{self.args.runs}: {name}")
                others = self.wait_for_quiet()
                try:
                    produced = step(number)
                except Aborted as exc:
                    log(f"FAILED: {name} run {number}: {exc}")
                    self.failures.append(f"{name} run {number}: {exc}")
                    continue
                if name == "healthz+single":  # healthz is single's reference: kept either way
                    for scenario, result in produced.items():
                        self.record(scenario, number, result, others)
                else:
                    self.record(name, number, produced, others)
                self.write()

    def record(self, scenario: str, number: int, result: dict[str, Any], others: float) -> None:
        entry = {"run": number, "others_before_cores": round(others, 3), **result}
        self.results.setdefault(scenario, []).append(entry)

    def write(self) -> None:
        report = build_report(self)
        write_json(self.args.out, report)
        self.args.out.with_suffix(".md").write_text(markdown(report) + "\n")


def cpu_figures(cores: dict[str, float | None]) -> dict[str, float | None]:
    return {f"{name}_cores": value for name, value in cores.items()}


# -- the report -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """A row of the table: how to read, format and judge one figure of a scenario."""

    key: str
    label: str
    fmt: str
    goal: float | None = None
    at_most: bool = False
    goal_text: str = ""

    def verdict(self, median: float | None) -> str:
        if self.goal is None or median is None:
            return ""
        ok = median <= self.goal if self.at_most else median >= self.goal
        return "PASS" if ok else "MISS"

    def target(self) -> str:
        if self.goal_text:
            return self.goal_text
        if self.goal is None:
            return ""
        return f"{'≤' if self.at_most else '≥'} {self.fmt.format(self.goal)}"


EVENTS = "{:,.0f}"
MS = "{:.1f}"
NON_200 = Figure("non_200", "answers other than 200", EVENTS, 0, at_most=True, goal_text="0")
CPU_FIGURES = (
    Figure("server_cores", "CPU: server (cores)", "{:.2f}"),
    Figure("client_cores", "CPU: wrk (cores)", "{:.2f}"),
    Figure("other_cores", "CPU: other processes (cores)", "{:.2f}"),
)
CHECKS = (
    NON_200,
    # Judged in scenario_summary: every run's stored-count check, not a median.
    Figure(
        "stored_beyond_acknowledged",
        "stored - acknowledged events (of requests in flight when wrk stopped)",
        EVENTS,
    ),
    *CPU_FIGURES,
)
FIGURES: dict[str, list[Figure]] = {
    "healthz": [
        Figure("requests_per_s", "requests/s", EVENTS),
        Figure("p50_ms", "latency p50 (ms, wrk)", MS),
        Figure("p99_ms", "latency p99 (ms, wrk)", MS),
        NON_200,
        *CPU_FIGURES,
    ],
    "single": [
        Figure("events_per_s", "events/s (1 event a request)", EVENTS, GOAL_SINGLE_EVENTS_PER_S),
        Figure(
            "ratio_to_healthz", "requests/s ÷ healthz requests/s (same server)", "{:.2f}", GOAL_SINGLE_RATIO
        ),
        Figure("p50_ms", "latency p50 (ms, wrk)", MS),
        Figure("p99_ms", "latency p99 (ms, wrk)", MS, GOAL_SINGLE_P99_MS, at_most=True),
        *CHECKS,
    ],
    "batch100": [
        Figure("events_per_s", "events/s (100 a request)", EVENTS, GOAL_BATCH100_EVENTS_PER_S),
        Figure("p50_ms", "latency p50 (ms, wrk)", MS),
        Figure("p99_ms", "latency p99 (ms, wrk)", MS),
        *CHECKS,
    ],
    "batch1000-sustained": [
        Figure(
            "events_per_s",
            "events/s (1,000 a request, evaluations running)",
            EVENTS,
            GOAL_SUSTAINED_EVENTS_PER_S,
        ),
        Figure("p50_ms", "latency p50 (ms, wrk)", MS),
        Figure("p99_ms", "latency p99 (ms, wrk)", MS),
        Figure("evaluations", "evaluations finished in the window", "{:.0f}", GOAL_SUSTAINED_EVALUATIONS),
        *CHECKS,
    ],
    "one-sender": [
        Figure("events_per_s", "events/s (1 connection, 1,000 a request)", EVENTS),
        Figure("direct_rows_per_s", "direct insert_arrow, 1,000-row batches (rows/s)", EVENTS),
        Figure("ratio_to_direct", "HTTP ÷ direct", "{:.2f}", GOAL_ONE_SENDER_RATIO),
        Figure("p50_ms", "latency p50 (ms, exact)", MS),
        Figure("p99_ms", "latency p99 (ms, exact)", MS),
        *CHECKS,
    ],
    "half-rate": [
        Figure("target_events_per_s", "paced at (events/s: half the sustained rate)", EVENTS),
        Figure("events_per_s", "events/s acknowledged", EVENTS),
        Figure("p50_ms", "acknowledgement latency p50 (ms, exact)", MS),
        Figure("p99_ms", "acknowledgement latency p99 (ms, exact)", MS, GOAL_HALF_RATE_P99_MS, at_most=True),
        Figure("wrk_p99_ms", "latency p99 (ms, wrk)", MS),
        *CHECKS,
    ],
    "timeline-under-load": [
        Figure("idle_p50_ms", "timeline p50 idle (ms, exact)", MS),
        Figure("idle_p99_ms", "timeline p99 idle (ms, exact)", MS),
        Figure("loaded_p50_ms", "timeline p50 under ingest (ms, exact)", MS),
        Figure("loaded_p99_ms", "timeline p99 under ingest (ms, exact)", MS),
        Figure("ratio", "p99 under ingest ÷ idle", "{:.2f}", GOAL_TIMELINE_RATIO, at_most=True),
        Figure("ingest_target_events_per_s", "ingest paced at (events/s: 80% of sustained)", EVENTS),
        Figure("ingest_events_per_s", "ingest events/s acknowledged", EVENTS),
        *CHECKS,
    ],
}


def summarize(figure: Figure, runs: list[dict[str, Any]]) -> dict[str, Any]:
    values = [r["figures"].get(figure.key) for r in runs]
    present = [float(v) for v in values if v is not None]
    median = statistics.median(present) if present else None
    return {
        "label": figure.label,
        "median": median,
        "runs": values,
        "target": figure.target(),
        "verdict": figure.verdict(median),
    }


def scenario_summary(scenario: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    figures = {f.key: summarize(f, runs) for f in FIGURES[scenario]}
    if "stored_beyond_acknowledged" in figures:
        ok = all(r["figures"]["stored_ok"] for r in runs)
        figures["stored_beyond_acknowledged"]["target"] = "0 ≤ x ≤ in flight; none twice"
        figures["stored_beyond_acknowledged"]["verdict"] = "OK" if ok else "FAIL"
    return {"figures": figures, "runs": runs}


def build_report(bench: Bench) -> dict[str, Any]:
    args = bench.args
    return {
        "scenarios": {
            name: scenario_summary(name, bench.results[name]) for name in SCENARIOS if name in bench.results
        },
        "failures": bench.failures,
        "settings": {
            "duration_s": args.duration,
            "runs": args.runs,
            "sustained_duration_s": args.sustained_duration,
            "evaluation_interval_s": args.evaluation_interval,
            "timeline_seconds": min(TIMELINE_SECONDS, args.duration),
            "wrk_timeout_s": WRK_TIMEOUT_S,
            "scenarios": list(args.scenarios),
        },
        "wrk": wrk_version(),
        "machine": machine_info(),
        "command": shlex.join(sys.orig_argv),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "total_s": round(time.monotonic() - bench.started, 1),
    }


def fmt_value(figure: Figure, value: Any) -> str:
    if value is None:
        return "n/a"
    return figure.fmt.format(value)


def markdown(report: dict[str, Any]) -> str:
    out = [
        "| Scenario | Figure | Median | Every run | Target | |",
        "|---|---|---:|---|---|---|",
    ]
    for name, scenario in report["scenarios"].items():
        for figure in FIGURES[name]:
            row = scenario["figures"][figure.key]
            runs = ", ".join(fmt_value(figure, v) for v in row["runs"])
            out.append(
                f"| {name} | {row['label']} | {fmt_value(figure, row['median'])} | {runs} | "
                f"{row['target']} | {row['verdict']} |"
            )
    s, m = report["settings"], report["machine"]
    out += [
        "",
        f"Each scenario run on its own `flowsight serve` (fresh data directory); the median of "
        f"{s['runs']} run(s) stands. D = {s['duration_s']} s (sustained {s['sustained_duration_s']} s, "
        f"evaluating every {s['evaluation_interval_s']:g} s; timeline phases {s['timeline_seconds']} s). "
        "wrk's latency includes its correction for coordinated omission; *exact* latencies are timed "
        "in Lua for every request, one connection per wrk thread.",
        f"Client: {report['wrk']}. Machine: {m['nproc']} CPUs, Python {m['python']}, chdb {m['chdb']}, "
        f"uvicorn {m['uvicorn']}.",
        f"Command: `{report['command']}`",
    ]
    if report["failures"]:
        out += ["", "Failed runs:", *[f"- {f}" for f in report["failures"]]]
    return "\n".join(out)


# -- command line -----------------------------------------------------------------------------------


def scenario_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {', '.join(SCENARIOS)}")
    return names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="The ingest API under wrk: many small senders, batches, a sustained load with "
        "evaluations running, one sender against a direct insert, paced senders' acknowledgement "
        "latency, and timeline reads under ingest. Progress on stderr; writes JSON and markdown.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--duration", type=positive, default=20, help="seconds of each load (D)")
    p.add_argument("--runs", type=positive, default=3, help="runs of each scenario, each on a fresh server")
    p.add_argument(
        "--scenarios",
        type=scenario_list,
        default=list(SCENARIOS),
        help=f"comma-separated, of {','.join(SCENARIOS)}",
    )
    p.add_argument("--sustained-duration", type=positive, default=60, help="seconds of batch1000-sustained")
    p.add_argument(
        "--evaluation-interval",
        type=float,
        default=20.0,
        help="the sustained scenario's server evaluates this often (evaluation_interval_seconds)",
    )
    p.add_argument(
        "--sustained-rate",
        type=float,
        help="events/s half-rate and timeline-under-load derive theirs from when batch1000-sustained "
        "is not run (default: the last results file's median)",
    )
    p.add_argument(
        "--direct-events-max",
        type=int,
        default=200_000,
        help="most rows the one-sender's direct insert writes",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result (the markdown beside it, .md)")
    p.add_argument("--timeout", type=float, default=2400.0, help="seconds after which the whole run aborts")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help=f"before each run, wait up to this many seconds for other processes to use under {QUIET_CORES} cores",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary directories (and server logs)")
    p.add_argument("--seed", type=int, default=20261204, help="seed of the generated events")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if shutil.which("wrk") is None:
        log("wrk is not installed: apt-get install -y wrk")
        return 1
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stopped: servers and wrk go too
    bench = Bench(args)
    timer = bench.run.watchdog(args.timeout)
    try:
        bench.write_templates()
        bench.execute()
    except KeyboardInterrupt:
        log("interrupted")
        bench.run.cleanup()
        return 130
    finally:
        timer.cancel()
    bench.run.cleanup()
    if not bench.results:
        log("FAILED: no scenario completed")
        return 1
    bench.write()
    print(markdown(build_report(bench)))
    log(f"wrote {args.out} and {args.out.with_suffix('.md')} in {time.monotonic() - bench.started:.0f} s")
    bad = [
        n for n, runs in bench.results.items() if any(not r["figures"].get("stored_ok", True) for r in runs)
    ]
    if bad:
        log(f"FAILED: stored counts did not match what wrk acknowledged in {', '.join(bad)}")
    return 1 if bench.failures or bad else 0


if __name__ == "__main__":
    sys.exit(main())
