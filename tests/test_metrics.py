"""GET /metrics: SLO and flow-health gauges of the last evaluation, and the collector's counters."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.test_flow_health import EVENTS, NOW


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_gauges_follow_the_last_evaluation(client: TestClient, clock: Any) -> None:
    clock.now = NOW
    client.post("/v1/events", content=orjson.dumps(EVENTS), headers={"content-type": "application/json"})
    before = samples(client.get("/metrics").text)
    assert not any(name.startswith("flowsight_slo_") for name, _ in before)
    client.post("/api/evaluate")
    after = samples(client.get("/metrics").text)
    assert after[("flowsight_slo_objective", (("slo", "order_completion"),))] == 0.99
    assert after[("flowsight_slo_events", (("group", ""), ("slo", "order_completion")))] == 3
    assert after[("flowsight_slo_good_events", (("group", ""), ("slo", "order_completion")))] == 1
    assert (
        "flowsight_slo_burn_rate",
        (("group", ""), ("slo", "order_completion"), ("window", "56m")),
    ) in after
    assert after[("flowsight_flow_in_flight", (("workflow", "order_to_cash"),))] == 5
    assert (
        after[
            (
                "flowsight_flow_stuck_orders",
                (("stage", "inventory_reserved"), ("system", "erp"), ("workflow", "order_to_cash")),
            )
        ]
        == 2
    )
    assert after[("flowsight_exceptions_open", (("age", "1-4h"),))] == 1
    assert after[("flowsight_backlog", (("system", "erp"),))] == 2
    assert after[("flowsight_ingest_events_stored_total", ())] == len(EVENTS)
    assert after[("flowsight_evaluation_duration_seconds", ())] > 0


def test_collector_counters_commit_histogram_and_loader(client: TestClient, services: Any) -> None:
    good = [{**e, "event_id": f"m-{i}"} for i, e in enumerate(EVENTS[:3])]
    bad = {**EVENTS[0], "event_id": "m-bad", "system": "BAD"}
    client.post(
        "/v1/events",
        content=orjson.dumps([*good, bad, good[0]]),
        headers={"content-type": "application/json"},
    )
    found = samples(client.get("/metrics").text)
    assert found[("flowsight_ingest_events_logged_total", ())] == 3
    assert found[("flowsight_ingest_duplicates_total", ())] == 1
    assert found[("flowsight_ingest_rejected_total", ())] == 1
    assert found[("flowsight_wal_commit_duration_seconds_count", ())] == 1
    assert found[("flowsight_wal_commit_duration_seconds_bucket", (("le", "+Inf"),))] == 1
    assert found[("flowsight_wal_disk_bytes", ())] > 0  # the active segment stays until the next record
    assert found[("flowsight_dedup_ids", ())] == 3
    assert services.writer.wait_idle()
    loaded = samples(client.get("/metrics").text)
    assert loaded[("flowsight_ingest_events_stored_total", ())] == 3
    assert loaded[("flowsight_loader_dead_letters_stored_total", ())] == 1
    assert loaded[("flowsight_loader_lag_seconds", ())] == 0
    assert loaded[("flowsight_loader_waiting_rows", ())] == 0
