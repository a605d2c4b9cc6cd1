"""The pages in a real headless Chromium against a real service process.

Each page loads with no console error; the search box opens an order; the waterfall draws one
row per stage, gap and exception; a live refresh (the SSE feed) changes a figure after new
events, without a reload. Screenshots are saved (``UPDATE_SCREENSHOTS=1`` also writes the
README's overview picture).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from flowsight.timefmt import iso_utc
from tests.alerting import failure, order
from tests.browser import ConsoleLog, browser  # noqa: F401  (fixture)
from tests.server import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime.now(UTC).replace(microsecond=0)
CHANNELS = ["web", "app", "store_pickup", "marketplace"]


def post(server: ServerProcess, events: list[dict[str, Any]]) -> None:
    response = httpx.post(
        f"{server.url}/v1/events", content=orjson.dumps(events), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200 and response.json()["rejected"] == 0, response.text


def evaluate(server: ServerProcess, at: datetime) -> None:
    assert httpx.post(f"{server.url}/api/evaluate", params={"at": iso_utc(at)}, timeout=60).status_code == 200


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(
        tmp_path_factory.mktemp("pages"), env={"FLOWSIGHT_EVALUATION_INTERVAL_SECONDS": "0"}
    ).start()
    # 80 orders over the last 6 hours in four channels, stopped at every stage; some failures.
    events = [
        e
        for i in range(80)
        for e in order(
            f"SO-{1000 + i}",
            NOW - timedelta(hours=6) + timedelta(minutes=4 * i),
            1 + i % 7,
            channel=CHANNELS[i % 4],
        )
    ]
    events += [
        failure(f"SO-{1000 + i}", "erp_order_created", "erp", NOW - timedelta(minutes=100 + i))
        for i in range(3, 80, 9)
    ]
    post(process, events)
    for hours in range(6, -1, -1):  # history for the trends
        evaluate(process, NOW - timedelta(hours=hours))
    yield process
    process.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:  # noqa: F811
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    yield context.new_page()
    context.close()


def screenshot(page: Any, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    if name == "overview" and os.environ.get("UPDATE_SCREENSHOTS"):
        target = ROOT / "docs" / "images" / "overview.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target), full_page=False)


@pytest.mark.parametrize(
    ("path", "selector"),
    [
        ("/", "section.workflow svg"),
        ("/slos", "article.slo svg"),
        ("/alerts", "table.silences"),
        ("/orders/SO-1003", ".waterfall-panel svg"),
    ],
)
def test_each_page_loads_without_console_errors(
    server: ServerProcess, page: Any, tmp_path: Path, path: str, selector: str
) -> None:
    console = ConsoleLog(page)
    response = page.goto(server.url + path)
    assert response.status == 200
    page.wait_for_selector("#live-state.on")  # the live feed connected
    assert page.locator(selector).count() >= 1
    assert console.errors == []
    screenshot(page, tmp_path, "overview" if path == "/" else path.strip("/").replace("/", "-"))


def test_the_search_box_opens_an_order_and_its_waterfall(
    server: ServerProcess, page: Any, tmp_path: Path
) -> None:
    console = ConsoleLog(page)
    page.goto(server.url + "/slos")
    page.fill('input[name="id"]', "SO-1003")
    page.press('input[name="id"]', "Enter")
    page.wait_for_url("**/orders/SO-1003")
    assert page.locator("h1 .order-id").inner_text() == "SO-1003"
    # SO-1003 reached 4 stages, waits (stuck) for fulfillment_released: a gap row; one open
    # exception at erp_order_created.
    assert page.locator(".waterfall-panel g.fs-row").count() == 4 + 1 + 1
    assert page.locator(".waterfall-panel g.fs-kind-gap.fs-status-breach").count() == 1
    assert page.locator(".waterfall-panel g.fs-kind-exception").count() == 1
    assert console.errors == []
    screenshot(page, tmp_path, "order")


def test_live_refresh_changes_a_figure_after_new_events(server: ServerProcess, page: Any) -> None:
    console = ConsoleLog(page)
    page.goto(server.url + "/")
    figure = page.locator('[data-figure="order_to_cash.in_flight"] .value')
    before = figure.inner_text()
    updated_before = page.locator("#updated-at").inner_text()
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    page.wait_for_selector("#live-state.on")
    post(server, [e for i in range(25) for e in order(f"NEW-{i}", NOW - timedelta(minutes=3), 2)])
    evaluate(server, NOW + timedelta(seconds=1))
    page.wait_for_function(
        "([sel, old]) => document.querySelector(sel).innerText !== old",
        arg=['[data-figure="order_to_cash.in_flight"] .value', before],
        timeout=15000,
    )
    assert int(figure.inner_text()) == int(before) + 25
    assert page.locator("#updated-at").inner_text() != updated_before
    assert page.evaluate("window.__sameDocument") is True
    assert console.errors == []
