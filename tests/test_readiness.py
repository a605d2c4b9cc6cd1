"""/readyz: ready once the database answers, migrations are applied, the write-ahead log has room and the
compiled scanners are loaded, so traffic arrives when the service can take it at full speed."""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from flowsight import app as app_module
from flowsight.app import build_services, create_app
from tests.conftest import event
from tests.faults import switchable_store


def test_not_ready_until_the_scanners_are_compiled(services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def slow_compile(done: threading.Event) -> None:
        release.wait(30)
        done.set()

    monkeypatch.setattr(app_module, "_compile_scanners", slow_compile)
    with TestClient(create_app(services)) as client:
        waiting = client.get("/readyz")
        assert waiting.status_code == 503
        assert waiting.json() == {
            "status": "not ready",
            "database_reachable": True,
            "pending_migrations": [],
            "wal_bytes": 0,
            "wal_full": False,
            "loader_lag_seconds": 0.0,
            "loader_error": None,
            "scanners_compiled": False,
        }
        release.set()
        deadline = time.monotonic() + 10
        while (answer := client.get("/readyz")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert answer.status_code == 200
        assert answer.json()["status"] == "ready"
        assert answer.json()["scanners_compiled"] is True


def test_the_scanners_compile_while_the_service_starts(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    began = threading.Event()
    seen_during_start: list[bool] = []

    def compile_(done: threading.Event) -> None:
        began.set()
        done.set()

    start = services.start

    def starting() -> None:
        seen_during_start.append(began.wait(5))  # compiling already, before start-up is over
        start()

    monkeypatch.setattr(app_module, "_compile_scanners", compile_)
    monkeypatch.setattr(services, "start", starting)
    with TestClient(create_app(services)) as client:
        assert client.get("/readyz").status_code == 200
    assert seen_during_start == [True]


def test_a_failed_compilation_does_not_keep_the_service_unready(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(app_module.ndjson_scan, "compile_scanner", broken)
    done = threading.Event()

    app_module._compile_scanners(done)

    assert done.is_set()


def test_a_collector_stays_ready_while_the_database_is_away_and_its_log_has_room(
    settings: Any, engine: Any, clock: Any
) -> None:
    store, switch = switchable_store(engine)
    with TestClient(create_app(build_services(settings, store=store, clock=clock))) as client:
        wait_until_ready(client)
        switch.go_down()
        try:
            answer = client.get("/readyz")
            assert answer.status_code == 200  # the write-ahead log takes what it acknowledges
            assert answer.json()["database_reachable"] is False
            posted = client.post(
                "/v1/events", content=orjson.dumps([event(1)]), headers={"content-type": "application/json"}
            )
            assert posted.json()["accepted"] == 1
        finally:
            switch.come_back()


def test_an_evaluator_is_not_ready_without_the_database(settings: Any, engine: Any, clock: Any) -> None:
    store, switch = switchable_store(engine)
    evaluator = settings.model_copy(update={"role": "evaluator", "clickhouse_dsn": "http://clickhouse:8123"})
    with TestClient(create_app(build_services(evaluator, store=store, clock=clock))) as client:
        wait_until_ready(client)
        switch.go_down()
        try:
            assert client.get("/readyz").status_code == 503
        finally:
            switch.come_back()


def wait_until_ready(client: TestClient) -> None:
    deadline = time.monotonic() + 30
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, client.get("/readyz").json()
        time.sleep(0.05)
