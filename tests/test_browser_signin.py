"""Signing in on a shared screen, in a real headless Chromium against a real service process
that requires tokens: the page sends the browser to the sign-in form, a read token opens the
dashboards (the live feed included) through an HttpOnly cookie, and admin actions stay shut."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.alerting import order
from tests.browser import ConsoleLog, browser  # noqa: F401  (fixture)
from tests.server import ServerProcess

READER = "wallboard-token-for-the-shared-screen"
INGEST = "oms-ingest-token-0123456789abcdef"
TOKENS = f"""version: 1
tokens:
  - name: wallboard
    token: {READER}
    scopes: [read]
  - name: oms
    token: {INGEST}
    scopes: [ingest]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("signin")
    (data / "tokens.yaml").write_text(TOKENS)
    process = ServerProcess(
        data,
        env={
            "FLOWSIGHT_TOKENS_FILE": str(data / "tokens.yaml"),
            "FLOWSIGHT_EVALUATION_INTERVAL_SECONDS": "0",
        },
    ).start()
    now = datetime.now(UTC).replace(microsecond=0)
    events = [e for i in range(5) for e in order(f"SO-{i}", now - timedelta(minutes=30 - i), 3)]
    response = httpx.post(
        f"{process.url}/v1/events",
        content=orjson.dumps(events),
        headers={"content-type": "application/json", "authorization": f"Bearer {INGEST}"},
    )
    assert response.status_code == 200 and response.json()["accepted"] == len(events), response.text
    yield process
    process.stop()


def test_a_wallboard_signs_in_with_a_read_token_and_sees_the_dashboards(
    server: ServerProcess,
    browser: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    console = ConsoleLog(page)
    page.goto(f"{server.url}/orders/SO-1")
    assert page.url == f"{server.url}/login?next=%2Forders%2FSO-1"
    page.fill("#token", READER)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/orders/SO-1")
    assert "SO-1" in page.content()
    cookies = context.cookies()
    [cookie] = [c for c in cookies if c["name"] == "flowsight_token"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # scripts cannot read the token
    with page.expect_response(lambda r: "/api/feed" in r.url) as feed:
        page.goto(f"{server.url}/")
    assert feed.value.status == 200  # the live feed connects with the cookie too
    page.wait_for_load_state("networkidle")
    assert console.errors == [], console.errors
    statuses = page.evaluate(
        """async () => [
            (await fetch('/api/flow/health')).status,
            (await fetch('/api/evaluate', {method: 'POST'})).status,
        ]"""
    )
    assert statuses == [200, 403]  # reads work through the cookie; admin actions stay shut
    page.screenshot(path=str(tmp_path / "signed-in.png"), full_page=True)
    context.close()


def test_a_wrong_token_stays_on_the_sign_in_form(server: ServerProcess, browser: Any) -> None:  # noqa: F811
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server.url}/login")
    page.fill("#token", INGEST)  # an ingest token cannot read
    page.click("button[type=submit]")
    page.wait_for_selector("p.error")
    assert "cannot read" in page.inner_text("p.error")
    assert not [c for c in context.cookies() if c["name"] == "flowsight_token"]
    context.close()
