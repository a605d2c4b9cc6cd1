"""The demo: a short run fills every channel and stage through the real paths (HTTP events,
OTLP traces and logs from the OpenTelemetry SDK), and the ERP outage pages once as the root
cause, suppresses what it impacts, then resolves."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowsight.demo import main
from flowsight.demo.estate import ORDER_TO_CASH, RETURN_TO_REFUND, Estate
from flowsight.demo.runner import DemoOptions
from flowsight.settings import Settings
from tests.server import free_port

NOON = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
"""Simulated runs start here, so the day's rhythm (and every random draw) is the same each run."""

# Returns that come back within hours, so a short run reaches every return stage too.
QUICK_RETURNS = tuple(replace(step, median_s=min(step.median_s, 1800)) for step in RETURN_TO_REFUND)


@pytest.fixture
def running(tmp_path: Path, request: Any, engine: Any) -> Iterator[main.Running]:
    """The demo on the test process's engine (one process holds one embedded database)."""
    options: DemoOptions = request.param
    log = io.StringIO()
    running = main.start(
        Settings(data_dir=tmp_path, port=free_port()), options, out=log, store=engine, start_at=NOON
    )
    yield running
    running.close()


SHORT = DemoOptions(
    speed=0,
    backfill_s=0,
    scenarios=(),
    evaluate_every_s=6 * 3600,
    seed=3,
    estate=Estate(orders_per_minute=6, return_share=0.5, return_after_s=1800, returns=QUICK_RETURNS),
)


@pytest.mark.parametrize("running", [SHORT], indirect=True)
def test_a_short_run_reaches_every_channel_and_stage(running: main.Running) -> None:
    demo = running.demo
    for _ in range(6 * 60):  # 6 simulated hours, a minute a step
        demo.step()
    demo.sink.flush()
    health = httpx.get(f"{running.url}/api/flow/health", params={"at": demo.clock.now.isoformat()}).json()
    o2c, r2r = health["workflows"]["order_to_cash"], health["workflows"]["return_to_refund"]
    assert {s.stage for s in ORDER_TO_CASH} <= {stage for stage, n in o2c["funnel"].items() if n > 0}
    assert {s.stage for s in RETURN_TO_REFUND} <= {stage for stage, n in r2r["funnel"].items() if n > 0}
    assert set(o2c["by_channel"]) == {"web", "app", "store_pickup", "marketplace"}
    store, schema = demo.services.store, demo.services.schema
    # Events came over HTTP and as OTLP log records (shipping), spans over OTLP from 9 systems.
    sources = dict(store.rows(f"SELECT source, count() FROM {schema.table('events')} GROUP BY source"))
    assert set(sources) == {"api", "otlp"}, sources
    services = {r[0] for r in store.rows(f"SELECT DISTINCT ServiceName FROM {schema.table('otel_traces')}")}
    assert {"oms", "payments", "tax", "middleware", "erp", "wms", "shipping", "crm"} <= services
    assert demo.sink.counters.rejected == 0
    # An order opens by its ID with its spans joined.
    order = next(
        r[0]
        for r in store.rows(
            f"SELECT correlation_id FROM {schema.table('events')} WHERE stage = 'invoiced' LIMIT 1"
        )
    )
    timeline = httpx.get(f"{running.url}/api/orders/{order}/timeline").json()
    assert len(timeline["stages"]) >= 7 and len(timeline["spans"]) >= 7


OUTAGE = DemoOptions(speed=0, orders_per_minute=5, backfill_s=6 * 3600, scenarios=(), seed=5)


@pytest.mark.parametrize("running", [OUTAGE], indirect=True)
def test_the_erp_outage_pages_once_for_the_erp_then_resolves(running: main.Running) -> None:
    demo = running.demo
    demo.backfill()
    for _ in range(10):
        demo.step()
    assert [
        (a["name"], a["labels"], a["annotations"]["summary"])
        for a in demo.services.alerts.list()
        if a["state"] != "resolved"
    ] == []  # healthy
    demo.trigger("erp-outage")
    for _ in range(40):
        demo.step()
    active = [a for a in demo.services.alerts.list() if a["state"] in ("firing", "pending", "suppressed")]
    [root] = [a for a in active if a["state"] == "firing"]
    assert (root["name"], root["labels"]["system"], root["root_cause"]) == ("SystemUnhealthy", "erp", True)
    symptoms = [a for a in active if a is not root]
    assert {a["state"] for a in symptoms} == {"suppressed"}
    assert {a["suppressed_by"] for a in symptoms} == {root["fingerprint"]}
    stuck = {a["labels"]["stage"] for a in symptoms if a["name"] == "StuckOrders"}
    assert {"erp_order_created", "fulfillment_released"} <= stuck
    assert {a["labels"]["system"] for a in symptoms if a["name"] == "SystemUnhealthy"} >= {"wms"}
    # The ERP is back after 45 minutes; an hour and a half on, the incident has resolved: what
    # remains are tickets for the error budget the outage spent (a 3x burn over 1d and 2h, 1x
    # over 3d and 6h), which outlast it by design.
    for _ in range(5 + 90):
        demo.step()
    still = [a for a in demo.services.alerts.list() if a["state"] != "resolved"]
    assert [(a["name"], a["labels"]["severity"]) for a in still if a["name"] != "SloErrorBudgetBurn"] == []
    assert {a["labels"]["severity"] for a in still} <= {"ticket"}
    [resolved] = [a for a in demo.services.alerts.list() if a["fingerprint"] == root["fingerprint"]]
    assert resolved["state"] == "resolved"


def test_ctrl_c_stops_the_demo_cleanly(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    port = free_port()
    command = [
        sys.executable,
        "-m",
        "flowsight.cli",
        "demo",
        "--data-dir",
        str(tmp_path),
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(
        [*command, "--backfill", "0", "--speed", "600", "--no-spans"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/api/demo", timeout=2)
                if status.status_code == 200 and status.json()["orders"] > 0:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            raise AssertionError("the demo did not start sending orders")
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "stopping" in output and "stopped:" in output
    assert "Traceback" not in output
