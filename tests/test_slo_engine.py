"""SLO evaluation with data of known truth: good and total per window, budget, burn rates.

The orders are those of test_flow_health (see the table there) plus SYNCED, whose ERP order
follows its creation within 10 minutes. Evaluated at 2026-11-26 12:00 UTC.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from flowsight.collector.order_figures import SliCounts
from flowsight.slo.engine import SloEngine
from flowsight.slo.model import CALENDAR_MONTH, CompletionSli, Slo, SpanErrorRatioSli, StageLatencySli
from tests.test_flow_health import EVENTS, NOW, ev

SYNCED = [
    ev("SYNCED", "order_created", "2026-11-26T11:00:00Z"),
    ev("SYNCED", "erp_order_created", "2026-11-26T11:10:00Z"),
]


@pytest.fixture
def slo_engine(client: TestClient, services: Any, clock: Any) -> SloEngine:
    clock.now = NOW
    for batch in (EVENTS[::-1], SYNCED, EVENTS[:5]):  # out of order, with resends
        response = client.post(
            "/v1/events", content=orjson.dumps(batch), headers={"content-type": "application/json"}
        )
        assert response.json()["rejected"] == 0
    assert services.writer.wait_idle()  # the engine reads ClickHouse directly
    return SloEngine(SliCounts(services.store, services.schema))


def slo(sli: Any, **kw: Any) -> Slo:
    return Slo(
        name=kw.pop("name", "s"),
        objective=kw.pop("objective", 0.99),
        window=kw.pop("window", timedelta(days=28)),
        sli=sli,
        min_events=kw.pop("min_events", 1),
        **kw,
    )


def test_completion_counts_orders_once_decided(slo_engine: SloEngine, services: Any) -> None:
    assert services.writer.wait_idle()
    result = slo_engine.evaluate_one(slo(CompletionSli("order_to_cash")), services.catalog, NOW)
    # Decided: DONE (on time), LATE (at its deadline, 23rd 10:00), OVERDUE (at its deadline,
    # 25th 09:00). The rest are younger than 72 h and not complete: neither good nor bad.
    assert (result["good"], result["total"]) == (1, 3)
    assert result["sli_value"] == pytest.approx(1 / 3)
    assert result["error_budget_remaining"] == pytest.approx(1 - (2 / 3) / 0.01)
    assert result["status"] == "exhausted"
    # Nothing was decided in the last 56 minutes (the 1 h page window scaled to 28 days).
    assert result["burn_rates"]["56m"] == 0.0
    assert result["burn_rates"]["28d"] == pytest.approx((2 / 3) / 0.01)


def test_stage_latency_counts_good_and_late_syncs_per_window(slo_engine: SloEngine, services: Any) -> None:
    sync = StageLatencySli("order_to_cash", "order_created", "erp_order_created", timedelta(minutes=15))
    assert services.writer.wait_idle()
    result = slo_engine.evaluate_one(slo(sync), services.catalog, NOW)
    # Good: SYNCED (10 min). Bad: DONE, LATE, OVERDUE, STUCK_ERP, FAILING (never synced) and
    # RECOVERED (36 min). YOUNG (created 11:58) is not decided until 12:13.
    assert (result["good"], result["total"]) == (1, 7)
    # The last 5h36m (6 h scaled): STUCK_ERP decided 10:05, FAILING 09:14, RECOVERED 08:14
    # (bad) and SYNCED 11:10 (good).
    assert result["burn_rates"]["5h36m"] == pytest.approx((3 / 4) / 0.01)
    # The last 56 minutes: only SYNCED, good.
    assert result["burn_rates"]["56m"] == 0.0


def test_group_by_channel_gives_one_series_per_channel(slo_engine: SloEngine, services: Any) -> None:
    assert services.writer.wait_idle()
    result = slo_engine.evaluate_one(
        slo(CompletionSli("order_to_cash"), group_by=("channel",)), services.catalog, NOW
    )
    assert [(s["group"], s["good"], s["total"]) for s in result["series"]] == [({"channel": "web"}, 1, 3)]


def test_low_traffic_cannot_page(slo_engine: SloEngine, services: Any) -> None:
    assert services.writer.wait_idle()
    result = slo_engine.evaluate_one(
        slo(CompletionSli("order_to_cash"), min_events=20), services.catalog, NOW
    )
    assert result["status"] == "insufficient_data"


def test_as_of_an_earlier_time_uses_only_what_had_occurred(slo_engine: SloEngine, services: Any) -> None:
    sync = StageLatencySli("order_to_cash", "order_created", "erp_order_created", timedelta(minutes=15))
    earlier = NOW - timedelta(hours=3)  # 09:00: STUCK_ERP did not exist, FAILING not yet decided
    assert services.writer.wait_idle()
    result = slo_engine.evaluate_one(slo(sync), services.catalog, earlier)
    assert (result["good"], result["total"]) == (0, 4)  # DONE, LATE, OVERDUE, RECOVERED: all bad


def test_calendar_month_window_starts_on_the_first(slo_engine: SloEngine, services: Any) -> None:
    assert services.writer.wait_idle()
    result = slo_engine.evaluate_one(
        slo(CompletionSli("order_to_cash"), window=CALENDAR_MONTH), services.catalog, NOW
    )
    assert result["window"] == "calendar_month"
    assert (result["good"], result["total"]) == (1, 3)


def test_span_error_ratio_per_service(client: TestClient, slo_engine: SloEngine, services: Any) -> None:
    from tests.test_otlp_protocol import json_request, span

    spans = [span(f"{i:016x}", f"op{i}", **({"status": {"code": 1}} if i % 4 else {})) for i in range(1, 9)]
    for item in spans:
        item["startTimeUnixNano"] = str(int(NOW.timestamp() - 600) * 10**9)
        item["endTimeUnixNano"] = str(int(NOW.timestamp() - 599) * 10**9)
    assert (
        client.post(
            "/v1/traces", content=json_request(spans), headers={"content-type": "application/json"}
        ).status_code
        == 200
    )
    assert services.writer.wait_idle()
    result = slo_engine.evaluate_one(slo(SpanErrorRatioSli(), group_by=("system",)), services.catalog, NOW)
    # Spans 4 and 8 keep the error status of the template; the other six are ok.
    assert [(s["group"], s["good"], s["total"]) for s in result["series"]] == [({"system": "erp"}, 6, 8)]
    assert result["burn_rates"]["56m"] == pytest.approx((2 / 8) / 0.01)


def test_api_lists_every_default_slo(slo_engine: SloEngine, client: TestClient) -> None:
    body = client.get("/api/slos").json()
    names = {s["name"]: s for s in body}
    assert {"order_completion", "erp_sync_lag"} <= set(names)
    assert names["erp_sync_lag"]["total"] == 7
    assert {s["status"] for s in body} <= {"ok", "burning", "exhausted", "insufficient_data", "not_evaluated"}
    one = client.get("/api/slos/erp_sync_lag").json()
    assert one["name"] == "erp_sync_lag"
    assert client.get("/api/slos/nope").status_code == 404


def test_exception_age_counts_exceptions_once_decided(slo_engine: SloEngine, services: Any) -> None:
    from flowsight.slo.model import ExceptionAgeSli

    assert services.writer.wait_idle()
    result = slo_engine.evaluate_one(slo(ExceptionAgeSli(timedelta(hours=4))), services.catalog, NOW)
    # FAILING: opened 09:05 (the 09:30 failure joins it), open, 4 h not yet passed: undecided.
    # RECOVERED: opened 08:00, resolved 08:30 (good); reopened 11:30: undecided.
    assert (result["good"], result["total"]) == (1, 1)
    assert services.writer.wait_idle()
    later = slo_engine.evaluate_one(
        slo(ExceptionAgeSli(timedelta(hours=4))), services.catalog, NOW + timedelta(hours=4)
    )
    # By 16:00 FAILING's exception is older than 4 h (bad, decided 13:05); RECOVERED's second is
    # not (opened 11:30, decided at 15:30: bad too).
    assert (later["good"], later["total"]) == (1, 3)


def test_freshness_counts_the_minutes_a_system_was_fresh(
    slo_engine: SloEngine, services: Any, client: TestClient
) -> None:
    from flowsight.slo.model import FreshnessSli

    # The crm system reports at 10:00 and 11:00 only; with a 10-minute threshold it is fresh
    # 10:00-10:10 and 11:00-11:10: 20 of the 120 minutes since it first reported, by 12:00.
    events = [
        {**ev(f"CRM-{h}", "order_created", f"2026-11-26T{h}:00:00Z"), "system": "crm"} for h in (10, 11)
    ]
    client.post("/v1/events", content=orjson.dumps(events), headers={"content-type": "application/json"})
    fresh = FreshnessSli(timedelta(minutes=10), systems=("crm",))
    assert services.writer.wait_idle()
    result = slo_engine.evaluate_one(slo(fresh, group_by=("system",)), services.catalog, NOW)
    assert [(s["group"], s["good"], s["total"]) for s in result["series"]] == [({"system": "crm"}, 20, 120)]
    # Over the last 56 minutes (from 11:04): fresh 11:04-11:10, 6 of 56 minutes.
    assert result["burn_rates"]["56m"] == pytest.approx((1 - 6 / 56) / 0.01)


def test_slos_sharing_a_pass_get_the_same_counts_as_alone(slo_engine: SloEngine, services: Any) -> None:
    from flowsight.slo.model import SloCatalog

    sync = StageLatencySli("order_to_cash", "order_created", "erp_order_created", timedelta(minutes=15))
    together = SloCatalog.of([slo(CompletionSli("order_to_cash"), name="a"), slo(sync, name="b")])
    assert services.writer.wait_idle()
    batched = slo_engine.evaluate(together, services.catalog, NOW)
    assert services.writer.wait_idle()
    alone = [slo_engine.evaluate_one(s, services.catalog, NOW) for s in together]
    assert [(r["good"], r["total"], r["burn_rates"]) for r in batched] == [
        (r["good"], r["total"], r["burn_rates"]) for r in alone
    ]
    assert [(r["good"], r["total"]) for r in batched] == [(1, 3), (1, 7)]


def post(client: TestClient, events: list[dict[str, Any]]) -> None:
    response = client.post(
        "/v1/events", content=orjson.dumps(events), headers={"content-type": "application/json"}
    )
    assert response.json()["rejected"] == 0, response.json()


def tagged(order: str, at: str, n: int, **attributes: str) -> dict[str, Any]:
    """A resend of the order's creation under a new ID (its stage time unchanged), carrying attributes."""
    return {**ev(order, "order_created", at, n=n), "attributes": attributes}


def test_group_by_an_event_attribute_takes_the_orders_earliest_value(
    slo_engine: SloEngine, services: Any, client: TestClient
) -> None:
    post(
        client,
        [
            tagged("DONE", "2026-11-23T10:00:00Z", 7, region="eu"),
            tagged("LATE", "2026-11-20T10:00:00Z", 7, region="eu"),
            # A later value does not move LATE: its earliest event carrying the key says eu.
            {**ev("LATE", "invoiced", "2026-11-24T10:00:00Z", n=7), "attributes": {"region": "us"}},
            tagged("OVERDUE", "2026-11-22T09:00:00Z", 7, region="us"),
        ],
    )
    assert services.writer.wait_idle()
    by_region = slo_engine.evaluate_one(
        slo(CompletionSli("order_to_cash"), group_by=("attributes.region",)), services.catalog, NOW
    )
    # DONE on time and LATE late (eu), OVERDUE (us); no other order is decided.
    assert [(s["group"], s["good"], s["total"]) for s in by_region["series"]] == [
        ({"attributes.region": "eu"}, 1, 2),
        ({"attributes.region": "us"}, 0, 1),
    ]
    assert (by_region["good"], by_region["total"]) == (1, 3)

    sync = StageLatencySli("order_to_cash", "order_created", "erp_order_created", timedelta(minutes=15))
    assert services.writer.wait_idle()
    two_keys = slo_engine.evaluate_one(
        slo(sync, group_by=("channel", "attributes.region")), services.catalog, NOW
    )
    # Orders without the attribute form the group with an empty value: SYNCED (good), STUCK_ERP,
    # FAILING and RECOVERED (bad).
    assert [(s["group"], s["good"], s["total"]) for s in two_keys["series"]] == [
        ({"channel": "web", "attributes.region": ""}, 1, 4),
        ({"channel": "web", "attributes.region": "eu"}, 0, 2),
        ({"channel": "web", "attributes.region": "us"}, 0, 1),
    ]


def test_exception_age_by_channel_system_and_attribute(
    slo_engine: SloEngine, services: Any, client: TestClient
) -> None:
    from flowsight.slo.model import ExceptionAgeSli

    # X: an app order whose inventory step erp failed at 09:00 (error=timeout), fixed at 10:00.
    post(
        client,
        [
            {**ev("X", "order_created", "2026-11-26T08:50:00Z"), "channel": "app"},
            {
                **ev("X", "inventory_reserved", "2026-11-26T09:00:00Z", "failed", 1),
                "system": "erp",
                "channel": "app",
                "attributes": {"error": "timeout"},
            },
            {**ev("X", "inventory_reserved", "2026-11-26T10:00:00Z"), "system": "erp", "channel": "app"},
        ],
    )
    at = NOW + timedelta(hours=4)  # FAILING's and RECOVERED's second exception are late by then

    def series(*group_by: str) -> list[tuple[dict[str, str], int, int]]:
        assert services.writer.wait_idle()
        result = slo_engine.evaluate_one(
            slo(ExceptionAgeSli(timedelta(hours=4)), group_by=group_by), services.catalog, at
        )
        return [(s["group"], s["good"], s["total"]) for s in result["series"]]

    assert series("system") == [({"system": "erp"}, 1, 1), ({"system": "oms"}, 1, 3)]
    assert series("channel") == [({"channel": "app"}, 1, 1), ({"channel": "web"}, 1, 3)]
    assert series("attributes.error") == [
        ({"attributes.error": ""}, 1, 3),
        ({"attributes.error": "timeout"}, 1, 1),
    ]


def test_span_error_ratio_by_span_attribute(client: TestClient, slo_engine: SloEngine, services: Any) -> None:
    from tests.test_otlp_protocol import json_request, span

    routes = ["/orders", "/orders", "/orders", "/refunds"]
    spans = [
        span(f"{i + 1:016x}", "op", attrs={"http.route": route}, **({"status": {"code": 1}} if i else {}))
        for i, route in enumerate(routes)
    ]
    for item in spans:
        item["startTimeUnixNano"] = str(int(NOW.timestamp() - 600) * 10**9)
        item["endTimeUnixNano"] = str(int(NOW.timestamp() - 599) * 10**9)
    post_spans = client.post(
        "/v1/traces", content=json_request(spans), headers={"content-type": "application/json"}
    )
    assert post_spans.status_code == 200
    assert services.writer.wait_idle()
    result = slo_engine.evaluate_one(
        slo(SpanErrorRatioSli(), group_by=("system", "attributes.http.route")), services.catalog, NOW
    )
    # The first /orders span keeps the template's error status.
    assert [(s["group"], s["good"], s["total"]) for s in result["series"]] == [
        ({"system": "erp", "attributes.http.route": "/orders"}, 2, 3),
        ({"system": "erp", "attributes.http.route": "/refunds"}, 1, 1),
    ]


def test_evaluation_sharing_the_flow_pass_gives_the_engines_own_counts(
    slo_engine: SloEngine, services: Any
) -> None:
    from flowsight.slo.loading import DEFAULT_SLOS

    shared = services.evaluator.evaluate(NOW)["slos"]
    assert services.writer.wait_idle()
    alone = slo_engine.evaluate(DEFAULT_SLOS, services.catalog, NOW)
    assert [(r["name"], r["good"], r["total"], r["burn_rates"]) for r in shared] == [
        (r["name"], r["good"], r["total"], r["burn_rates"]) for r in alone
    ]
    assert services.evaluator.engine.order_batches(DEFAULT_SLOS, services.catalog, NOW)[
        "order_to_cash"
    ].names == (
        "order_completion",
        "erp_sync_lag",
        "erp_posting_delay",
    )
    assert next(r for r in shared if r["name"] == "erp_sync_lag")["total"] == 7
    assert [
        name for name, _ in services.evaluator.engine.exception_ages(DEFAULT_SLOS, services.catalog, NOW)
    ] == ["exception_aging"]
    later = NOW + timedelta(hours=4)
    shared_later = services.evaluator.evaluate(later)["slos"]
    assert services.writer.wait_idle()
    alone_later = slo_engine.evaluate(DEFAULT_SLOS, services.catalog, later)
    assert [(r["good"], r["total"]) for r in shared_later] == [(r["good"], r["total"]) for r in alone_later]
    assert next(r for r in shared_later if r["name"] == "exception_aging")["total"] == 3
