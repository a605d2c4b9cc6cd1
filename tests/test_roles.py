"""Roles: all-in-one (the default, and the only role on the embedded database), collector
(ingest and reads, no evaluation) and evaluator (evaluation and reads, no ingest)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from flowsight.app import build_services, create_app
from flowsight.settings import Settings
from tests.conftest import event

SERVER = "http://clickhouse.example:8123"  # never reached: the test process's engine is injected


def test_only_all_in_one_runs_on_the_embedded_database(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).role == "all"
    with pytest.raises(ValidationError) as exc:
        Settings(data_dir=tmp_path, role="collector")
    assert "role: 'collector' needs a ClickHouse server" in str(exc.value)
    assert Settings(data_dir=tmp_path, role="evaluator", clickhouse_dsn=SERVER).role == "evaluator"


def client_for(role: str, tmp_path: Path, engine: Any) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path,
        database=f"t_{uuid.uuid4().hex[:12]}",
        role=role,
        clickhouse_dsn=SERVER,
        evaluation_interval_seconds=0,
    )
    with TestClient(create_app(build_services(settings, store=engine))) as client:
        yield client


@pytest.fixture
def collector(tmp_path: Path, engine: Any) -> Iterator[TestClient]:
    yield from client_for("collector", tmp_path, engine)


@pytest.fixture
def evaluator(tmp_path: Path, engine: Any) -> Iterator[TestClient]:
    yield from client_for("evaluator", tmp_path, engine)


def test_a_collector_ingests_and_reads_but_does_not_evaluate(collector: TestClient) -> None:
    assert collector.post("/v1/events", json=[event(1)]).json()["accepted"] == 1
    assert collector.get("/api/orders/SO-1/timeline").status_code == 200
    assert collector.post("/api/evaluate").status_code in (404, 405)
    assert collector.get("/api/flow/health").status_code == 200


def test_an_evaluator_evaluates_and_reads_but_does_not_ingest(evaluator: TestClient) -> None:
    assert evaluator.post("/v1/events", json=[event(1)]).status_code in (404, 405)
    assert evaluator.post(
        "/v1/traces", content=b"{}", headers={"content-type": "application/json"}
    ).status_code in (
        404,
        405,
    )
    assert evaluator.post("/api/evaluate").status_code == 200
    assert evaluator.get("/api/alerts").status_code == 200
