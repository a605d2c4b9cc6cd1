"""Dead letters: rejected input kept with reason, source and payload; replay after a config fix."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
from fastapi.testclient import TestClient

from flowsight.workflows import Stage, Workflow, WorkflowCatalog
from tests.conftest import event

CLICK_AND_COLLECT = Workflow(
    name="click_and_collect",
    stages=(Stage("order_created", "oms"), Stage("ready_for_pickup", "store", timedelta(hours=4))),
    terminal_stages=frozenset({"ready_for_pickup"}),
    completion_deadline=timedelta(days=2),
)


def post(client: TestClient, events: Any) -> Any:
    return client.post(
        "/v1/events", content=orjson.dumps(events), headers={"content-type": "application/json"}
    )


def test_rejected_event_is_kept_with_reason_source_and_original_payload(client: TestClient) -> None:
    bad = event(1, workflow="click_and_collect")
    post(client, [event(2), bad])
    page = client.get("/api/dead-letters").json()
    assert page["total"] == 1
    [letter] = page["items"]
    assert letter["source"] == "api"
    assert letter["event_id"] == "evt-1"
    assert "workflow: unknown workflow 'click_and_collect'" in letter["reason"]
    assert orjson.loads(letter["payload"]) == bad
    assert letter["replayed_at"] is None


def test_dead_letters_page_newest_first(client: TestClient, clock: Any) -> None:
    for i in range(5):
        post(client, [event(i, system="BAD")])
        clock.advance(timedelta(seconds=1))
    page = client.get("/api/dead-letters", params={"limit": 2, "offset": 1}).json()
    assert page["total"] == 5
    assert [item["event_id"] for item in page["items"]] == ["evt-3", "evt-2"]


def test_replay_after_a_config_fix_moves_what_now_passes_into_the_event_store(
    client: TestClient, services: Any
) -> None:
    post(client, [event(i, workflow="click_and_collect") for i in range(3)] + [event(9, system="BAD")])
    assert client.post("/api/dead-letters/replay").json() == {
        "examined": 4,
        "replayed": 0,
        "duplicates": 0,
        "still_invalid": 4,
    }
    services.catalog = WorkflowCatalog.of([*services.catalog, CLICK_AND_COLLECT])
    summary = client.post("/api/dead-letters/replay").json()
    assert summary == {"examined": 4, "replayed": 3, "duplicates": 0, "still_invalid": 1}
    timeline = client.get("/api/orders/SO-1/timeline").json()
    assert timeline["workflow"] == "click_and_collect"
    assert timeline["events"][0]["source"] == "replay"
    pending = client.get("/api/dead-letters", params={"pending": "true"}).json()
    assert [item["event_id"] for item in pending["items"]] == ["evt-9"]
    assert pending["items"][0]["outcome"] == "still_invalid"
    everything = client.get("/api/dead-letters").json()
    assert sorted(i["outcome"] for i in everything["items"]) == ["replayed"] * 3 + ["still_invalid"]
    # Replaying again examines only what is still pending and stores nothing twice.
    assert client.post("/api/dead-letters/replay").json()["examined"] == 1
    assert services.writer.wait_idle()
    assert services.store.rows(f"SELECT count() FROM {services.schema.table('events')}")[0][0] == 3


def test_replayed_event_already_stored_counts_as_duplicate(client: TestClient, services: Any) -> None:
    post(client, [event(1, workflow="click_and_collect")])
    services.catalog = WorkflowCatalog.of([*services.catalog, CLICK_AND_COLLECT])
    post(client, [event(1, workflow="click_and_collect")])  # the sender retried after the fix
    assert client.post("/api/dead-letters/replay").json() == {
        "examined": 1,
        "replayed": 0,
        "duplicates": 1,
        "still_invalid": 0,
    }
