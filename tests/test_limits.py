"""Each ingest limit is a setting, and holds on both the row path (small bodies) and the
columnar path (large NDJSON bodies): future timestamps, attributes per event, field lengths."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from flowsight.app import build_services, create_app
from tests.conftest import event


@pytest.fixture
def strict(settings: Any, engine: Any, clock: Any) -> Iterator[TestClient]:
    tight = settings.model_copy(
        update={
            "max_future_seconds": 600,
            "max_attributes_per_event": 2,
            "max_id_chars": 12,
            "max_channel_chars": 4,
            "max_attribute_key_chars": 6,
            "max_attribute_value_chars": 5,
        }
    )
    with TestClient(create_app(build_services(tight, store=engine, clock=clock))) as test_client:
        yield test_client


CASES = {
    "an event 20 minutes ahead of the clock": (
        {"occurred_at": "2026-11-26T10:20:00Z"},
        "occurred_at: 1200 s in the future; at most 600 s ahead is accepted",
    ),
    "three attributes when two are allowed": (
        {"attributes": {"a": "1", "b": "2", "c": "3"}},
        "attributes: at most 2 entries, got 3",
    ),
    "an event_id longer than allowed": (
        {"event_id": "e" * 13},
        "event_id: must be 1 to 12 characters, got 13",
    ),
    "a channel longer than allowed": (
        {"channel": "store"},
        "channel: must be a string of at most 4 characters",
    ),
    "an attribute key longer than allowed": ({"attributes": {"region1": "de"}}, "longer than 6 characters"),
    "an attribute value longer than allowed": (
        {"attributes": {"tier": "golden"}},
        "attributes.tier: longer than 5",
    ),
}


@pytest.mark.parametrize("ndjson", [False, True], ids=["row path", "columnar path"])
@pytest.mark.parametrize(("change", "message"), list(CASES.values()), ids=list(CASES))
def test_an_event_over_a_configured_limit_is_rejected_with_the_limit_named(
    strict: TestClient, change: dict[str, Any], message: str, ndjson: bool
) -> None:
    good = [
        event(f"g{i}", attributes={"a": "1"}, occurred_at="2026-11-26T10:09:00Z")
        for i in range(200 if ndjson else 2)
    ]
    bad = event("bad") | change
    events = [*good, bad]
    if ndjson:
        response = strict.post(
            "/v1/events",
            content=b"\n".join(orjson.dumps(e) for e in events),
            headers={"content-type": "application/x-ndjson"},
        )
    else:
        response = strict.post(
            "/v1/events", content=orjson.dumps(events), headers={"content-type": "application/json"}
        )
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (len(good), 1)
    [error] = body["errors"]
    assert error["index"] == len(good)
    assert message in error["error"]
