"""The loader: rows ClickHouse refuses for their content become dead letters, whole and
replayable, while the rest of their insert loads; a read after an acknowledgement sees the
acknowledged events however far behind the loader is, or is told why not."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from fastapi.testclient import TestClient

from flowsight.app import Services, build_services, create_app
from flowsight.store import Store, StoreRejected, StoreUnavailable
from tests.conftest import event
from tests.test_otlp_protocol import ORDER_SPAN, json_request, span


class Refusing:
    """A client whose inserts into chosen tables fail with a given error while ``armed``."""

    def __init__(self, client: Any):
        self._client = client
        self.tables: set[str] = set()
        self.error = "Code: 53. DB::Exception: Type mismatch in IN or VALUES section. (TYPE_MISMATCH)"
        self.held = threading.Event()
        self.held.set()

    def insert_arrow(self, table: str, data: Any, **kwargs: Any) -> Any:
        self.held.wait(30)
        if table.rsplit(".", 1)[-1] in self.tables:
            raise DatabaseError(self.error)
        return self._client.insert_arrow(table, data, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def close(self) -> None:
        """The shared engine outlives a test's store."""


@pytest.fixture
def refusing(settings: Any, engine: Store, clock: Any) -> Iterator[tuple[TestClient, Services, Refusing]]:
    client = Refusing(engine.client)
    services = build_services(settings, store=Store(client, engine.database, embedded=True), clock=clock)  # type: ignore[arg-type]
    with TestClient(create_app(services)) as test_client:
        yield test_client, services, client


def post(client: TestClient, events: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post(
        "/v1/events", content=orjson.dumps(events), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        pytest.param("Code: 53. DB::Exception: Type mismatch. (TYPE_MISMATCH)", StoreRejected, id="a type mismatch is the rows' fault"),
        pytest.param("Code: 16. DB::Exception: No such column x. (NO_SUCH_COLUMN_IN_TABLE)", StoreRejected, id="a missing column is the rows' fault"),
        pytest.param("Code: 243. DB::Exception: Cannot reserve 1.00 MiB, not enough space. (NOT_ENOUGH_SPACE)", StoreUnavailable, id="a full disk is worth retrying"),
        pytest.param("Code: 252. DB::Exception: Too many parts (300). (TOO_MANY_PARTS)", StoreUnavailable, id="too many parts is worth retrying"),
        pytest.param("Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED)", StoreUnavailable, id="a memory limit is worth retrying"),
        pytest.param("no code at all", StoreUnavailable, id="an error without a code is worth retrying"),
    ],
)  # fmt: skip
def test_insert_errors_are_told_apart(engine: Store, error: str, raised: type[Exception]) -> None:
    client = Refusing(engine.client)
    client.tables = {"t"}
    client.error = error
    with pytest.raises(raised):
        Store(client, "default", embedded=True).insert_arrow("db.t", _one_row())  # type: ignore[arg-type]


def _one_row() -> Any:
    import pyarrow as pa

    return pa.table({"a": [1]})


def test_refused_events_become_replayable_dead_letters_and_the_rest_load(refusing: Any) -> None:
    client, services, refuser = refusing
    refuser.held.clear()  # both requests wait in the log, so the loader takes them together
    assert post(client, [event(1), event(2)])["accepted"] == 2
    refuser.tables = {"events"}
    refuser.held.set()
    assert services.writer.wait_idle()
    refuser.tables = set()
    assert post(client, [event(3)])["accepted"] == 1
    letters = client.get("/api/dead-letters").json()
    assert letters["total"] == 2
    assert {i["event_id"] for i in letters["items"]} == {"evt-1", "evt-2"}
    assert all("TYPE_MISMATCH" in i["reason"] and i["source"] == "api" for i in letters["items"])
    assert orjson.loads(letters["items"][0]["payload"])["workflow"] == "order_to_cash"
    assert services.loader.stats.rows_refused == 2
    assert client.get("/api/orders/SO-1/timeline").status_code == 404
    replay = client.post("/api/dead-letters/replay").json()
    assert (replay["replayed"], replay["still_invalid"]) == (2, 0)
    timeline = client.get("/api/orders/SO-1/timeline").json()
    assert [e["event_id"] for e in timeline["events"]] == ["evt-1"]
    assert services.writer.wait_idle()
    [(stored,)] = services.store.rows(f"SELECT count() FROM {services.schema.table('events')}")
    assert stored == 3


def test_a_refused_record_does_not_hold_back_the_records_loaded_with_it(refusing: Any) -> None:
    client, services, refuser = refusing
    refuser.held.clear()
    assert post(client, [event(1)])["accepted"] == 1
    refuser.tables = {"otel_traces"}
    assert post_spans(client, "SO-S1") == 200
    assert post(client, [event(2)])["accepted"] == 1
    refuser.held.set()
    assert services.writer.wait_idle()
    refuser.tables = set()
    assert [i["source"] for i in client.get("/api/dead-letters").json()["items"]] == ["otlp_traces"]
    assert client.get("/api/orders/SO-2/timeline").status_code == 200  # loaded after the refused record
    assert client.post("/api/dead-letters/replay").json()["replayed"] == 1
    spans = client.get("/api/orders/SO-S1/timeline").json()["spans"]
    assert [s["name"] for s in spans] == ["refused once"]


def post_spans(client: TestClient, order: str) -> int:
    body = json_request([span(ORDER_SPAN, "refused once", attrs={"order.id": order})])
    return client.post("/v1/traces", content=body, headers={"content-type": "application/json"}).status_code


def test_a_read_after_an_acknowledgement_waits_for_the_loader(refusing: Any) -> None:
    client, services, refuser = refusing
    refuser.held.clear()  # the loader's insert hangs
    assert post(client, [event(1, correlation_id="SO-RAW")])["accepted"] == 1
    assert services.loader.waiting_rows == 1
    threading.Timer(0.5, refuser.held.set).start()
    timeline = client.get("/api/orders/SO-RAW/timeline")
    assert timeline.status_code == 200
    assert [e["event_id"] for e in timeline.json()["events"]] == ["evt-1"]


def test_a_timeline_of_another_order_does_not_wait(refusing: Any) -> None:
    client, services, refuser = refusing
    assert post(client, [event(1, correlation_id="SO-LOADED")])["accepted"] == 1
    assert services.writer.wait_idle()
    refuser.held.clear()
    try:
        assert post(client, [event(2, correlation_id="SO-WAITING")])["accepted"] == 1
        assert client.get("/api/orders/SO-LOADED/timeline").status_code == 200
        assert services.loader.waiting_rows == 1  # answered while the other order still waits
    finally:
        refuser.held.set()


def test_a_read_that_cannot_see_what_was_acknowledged_answers_503(
    settings: Any, engine: Store, clock: Any
) -> None:
    client = Refusing(engine.client)
    quick = settings.model_copy(update={"read_after_write_timeout_seconds": 0.3})
    services = build_services(quick, store=Store(client, engine.database, embedded=True), clock=clock)  # type: ignore[arg-type]
    with TestClient(create_app(services)) as test_client:
        client.tables = {"events"}
        client.error = (
            "Code: 243. DB::Exception: Cannot reserve 1.00 MiB, not enough space. (NOT_ENOUGH_SPACE)"
        )
        assert post(test_client, [event(1)])["accepted"] == 1
        for path in ("/api/orders/SO-1/timeline", "/api/flow/health", "/api/orders?stuck=true"):
            answer = test_client.get(path)
            assert answer.status_code == 503, path
            assert answer.headers["retry-after"] == str(quick.retry_after_seconds)
            assert "NOT_ENOUGH_SPACE" in answer.json()["error"] and "behind" in answer.json()["error"]
        assert test_client.post("/api/evaluate").status_code == 503
        assert test_client.get("/readyz").json()["loader_error"].startswith("StoreUnavailable")
        client.tables = set()
        assert services.writer.wait_idle()
        assert test_client.get("/api/orders/SO-1/timeline").status_code == 200
