"""Evaluations are stored as snapshots (budget history); POST /api/evaluate and the schedule."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from flowsight.app import build_services, create_app
from tests.test_flow_health import EVENTS, NOW


def load(client: TestClient) -> None:
    response = client.post(
        "/v1/events", content=orjson.dumps(EVENTS), headers={"content-type": "application/json"}
    )
    assert response.json()["accepted"] == len(EVENTS)


def test_evaluate_as_of_times_builds_a_burn_down_history(client: TestClient, clock: Any) -> None:
    clock.now = NOW
    load(client)
    times = ["2026-11-24T12:00:00Z", "2026-11-25T12:00:00Z", "2026-11-26T12:00:00Z"]
    for at in times:
        body = client.post("/api/evaluate", params={"at": at}).json()
        assert body["evaluated_at"] == at
    history = client.get("/api/slos/order_completion").json()["history"]
    assert [h["evaluated_at"] for h in history] == times
    # 24th: DONE and LATE decided (1 of 2 good); 25th: OVERDUE's deadline passed too.
    assert [(h["good"], h["total"]) for h in history] == [(1, 2), (1, 3), (1, 3)]
    assert history[0]["error_budget_remaining"] == pytest.approx(1 - 0.5 / 0.01)


def test_re_evaluating_the_same_instant_replaces_its_snapshot(client: TestClient, clock: Any) -> None:
    clock.now = NOW
    load(client)
    for _ in range(2):
        client.post("/api/evaluate", params={"at": "2026-11-26T12:00:00Z"})
    assert len(client.get("/api/slos/order_completion").json()["history"]) == 1


def test_the_scheduler_evaluates_periodically(settings: Any, engine: Any, clock: Any) -> None:
    services = build_services(
        settings.model_copy(update={"evaluation_interval_seconds": 0.2}), store=engine, clock=clock
    )
    with TestClient(create_app(services)):
        deadline = time.monotonic() + 10
        while services.evaluator.runs < 2:
            assert time.monotonic() < deadline, "the scheduler did not run"
            time.sleep(0.05)
    assert services.evaluator.last_seconds is not None
