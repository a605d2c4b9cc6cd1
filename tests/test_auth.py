"""Bearer tokens with scopes (ingest, read, admin), system-limited ingest tokens, browser sign-in,
per-token rate limits, and loopback-only listening without tokens."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from flowsight.app import build_services, create_app
from flowsight.auth import RateLimiter, is_loopback, loopback_only, redact_dsn, required_scope
from flowsight.configfiles import ConfigurationError, check_file, load_tokens
from tests.conftest import event
from tests.server import free_port

OMS = "oms-connector-token-0123456789"
READER = "wallboard-token-0123456789ab"
ADMIN = "sre-admin-token-0123456789abc"
SLOW = "slow-reader-token-0123456789a"

TOKENS = f"""
version: 1
tokens:
  - name: oms-connector
    sha256: {hashlib.sha256(OMS.encode()).hexdigest()}
    scopes: [ingest]
    systems: [oms]
  - name: wallboard
    token: {READER}
    scopes: [read]
  - name: sre
    token: {ADMIN}
    scopes: [admin]
  - name: slow
    token: {SLOW}
    scopes: [read]
    requests_per_second: 1
"""


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.yaml"
    path.write_text(TOKENS)
    return path


@pytest.fixture
def secured(settings: Any, engine: Any, clock: Any, tokens_file: Path) -> Iterator[TestClient]:
    services = build_services(
        settings.model_copy(update={"tokens_file": tokens_file}), store=engine, clock=clock
    )
    with TestClient(create_app(services)) as test_client:
        yield test_client


def post_events(client: TestClient, events: list[dict[str, Any]], token: str, ndjson: bool = False) -> Any:
    if ndjson:
        body = b"\n".join(orjson.dumps(e) for e in events)
        headers = {"content-type": "application/x-ndjson"}
    else:
        body, headers = orjson.dumps(events), {"content-type": "application/json"}
    return client.post("/v1/events", content=body, headers=headers | bearer(token))


def test_a_request_without_a_token_gets_401_naming_the_header(secured: TestClient) -> None:
    response = secured.get("/api/slos")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in response.json()["error"]


def test_an_unknown_token_gets_401(secured: TestClient) -> None:
    response = secured.get("/api/slos", headers=bearer("not-a-configured-token-at-all"))
    assert response.status_code == 401
    assert "not valid" in response.json()["error"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/static/dashboard.css", "/login"])
def test_probes_static_files_and_sign_in_need_no_token(secured: TestClient, path: str) -> None:
    assert secured.get(path).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "token", "status", "scope"),
    [
        pytest.param("GET", "/api/slos", READER, 200, None, id="a read token reads the SLOs"),
        pytest.param("GET", "/metrics", READER, 200, None, id="a read token scrapes the metrics"),
        pytest.param("POST", "/v1/events", READER, 403, "ingest", id="a read token cannot ingest"),
        pytest.param("POST", "/api/evaluate", READER, 403, "admin", id="a read token cannot evaluate"),
        pytest.param("GET", "/api/slos", OMS, 403, "read", id="an ingest token cannot read"),
        pytest.param("POST", "/api/evaluate", OMS, 403, "admin", id="an ingest token cannot evaluate"),
        pytest.param("POST", "/api/evaluate", ADMIN, 200, None, id="an admin token evaluates"),
        pytest.param("GET", "/api/alerts", ADMIN, 200, None, id="an admin token reads too"),
        pytest.param("POST", "/api/dead-letters/replay", ADMIN, 200, None, id="an admin token replays"),
        pytest.param("POST", "/v1/events", ADMIN, 403, "ingest", id="an admin token does not ingest"),
    ],
)
def test_each_scope_opens_its_own_routes(
    secured: TestClient, method: str, path: str, token: str, status: int, scope: str | None
) -> None:
    content = b"[]" if path == "/v1/events" else None
    response = secured.request(method, path, headers=bearer(token), content=content)
    assert response.status_code == status, response.text
    if scope:
        assert f"lacks the '{scope}' scope" in response.json()["error"]


@pytest.mark.parametrize("ndjson", [False, True], ids=["json array", "large ndjson (columnar path)"])
def test_an_ingest_token_limited_to_oms_cannot_send_events_that_claim_erp(
    secured: TestClient, ndjson: bool
) -> None:
    events = [event(f"ok-{i}") for i in range(150 if ndjson else 2)]
    events.append(event("claims-erp", system="erp"))
    response = post_events(secured, events, OMS, ndjson=ndjson)
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (len(events) - 1, 1)
    [error] = body["errors"]
    assert error["event_id"] == "evt-claims-erp"
    assert "system: token 'oms-connector' may send events of oms only, not 'erp'" in error["error"]
    letters = secured.get("/api/dead-letters", headers=bearer(READER)).json()
    assert letters["total"] == 1 and letters["items"][0]["event_id"] == "evt-claims-erp"


def test_an_ingest_token_limited_to_oms_has_other_services_spans_rejected(secured: TestClient) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    request = ExportTraceServiceRequest()
    for service in ("oms", "erp"):
        resource = request.resource_spans.add()
        attr = resource.resource.attributes.add()
        attr.key, attr.value.string_value = "service.name", service
        span = resource.scope_spans.add().spans.add()
        span.trace_id, span.span_id = bytes(range(16)), bytes([1, 2, 3, 4, 5, 6, 7, len(service)])
        span.name, span.start_time_unix_nano, span.end_time_unix_nano = "post", 1, 2
    response = secured.post(
        "/v1/traces",
        content=request.SerializeToString(),
        headers={"content-type": "application/x-protobuf"} | bearer(OMS),
    )
    assert response.status_code == 200
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert "may not report for" in answer.partial_success.error_message


def test_a_token_over_its_rate_limit_gets_429_with_retry_after(secured: TestClient) -> None:
    first = secured.get("/api/slos", headers=bearer(SLOW))
    second = secured.get("/api/slos", headers=bearer(SLOW))
    assert first.status_code == 200
    assert second.status_code == 429
    assert int(second.headers["retry-after"]) >= 1
    assert "over its rate limit" in second.json()["error"]
    assert secured.get("/api/slos", headers=bearer(READER)).status_code == 200  # others are not slowed


def test_the_rate_limiter_refills_at_the_configured_rate() -> None:
    from flowsight.auth import Principal

    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3.0, clock=lambda: now[0])
    who = Principal("t", frozenset({"read"}))
    assert [limiter.wait_seconds(who) for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]
    now[0] = 0.5
    assert limiter.wait_seconds(who) == 0.0
    assert limiter.wait_seconds(who) == pytest.approx(0.5)


def test_a_browser_is_sent_to_sign_in_and_comes_back_with_an_httponly_cookie(secured: TestClient) -> None:
    page = secured.get("/slos", headers={"accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fslos"
    signed = secured.post("/login", data={"token": READER, "next": "/slos"}, follow_redirects=False)
    assert signed.status_code == 303 and signed.headers["location"] == "/slos"
    cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert secured.get("/slos").status_code == 200  # the client keeps the cookie
    secured.get("/logout")
    assert secured.get("/api/slos").status_code == 401


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example"])
def test_sign_in_never_redirects_to_another_site(secured: TestClient, target: str) -> None:
    signed = secured.post("/login", data={"token": READER, "next": target}, follow_redirects=False)
    assert signed.headers["location"] == "/"


def test_sign_in_refuses_a_token_that_cannot_read(secured: TestClient) -> None:
    refused = secured.post("/login", data={"token": OMS}, follow_redirects=False)
    assert refused.status_code == 401
    assert "set-cookie" not in refused.headers


def test_tokens_never_reach_the_log(secured: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secured.get("/api/slos", headers=bearer(READER))
    secured.get("/api/slos", headers=bearer("wrong-token-0123456789abcdef"))
    post_events(secured, [event(1), event(2, system="erp")], OMS)
    text = caplog.text
    assert READER not in text and OMS not in text and "wrong-token-0123456789abcdef" not in text


def test_the_tokens_file_is_checked_with_errors_that_name_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "tokens.yaml"
    bad.write_text(
        "version: 1\ntokens:\n"
        "  - name: a\n    token: short\n    scopes: [ingest]\n"
        "  - name: b\n    token: long-enough-token-0123\n    sha256: " + "ab" * 32 + "\n    scopes: [read]\n"
        "  - name: c\n    token: another-long-token-0123\n    scopes: [read]\n    systems: [oms]\n"
        "  - name: c\n    token: yet-another-token-01234\n    scopes: [write]\n"
    )
    kind, issues = check_file(bad)
    assert kind == "tokens"
    text = "\n".join(map(str, issues))
    assert "tokens[0].token" in text and "at least 16 characters" in text
    assert "tokens[1]" in text and "exactly one of sha256 and token" in text
    assert "tokens[2]" in text and "no ingest scope" in text
    assert "tokens[3].scopes[0]" in text
    with pytest.raises(ConfigurationError):
        load_tokens(bad)


def test_a_good_tokens_file_loads_and_matches_each_token(tokens_file: Path) -> None:
    tokens = load_tokens(tokens_file)
    assert check_file(tokens_file) == ("tokens", [])
    assert [tokens.match(t).name for t in (OMS, READER, ADMIN, SLOW)] == [
        "oms-connector",
        "wallboard",
        "sre",
        "slow",
    ]
    assert tokens.match(OMS + "x") is None


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("POST", "/v1/traces", "ingest"),
        ("GET", "/api/orders/SO-1/timeline", "read"),
        ("GET", "/api/feed", "read"),
        ("POST", "/api/silences", "admin"),
        ("DELETE", "/api/silences/abc", "admin"),
        ("POST", "/api/demo/scenarios/erp-outage", "admin"),
        ("GET", "/readyz", None),
    ],
)
def test_routes_need_the_scope_their_effect_calls_for(method: str, path: str, scope: str | None) -> None:
    assert required_scope(method, path) == scope


def test_without_tokens_the_service_keeps_to_loopback() -> None:
    assert loopback_only("0.0.0.0", None)[0] == "127.0.0.1"
    assert "no tokens are configured" in (loopback_only("0.0.0.0", None)[1] or "")
    assert loopback_only("::1", None) == ("::1", None)
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]"))
    assert redact_dsn("https://flowsight:s3cret@clickhouse:8443") == "https://flowsight:***@clickhouse:8443"


def test_serve_without_tokens_on_all_interfaces_says_so_and_binds_loopback(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSIGHT_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "flowsight.cli", "serve", "--host", "0.0.0.0", "--port", str(port),
         "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        listening: set[str] = set()
        while time.monotonic() < deadline and not listening:
            time.sleep(0.2)
            for table in ("/proc/net/tcp", "/proc/net/tcp6"):
                for line in Path(table).read_text().splitlines()[1:]:
                    local, state = line.split()[1], line.split()[3]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                        listening.add(local.rsplit(":", 1)[0])
        assert listening == {"0100007F"}  # 127.0.0.1 only
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert "no tokens are configured (tokens_file): listening on 127.0.0.1 only, not 0.0.0.0" in output
