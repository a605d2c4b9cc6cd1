"""The HTML pages and the live feed, through the app (real engine): figures, escaping, the
order waterfall, incidents grouped by root cause, and server-sent events."""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from fastapi.testclient import TestClient

from tests.alerting import evaluate, failure, order, post_events, post_spans
from tests.conftest import T0

EVIL = '<script>alert("x")</script>'


@pytest.fixture
def loaded(client: TestClient, clock: Any) -> TestClient:
    clock.now = T0
    # Eight orders: SO-0 reached 1 stage ... SO-7 all 7 (invoiced). Created 2 hours ago.
    post_events(client, [e for i in range(8) for e in order(f"SO-{i}", T0 - timedelta(hours=2), i % 7 + 1)])
    post_events(client, [failure("SO-3", "erp_order_created", "erp", T0 - timedelta(minutes=90))])
    post_events(client, order(EVIL, T0 - timedelta(hours=1), 2))
    evaluate(client, T0)
    return client


def test_overview_shows_the_flow_figures(loaded: TestClient) -> None:
    page = loaded.get("/")
    assert page.status_code == 200
    health = loaded.get("/api/flow/health", params={"at": "2026-11-26T10:00:00Z"}).json()
    in_flight = health["workflows"]["order_to_cash"]["in_flight"]
    assert in_flight == 8  # SO-0..SO-6 and the <script> order; SO-7 is complete
    kpi = re.search(
        r'data-figure="order_to_cash.in_flight">.*?<span class="value">([^<]*)</span>', page.text, re.S
    )
    assert kpi and kpi.group(1) == "8"
    assert 'data-figure="exceptions.open">1 open' in page.text
    assert page.text.count("<svg") >= 10  # charts drawn server-side
    assert "cdn" not in page.text.lower() and "https://" not in page.text


def test_every_page_escapes_an_order_id_that_is_markup(loaded: TestClient) -> None:
    for path in ("/", "/alerts", "/slos"):
        assert EVIL not in loaded.get(path).text
    order_page = loaded.get(f"/orders/{quote(EVIL, safe='')}")
    assert order_page.status_code == 200
    assert EVIL not in order_page.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in order_page.text
    # The search box redirects to the order, and an unknown ID is escaped on the 404 page too.
    found = loaded.get("/orders", params={"id": EVIL})
    assert found.status_code == 200 and EVIL not in found.text
    missing = loaded.get(f"/orders/{quote('<b>nope</b>', safe='')}")
    assert missing.status_code == 404
    assert "<b>nope</b>" not in missing.text and "&lt;b&gt;nope&lt;/b&gt;" in missing.text


def test_the_waterfall_has_a_row_per_stage_gap_exception_and_span(loaded: TestClient) -> None:
    # SO-3 reached 4 stages (to erp_order_created), waits for fulfillment_released (30m SLA,
    # stuck: a gap row), has one open exception at erp_order_created, and two spans.
    post_spans(loaded, "erp", T0 - timedelta(minutes=30), ok=1, errors=1, prefix="so3")
    spans = loaded.get("/api/orders/SO-3/timeline").json()["spans"]
    assert spans == []  # spans join an order by its ID attribute; these carry none
    page = loaded.get("/orders/SO-3")
    rows = re.search(r'data-rows="(\d+)"', page.text)
    assert rows and int(rows.group(1)) == 4 + 1 + 1
    assert "waiting for fulfillment_released" in page.text
    assert "exception at erp_order_created" in page.text


def test_alerts_page_groups_symptoms_under_their_root_cause(client: TestClient, clock: Any) -> None:
    clock.now = T0
    post_events(client, [e for i in range(6) for e in order(f"E{i}", T0 - timedelta(hours=1), 3)])
    for minute in (0, 1):
        post_spans(client, "erp", T0 + timedelta(minutes=minute), ok=5, errors=25, prefix=str(minute))
        evaluate(client, T0 + timedelta(minutes=minute))
    page = client.get("/alerts").text
    card = re.search(r'<article class="incident-card" id="(\w+)">(.*?)</article>', page, re.S)
    assert card, page
    body = card.group(2)
    assert "erp · SystemUnhealthy" in body
    assert "StuckOrders" in body and "stage=erp_order_created" in body
    root = next(a for a in client.get("/api/alerts").json() if a["root_cause"])
    assert card.group(1) == root["fingerprint"]
    assert body.count('<li class="alert') == len(root["impacted"])


def test_slos_page_draws_a_burn_down_per_slo(loaded: TestClient) -> None:
    evaluate(loaded, T0 + timedelta(hours=1))
    page = loaded.get("/slos").text
    slos = loaded.get("/api/slos").json()
    assert page.count('<article class="slo') == len(slos)
    assert page.count("error budget remaining</title>") == len(slos)


def test_fragments_are_the_pages_main_sections(loaded: TestClient) -> None:
    for fragment in ("/fragments/overview", "/fragments/slos", "/fragments/alerts", "/fragments/orders/SO-3"):
        response = loaded.get(fragment)
        assert response.status_code == 200, fragment
        assert "<html" not in response.text and "<main" not in response.text


def read_events(lines: Any, until: Any) -> list[tuple[str, dict[str, Any]]]:
    """Server-sent events from ``lines`` up to the first for which ``until(kind, data)`` holds."""
    events: list[tuple[str, dict[str, Any]]] = []
    kind = ""
    for line in lines:
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            events.append((kind, orjson.loads(line[6:])))
            if until(kind, events[-1][1]):
                return events
    return events


def test_feed_streams_evaluations_and_alert_changes(loaded: TestClient) -> None:
    with loaded.stream("GET", "/api/feed") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        # A new subscriber first gets the latest evaluation.
        [(kind, first)] = read_events(lines, lambda k, d: True)
        assert kind == "evaluation" and first["evaluated_at"] == "2026-11-26T10:00:00Z"
        assert first["workflows"]["order_to_cash"]["in_flight"] == 8
        # The ERP fails: the next evaluations are streamed, with the alert changes they make.
        post_spans(loaded, "erp", T0 + timedelta(minutes=5), ok=5, errors=25, prefix="feed")
        worker = threading.Thread(target=evaluate, args=(loaded, T0 + timedelta(minutes=5)))
        worker.start()
        events = read_events(
            lines, lambda k, d: k == "alerts" and d["evaluated_at"] == "2026-11-26T10:05:00Z"
        )
        worker.join()
    later = [(k, data) for k, data in events if data["evaluated_at"] == "2026-11-26T10:05:00Z"]
    assert [k for k, _ in later] == ["evaluation", "alerts"], events
    changed = later[1][1]["changed"]
    assert any(a["name"] == "SystemUnhealthy" and a["labels"]["system"] == "erp" for a in changed)
