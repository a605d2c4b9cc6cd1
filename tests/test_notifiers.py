"""Notifiers: exact bodies, delivery to a loopback receiver, failures, and a real Alertmanager."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from flowsight.alerts.notification import AlertView, DeliveryError, Notification
from flowsight.alerts.notifiers import (
    AlertmanagerNotifier,
    Notifier,
    SlackNotifier,
    WebhookNotifier,
    alertmanager_body,
    rfc3339,
    slack_body,
    webhook_body,
)
from tests.alertmanager import AlertmanagerProcess, alertmanager  # noqa: F401  (fixture)
from tests.receiver import Receiver
from tests.server import free_port

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
TTL = timedelta(minutes=5)

ROOT_CAUSE = AlertView(
    fingerprint="fp-erp",
    status="firing",
    labels={"alertname": "SystemUnhealthy", "system": "erp", "severity": "page", "team": ""},
    annotations={
        "summary": "erp error ratio 12% over 5m",
        "description": "erp spans and events fail above the 5% threshold",
        "impacted": "StuckOrders system=oms, SLOBurnRate slo=order_completion",
    },
    starts_at=T0 - timedelta(minutes=10),
    generator_url="http://flowsight.example/alerts/fp-erp",
)
RESOLVED = AlertView(
    fingerprint="fp-oms",
    status="resolved",
    labels={"alertname": "StuckOrders", "system": "oms", "severity": "page"},
    annotations={"summary": "3 orders stuck at payment_captured"},
    starts_at=T0 - timedelta(hours=1),
    ends_at=T0 - timedelta(minutes=2, microseconds=345_000),
)
NOTIFICATION = Notification(
    receiver="oncall",
    group_key='{}:{severity="page"}',
    group_labels={"severity": "page"},
    alerts=(ROOT_CAUSE, RESOLVED),
    external_url="http://flowsight.example",
)


def alert(n: int, status: str = "firing") -> AlertView:
    return AlertView(
        fingerprint=f"fp-{n}",
        status=status,
        labels={"alertname": "StuckOrders", "system": f"s{n}"},
        annotations={},
        starts_at=T0,
        ends_at=T0 + timedelta(minutes=1) if status == "resolved" else None,
    )


# --- bodies -----------------------------------------------------------------------------------


def test_alertmanager_body_sets_firing_end_to_now_plus_ttl_and_drops_empty_labels() -> None:
    assert alertmanager_body(NOTIFICATION, T0, TTL) == [
        {
            "labels": {"alertname": "SystemUnhealthy", "system": "erp", "severity": "page"},
            "annotations": {
                "summary": "erp error ratio 12% over 5m",
                "description": "erp spans and events fail above the 5% threshold",
                "impacted": "StuckOrders system=oms, SLOBurnRate slo=order_completion",
            },
            "startsAt": "2026-11-26T09:50:00.000Z",
            "endsAt": "2026-11-26T10:05:00.000Z",
            "generatorURL": "http://flowsight.example/alerts/fp-erp",
        },
        {
            "labels": {"alertname": "StuckOrders", "system": "oms", "severity": "page"},
            "annotations": {"summary": "3 orders stuck at payment_captured"},
            "startsAt": "2026-11-26T09:00:00.000Z",
            "endsAt": "2026-11-26T09:57:59.655Z",
            "generatorURL": "",
        },
    ]


def test_alertmanager_body_writes_other_time_zones_and_naive_times_as_utc() -> None:
    plus_two = datetime(2026, 11, 26, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    naive = datetime(2026, 11, 26, 10, 0)
    notification = Notification("r", "g", {}, (AlertView("f", "firing", {"a": "b"}, {}, plus_two),))
    [body] = alertmanager_body(notification, naive, TTL)
    assert (body["startsAt"], body["endsAt"]) == ("2026-11-26T12:00:00.000Z", "2026-11-26T10:05:00.000Z")


def test_webhook_body_is_alertmanager_webhook_v4() -> None:
    assert webhook_body(NOTIFICATION) == {
        "version": "4",
        "groupKey": '{}:{severity="page"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "oncall",
        "groupLabels": {"severity": "page"},
        "commonLabels": {"severity": "page"},
        "commonAnnotations": {},
        "externalURL": "http://flowsight.example",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "SystemUnhealthy", "system": "erp", "severity": "page", "team": ""},
                "annotations": ROOT_CAUSE.annotations,
                "startsAt": "2026-11-26T09:50:00.000Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://flowsight.example/alerts/fp-erp",
                "fingerprint": "fp-erp",
            },
            {
                "status": "resolved",
                "labels": {"alertname": "StuckOrders", "system": "oms", "severity": "page"},
                "annotations": {"summary": "3 orders stuck at payment_captured"},
                "startsAt": "2026-11-26T09:00:00.000Z",
                "endsAt": "2026-11-26T09:57:59.655Z",
                "generatorURL": "",
                "fingerprint": "fp-oms",
            },
        ],
    }


def test_webhook_body_of_a_resolved_group_is_resolved_and_counts_truncated_alerts() -> None:
    notification = Notification("r", "g", {}, (alert(1, "resolved"),), truncated_alerts=4)
    body = webhook_body(notification)
    assert (body["status"], body["truncatedAlerts"]) == ("resolved", 4)
    assert body["alerts"][0]["endsAt"] == "2026-11-26T10:01:00.000Z"


def test_slack_body_has_one_attachment_per_alert_and_shows_what_a_root_cause_impacts() -> None:
    assert slack_body(NOTIFICATION) == {
        "text": "[FIRING:1] 2 alerts severity=page",
        "attachments": [
            {
                "color": "danger",
                "title": "[FIRING] SystemUnhealthy system=erp",
                "title_link": "http://flowsight.example/alerts/fp-erp",
                "text": "erp error ratio 12% over 5m\nerp spans and events fail above the 5% threshold",
                "fields": [
                    {"title": "Severity", "value": "page", "short": True},
                    {"title": "Started", "value": "2026-11-26T09:50:00.000Z", "short": True},
                    {
                        "title": "Impacted",
                        "value": "StuckOrders system=oms, SLOBurnRate slo=order_completion",
                        "short": False,
                    },
                ],
            },
            {
                "color": "good",
                "title": "[RESOLVED] StuckOrders system=oms",
                "text": "3 orders stuck at payment_captured",
                "fields": [
                    {"title": "Severity", "value": "page", "short": True},
                    {"title": "Started", "value": "2026-11-26T09:00:00.000Z", "short": True},
                    {"title": "Resolved", "value": "2026-11-26T09:57:59.655Z", "short": True},
                ],
            },
        ],
    }


@pytest.mark.parametrize(
    ("count", "truncated", "attachments", "last_line"),
    [
        pytest.param(20, 0, 20, None, id="twenty alerts fit without a more line"),
        pytest.param(23, 0, 21, "and 3 more", id="alerts past twenty are counted in a more line"),
        pytest.param(23, 2, 21, "and 5 more", id="alerts the dispatcher truncated are counted too"),
        pytest.param(1, 2, 2, "and 2 more", id="truncated alerts alone add a more line"),
    ],
)
def test_slack_body_caps_attachments_at_twenty(
    count: int, truncated: int, attachments: int, last_line: str | None
) -> None:
    notification = Notification(
        "r", "g", {"alertname": "StuckOrders"}, tuple(alert(n) for n in range(count)), "", truncated
    )
    body = slack_body(notification)
    assert len(body["attachments"]) == attachments
    assert body["text"] == f"[FIRING:{count + truncated}] StuckOrders"
    if last_line is None:
        assert all(a["title"].startswith("[FIRING] StuckOrders system=s") for a in body["attachments"])
    else:
        assert body["attachments"][-1] == {"text": last_line}


def test_slack_body_escapes_what_slack_would_read_as_markup() -> None:
    view = AlertView(
        "f", "resolved", {"alertname": "A<B>", "system": "a&b"}, {"summary": "<!channel> x"}, T0, T0
    )
    body = slack_body(Notification("r", "g", {}, (view,)))
    assert body["text"] == "[RESOLVED] A&lt;B&gt;"
    assert body["attachments"][0]["title"] == "[RESOLVED] A&lt;B&gt; system=a&amp;b"
    assert body["attachments"][0]["text"] == "&lt;!channel&gt; x"


# --- delivery to a loopback receiver ----------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def test_webhook_notifier_posts_the_v4_body(receiver: Receiver) -> None:
    WebhookNotifier(f"{receiver.url}/hooks/flowsight").send(NOTIFICATION, T0)
    [request] = receiver.wait_for(1)
    assert request.path == "/hooks/flowsight"
    assert request.headers["content-type"] == "application/json"
    assert request.json == webhook_body(NOTIFICATION)


def test_slack_notifier_posts_the_slack_body(receiver: Receiver) -> None:
    SlackNotifier(f"{receiver.url}/services/T0/B0/secret").send(NOTIFICATION, T0)
    [request] = receiver.wait_for(1)
    assert request.path == "/services/T0/B0/secret"
    assert request.json == slack_body(NOTIFICATION)


def test_alertmanager_notifier_posts_to_the_v2_alerts_endpoint(receiver: Receiver) -> None:
    AlertmanagerNotifier(f"{receiver.url}/", firing_ttl=TTL).send(NOTIFICATION, T0)
    [request] = receiver.wait_for(1)
    assert request.path == "/api/v2/alerts"
    assert request.json == alertmanager_body(NOTIFICATION, T0, TTL)


def notifiers(url: str) -> list[Notifier]:
    return [
        AlertmanagerNotifier(url, firing_ttl=TTL, name="am-main", timeout_s=2),
        WebhookNotifier(f"{url}/hook", name="hook-main", timeout_s=2),
        SlackNotifier(f"{url}/services/T0/B0/secret", name="slack-main", timeout_s=2),
    ]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["alertmanager", "webhook", "slack"])
def test_a_500_answer_raises_delivery_error_after_one_attempt(receiver: Receiver, index: int) -> None:
    notifier = notifiers(receiver.url)[index]
    receiver.respond_with(500, times=1)
    with pytest.raises(DeliveryError) as raised:
        notifier.send(NOTIFICATION, T0)
    message = str(raised.value)
    assert "'oncall'" in message
    assert notifier.name in message
    assert "HTTP 500" in message
    assert receiver.url in message
    assert len(receiver.requests) == 1  # no retry inside send
    notifier.send(NOTIFICATION, T0)  # the next answer is 200 again
    assert [r.status for r in receiver.requests] == [500, 200]


def test_a_receiver_that_always_fails_keeps_failing(receiver: Receiver) -> None:
    receiver.respond_with(503)
    notifier = WebhookNotifier(receiver.url)
    for _ in range(3):
        with pytest.raises(DeliveryError, match="HTTP 503"):
            notifier.send(NOTIFICATION, T0)
    assert [r.status for r in receiver.requests] == [503, 503, 503]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["alertmanager", "webhook", "slack"])
def test_a_closed_port_raises_delivery_error_naming_receiver_and_url(index: int) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    notifier = notifiers(url)[index]
    with pytest.raises(DeliveryError) as raised:
        notifier.send(NOTIFICATION, T0)
    message = str(raised.value)
    assert "'oncall'" in message
    assert notifier.name in message
    assert url in message
    assert "refused" in message.lower()


def test_slack_errors_do_not_reveal_the_webhook_secret(receiver: Receiver) -> None:
    receiver.respond_with(404)
    with pytest.raises(DeliveryError) as raised:
        SlackNotifier(f"{receiver.url}/services/T0/B0/secret").send(NOTIFICATION, T0)
    assert "secret" not in str(raised.value)
    assert f"{receiver.url}/services/..." in str(raised.value)


def test_a_redirect_is_a_failure_not_a_silent_get(receiver: Receiver) -> None:
    receiver.respond_with(302, times=1)
    with pytest.raises(DeliveryError, match="HTTP 302"):
        WebhookNotifier(receiver.url).send(NOTIFICATION, T0)
    assert len(receiver.requests) == 1


# --- a real Alertmanager ----------------------------------------------------------------------


def page(status: str, now: datetime) -> Notification:
    view = AlertView(
        fingerprint="fp-erp",
        status=status,
        labels={"alertname": "SystemUnhealthy", "system": "erp", "severity": "page", "team": ""},
        annotations={"summary": "erp error ratio 12% over 5m"},
        starts_at=now - timedelta(minutes=5),
        ends_at=now - timedelta(seconds=1) if status == "resolved" else None,
        generator_url="http://flowsight.example/alerts/fp-erp",
    )
    return Notification("oncall", "g", {"system": "erp"}, (view,))


def test_alertmanager_shows_a_firing_alert_then_drops_it_once_resolved(
    alertmanager: AlertmanagerProcess,  # noqa: F811
) -> None:
    notifier = AlertmanagerNotifier(alertmanager.url, firing_ttl=TTL)
    now = datetime.now(UTC)  # Alertmanager judges endsAt by its own clock
    notifier.send(page("firing", now), now)

    def erp_active(alerts: list[dict[str, object]]) -> bool:
        return any(a["status"] == {"state": "active", "silencedBy": [], "inhibitedBy": []} for a in alerts)

    [shown] = alertmanager.wait_until(erp_active, filter=['alertname="SystemUnhealthy"'])
    assert shown["labels"] == {"alertname": "SystemUnhealthy", "system": "erp", "severity": "page"}
    assert shown["annotations"] == {"summary": "erp error ratio 12% over 5m"}
    assert shown["generatorURL"] == "http://flowsight.example/alerts/fp-erp"
    assert (shown["startsAt"], shown["endsAt"]) == (rfc3339(now - timedelta(minutes=5)), rfc3339(now + TTL))

    now = datetime.now(UTC)
    notifier.send(page("resolved", now), now)
    assert alertmanager.wait_until(lambda alerts: alerts == []) == []


def test_alertmanager_webhook_posts_the_same_fields_as_webhook_body(tmp_path: Path) -> None:
    """The real Alertmanager's webhook v4 body has exactly the fields webhook_body writes."""
    with Receiver() as sink, AlertmanagerProcess(tmp_path, webhook_url=f"{sink.url}/hook") as am:
        now = datetime.now(UTC)
        AlertmanagerNotifier(am.url, firing_ttl=TTL).send(page("firing", now), now)
        [request] = sink.wait_for(1, timeout=15)
    ours = webhook_body(page("firing", now))
    theirs = request.json
    assert theirs["version"] == "4"
    assert set(theirs) == set(ours)
    assert set(theirs["alerts"][0]) == set(ours["alerts"][0])
    assert theirs["alerts"][0]["endsAt"] == ours["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"
    assert theirs["alerts"][0]["labels"] == {
        "alertname": "SystemUnhealthy",
        "system": "erp",
        "severity": "page",
    }
