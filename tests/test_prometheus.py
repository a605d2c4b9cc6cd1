"""A real Prometheus server (Debian's prometheus) scrapes /metrics and reads an SLO gauge back."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.server import ServerProcess, free_port
from tests.test_flow_health import EVENTS


@pytest.fixture
def flowsight(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "data", env={"FLOWSIGHT_EVALUATION_INTERVAL_SECONDS": "1"})
    yield server.start()
    server.kill()


def test_prometheus_scrapes_slo_gauges(flowsight: ServerProcess, tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus package is needed (make system-deps installs it)"
    response = httpx.post(
        f"{flowsight.url}/v1/events",
        content=orjson.dumps(EVENTS),
        headers={"content-type": "application/json"},
    )
    assert response.json()["accepted"] == len(EVENTS)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: flowsight\n    static_configs: [{{targets: ['127.0.0.1:{flowsight.port}']}}]\n"
    )
    prometheus = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                result = httpx.get(
                    f"http://127.0.0.1:{port}/api/v1/query",
                    params={"query": 'flowsight_slo_objective{slo="order_completion"}'},
                ).json()
                if result["data"]["result"]:
                    break
            except (httpx.HTTPError, ValueError, KeyError):  # not ready yet
                pass
            assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()[-2000:]
            time.sleep(0.5)
        [series] = result["data"]["result"]
        assert series["metric"]["job"] == "flowsight"
        assert float(series["value"][1]) == 0.99
        stored = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/query", params={"query": "flowsight_ingest_events_stored_total"}
        ).json()["data"]["result"]
        assert float(stored[0]["value"][1]) == len(EVENTS)
    finally:
        prometheus.terminate()
        prometheus.wait(10)
