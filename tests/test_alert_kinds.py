"""Each rule kind against the real engine: data of known truth, evaluated as of given times."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from flowsight.settings import Settings
from tests.alerting import alerts, by_name, evaluate, failure, order, post_events, post_spans
from tests.conftest import T0


def test_stuck_orders_pend_for_five_minutes_then_fire(client: TestClient) -> None:
    # Five orders reached inventory_reserved (erp) at about 09:02 and never erp_order_created,
    # whose SLA is 15m: stuck from about 09:17. Four orders stuck at payment: below the minimum.
    events = [e for i in range(5) for e in order(f"ERP-{i}", T0 - timedelta(hours=1), 3)]
    events += [e for i in range(4) for e in order(f"PAY-{i}", T0 - timedelta(hours=1), 1)]
    post_events(client, events)

    evaluate(client, T0)
    [stuck] = by_name(alerts(client), "StuckOrders")
    assert stuck["state"] == "pending"
    assert stuck["labels"] == {
        "alertname": "StuckOrders",
        "severity": "ticket",
        "system": "erp",
        "workflow": "order_to_cash",
        "stage": "erp_order_created",
    }
    assert stuck["value"] == 5
    evaluate(client, T0 + timedelta(minutes=4))
    assert by_name(alerts(client), "StuckOrders")[0]["state"] == "pending"
    evaluate(client, T0 + timedelta(minutes=5))
    [stuck] = by_name(alerts(client), "StuckOrders")
    assert (stuck["state"], stuck["fired_at"]) == ("firing", "2026-11-26T10:05:00Z")
    assert (
        "5 order_to_cash orders are stuck waiting for erp_order_created (erp)"
        in stuck["annotations"]["summary"]
    )

    # The ERP catches up: the alert resolves at the next evaluation.
    post_events(
        client,
        [{**order(f"ERP-{i}", T0, 4)[3], "occurred_at": "2026-11-26T10:06:00Z"} for i in range(5)],
    )
    evaluate(client, T0 + timedelta(minutes=7))
    [stuck] = by_name(alerts(client), "StuckOrders")
    assert (stuck["state"], stuck["resolved_at"]) == ("resolved", "2026-11-26T10:07:00Z")


def test_exception_aging_fires_when_the_oldest_open_exception_is_over_an_hour(client: TestClient) -> None:
    post_events(client, order("A", T0 - timedelta(hours=3), 4))
    post_events(client, [failure("A", "fulfillment_released", "wms", T0 - timedelta(minutes=61))])
    post_events(client, order("B", T0 - timedelta(hours=3), 2))
    post_events(client, [failure("B", "inventory_reserved", "erp", T0 - timedelta(minutes=59))])
    evaluate(client, T0)
    [aging] = by_name(alerts(client), "ExceptionAging")
    assert aging["state"] == "firing"
    assert aging["labels"]["stage"] == "fulfillment_released"
    assert aging["labels"]["system"] == "wms"
    assert aging["value"] == 61 * 60
    # Two minutes later B's exception is over the hour too.
    evaluate(client, T0 + timedelta(minutes=2))
    stages = sorted(a["labels"]["stage"] for a in by_name(alerts(client), "ExceptionAging"))
    assert stages == ["fulfillment_released", "inventory_reserved"]


def test_system_error_ratio_needs_twenty_spans_and_events_and_a_fifth_failing(client: TestClient) -> None:
    post_spans(client, "erp", T0, ok=15, errors=5, prefix="a")  # 20 spans, 25% errors
    post_spans(client, "wms", T0, ok=16, errors=3, prefix="a")  # 19 spans: too few
    post_spans(client, "shipping", T0, ok=17, errors=3, prefix="a")  # 15%: healthy
    evaluate(client, T0)
    [erp] = by_name(alerts(client), "SystemUnhealthy")
    assert (erp["labels"]["system"], erp["state"], erp["value"]) == ("erp", "pending", 0.25)
    # For 1m: still failing a minute later, it fires.
    post_spans(client, "erp", T0 + timedelta(minutes=1), ok=0, errors=5, prefix="b")
    evaluate(client, T0 + timedelta(minutes=1))
    [erp] = by_name(alerts(client), "SystemUnhealthy")
    assert erp["state"] == "firing"
    assert erp["value"] == pytest.approx(10 / 25)
    # Failed lifecycle events count with the spans.
    post_events(client, [failure(f"W{i}", "fulfillment_released", "wms", T0) for i in range(5)])
    evaluate(client, T0 + timedelta(minutes=1))
    wms = by_name(alerts(client), "SystemUnhealthy")
    assert sorted(a["labels"]["system"] for a in wms) == ["erp", "wms"]


def test_keep_firing_for_holds_a_flapping_system_health_alert(client: TestClient) -> None:
    post_spans(client, "erp", T0 - timedelta(minutes=1), ok=10, errors=20, prefix="a")
    evaluate(client, T0 - timedelta(minutes=1))
    evaluate(client, T0)
    assert by_name(alerts(client), "SystemUnhealthy")[0]["state"] == "firing"
    # The spans started 09:58:30: inside the 5m window until 10:03:30.
    evaluate(client, T0 + timedelta(minutes=3))
    # From then the condition is false; keep_firing_for (2m) holds the alert until 10:05.
    for held in (timedelta(minutes=4), timedelta(minutes=4, seconds=59)):
        evaluate(client, T0 + held)
        assert by_name(alerts(client), "SystemUnhealthy")[0]["state"] == "firing"
    evaluate(client, T0 + timedelta(minutes=5))
    [resolved] = by_name(alerts(client), "SystemUnhealthy")
    assert (resolved["state"], resolved["resolved_at"]) == ("resolved", "2026-11-26T10:05:00Z")


def test_a_system_that_normally_reports_and_falls_silent(client: TestClient) -> None:
    # crm sent 12 events between 05:00 and 08:40; then nothing. oms sent 3 only: not "normal".
    events = [
        {**order(f"C{i}", T0 - timedelta(hours=5) + timedelta(minutes=20 * i), 1)[0], "system": "crm"}
        for i in range(12)
    ] + [order(f"O{i}", T0 - timedelta(hours=2), 1)[0] for i in range(3)]
    post_events(client, events)
    evaluate(client, T0)  # 80 minutes since 08:40
    [silent] = by_name(alerts(client), "SystemSilent")
    assert (silent["labels"]["system"], silent["state"]) == ("crm", "firing")
    assert silent["value"] == 80 * 60
    post_events(client, [{**order("C-back", T0, 1)[0], "system": "crm"}])
    evaluate(client, T0 + timedelta(minutes=1))
    assert by_name(alerts(client), "SystemSilent")[0]["state"] == "resolved"


def test_burn_rate_pages_per_slo_with_its_system(client: TestClient) -> None:
    # 30 orders created 10:00 - 17m with no ERP order: each is late at 10:00 - 2m, inside both the
    # 56m and 4m40s windows of a 28d SLO: 100% bad is a 100x burn, past 14.4x.
    post_events(client, [e for i in range(30) for e in order(f"L{i}", T0 - timedelta(minutes=17), 1)])
    evaluate(client, T0)
    burns = [a for a in by_name(alerts(client), "SloErrorBudgetBurn") if a["labels"]["slo"] == "erp_sync_lag"]
    # Every row burns (100% bad in every window): one page and one ticket, each for the ERP.
    assert sorted((a["labels"]["severity"], a["labels"]["system"], a["state"]) for a in burns) == [
        ("page", "erp", "firing"),
        ("ticket", "erp", "firing"),
    ]
    assert [a["value"] for a in burns] == [pytest.approx(100.0)] * 2
    # Order completion (72h deadline) decided nothing yet: no burn alert for it.
    assert not [
        a for a in by_name(alerts(client), "SloErrorBudgetBurn") if a["labels"]["slo"] == "order_completion"
    ]


class TestRulesFromAFile:
    """A rules file replaces the defaults."""

    @pytest.fixture
    def settings(self, tmp_path: Path) -> Settings:
        import uuid

        rules = tmp_path / "rules.yaml"
        rules.write_text(
            "version: 1\n"
            "rules:\n"
            "  - name: TooManyInFlight\n"
            "    kind: threshold\n"
            "    figure: workflows.order_to_cash.in_flight\n"
            "    op: '>='\n"
            "    value: 3\n"
            "    system: oms\n"
            "    for: 2m\n"
            "    labels: {team: commerce}\n"
            "    annotations: {runbook_url: https://runbooks.example/in-flight}\n"
        )
        return Settings(
            data_dir=tmp_path,
            database=f"t_{uuid.uuid4().hex[:12]}",
            evaluation_interval_seconds=0,
            alert_rules_file=rules,
        )

    def test_threshold_on_a_flow_health_figure_from_a_rules_file(
        self, client: TestClient, services: Any
    ) -> None:
        assert [r.name for r in services.rules] == ["TooManyInFlight"]
        post_events(client, [e for i in range(3) for e in order(f"F{i}", T0 - timedelta(minutes=3), 2)])
        evaluate(client, T0)
        [alert] = alerts(client)
        assert alert["state"] == "pending"
        assert alert["labels"] == {
            "alertname": "TooManyInFlight",
            "severity": "ticket",
            "system": "oms",
            "team": "commerce",
            "figure": "workflows.order_to_cash.in_flight",
        }
        assert alert["annotations"]["runbook_url"] == "https://runbooks.example/in-flight"
        evaluate(client, T0 + timedelta(minutes=2))
        assert alerts(client)[0]["state"] == "firing"
