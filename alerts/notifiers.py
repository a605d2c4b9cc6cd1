"""Notifiers: deliver a :class:`Notification` to Alertmanager, a generic webhook or Slack.

Each ``send`` makes exactly one HTTP attempt and raises :class:`DeliveryError` when the receiver
does not take the notification; retrying with backoff is the caller's job. Bodies are built by
pure functions (``alertmanager_body``, ``webhook_body``, ``slack_body``) so they can be checked
without a network.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta
from typing import Any, Protocol

from flowsight.alerts.notification import AlertView, DeliveryError, Notification
from flowsight.timefmt import as_utc

__all__ = [
    "SLACK_MAX_ATTACHMENTS",
    "AlertmanagerNotifier",
    "Notifier",
    "SlackNotifier",
    "WebhookNotifier",
    "alertmanager_body",
    "rfc3339",
    "slack_body",
    "webhook_body",
]

DEFAULT_TIMEOUT_S = 5.0
"""Seconds one HTTP attempt may take (connect plus answer) before it counts as failed."""

SLACK_MAX_ATTACHMENTS = 20
"""Alerts shown as attachments in one Slack message; the rest are counted in an "and N more" line."""

# Alertmanager writes a firing alert's unset end time as Go's zero time.
_ZERO_TIME = "0001-01-01T00:00:00Z"
_USER_AGENT = "flowsight-notifier"
_ERROR_BODY_CHARS = 200


class Notifier(Protocol):
    """Anything that can deliver a notification in one attempt (raising DeliveryError otherwise)."""

    name: str

    def send(self, notification: Notification, now: datetime) -> None: ...


def rfc3339(ts: datetime) -> str:
    """``2026-11-26T10:00:00.000Z``: UTC with milliseconds, as Alertmanager's API accepts it."""
    return as_utc(ts).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- bodies -----------------------------------------------------------------------------------


def alertmanager_body(
    notification: Notification, now: datetime, firing_ttl: timedelta
) -> list[dict[str, Any]]:
    """The postable alerts of Alertmanager's API v2 (``POST /api/v2/alerts``).

    A firing alert ends at ``now + firing_ttl``, so Alertmanager resolves it on its own when
    flowsight stops re-sending it. Labels with empty values are dropped: an empty value means the
    label is absent, and Alertmanager's API expects non-empty label values.
    """
    body = []
    for alert in notification.alerts:
        if alert.status == "firing":
            ends_at = now + firing_ttl
        else:
            ends_at = alert.ends_at if alert.ends_at is not None else now
        body.append(
            {
                "labels": {k: v for k, v in alert.labels.items() if v != ""},
                "annotations": dict(alert.annotations),
                "startsAt": rfc3339(alert.starts_at),
                "endsAt": rfc3339(ends_at),
                "generatorURL": alert.generator_url,
            }
        )
    return body


def webhook_body(notification: Notification) -> dict[str, Any]:
    """The body Alertmanager's webhook receiver posts (version 4)."""
    return {
        "version": "4",
        "groupKey": notification.group_key,
        "truncatedAlerts": notification.truncated_alerts,
        "status": notification.status,
        "receiver": notification.receiver,
        "groupLabels": dict(notification.group_labels),
        "commonLabels": notification.common_labels,
        "commonAnnotations": notification.common_annotations,
        "externalURL": notification.external_url,
        "alerts": [
            {
                "status": alert.status,
                "labels": dict(alert.labels),
                "annotations": dict(alert.annotations),
                "startsAt": rfc3339(alert.starts_at),
                "endsAt": _ZERO_TIME
                if alert.status == "firing" or alert.ends_at is None
                else rfc3339(alert.ends_at),
                "generatorURL": alert.generator_url,
                "fingerprint": alert.fingerprint,
            }
            for alert in notification.alerts
        ],
    }


def slack_body(notification: Notification) -> dict[str, Any]:
    """A Slack incoming-webhook message: a one-line summary and one attachment per alert."""
    shown = notification.alerts[:SLACK_MAX_ATTACHMENTS]
    attachments: list[dict[str, Any]] = [_slack_attachment(alert) for alert in shown]
    hidden = len(notification.alerts) - len(shown) + notification.truncated_alerts
    if hidden > 0:
        attachments.append({"text": f"and {hidden} more"})
    return {"text": _slack_summary(notification), "attachments": attachments}


def _slack_summary(notification: Notification) -> str:
    status = notification.status.upper()
    if notification.status == "firing":
        firing = sum(1 for a in notification.alerts if a.status == "firing") + notification.truncated_alerts
        status = f"{status}:{firing}"
    labels = {**notification.group_labels}
    alertname = labels.pop("alertname", None) or notification.common_labels.get("alertname")
    what = alertname or f"{len(notification.alerts) + notification.truncated_alerts} alerts"
    parts = [f"[{status}]", what, *(f"{k}={v}" for k, v in sorted(labels.items()))]
    return _slack_escape(" ".join(parts))


def _slack_attachment(alert: AlertView) -> dict[str, Any]:
    title = f"[{alert.status.upper()}] {alert.labels.get('alertname', '')}"
    if alert.labels.get("system"):
        title += f" system={alert.labels['system']}"
    text = "\n".join(
        alert.annotations[key] for key in ("summary", "description") if alert.annotations.get(key)
    )
    fields: list[dict[str, Any]] = []
    if alert.labels.get("severity"):
        fields.append({"title": "Severity", "value": alert.labels["severity"], "short": True})
    fields.append({"title": "Started", "value": rfc3339(alert.starts_at), "short": True})
    if alert.status == "resolved" and alert.ends_at is not None:
        fields.append({"title": "Resolved", "value": rfc3339(alert.ends_at), "short": True})
    if alert.annotations.get("impacted"):
        fields.append({"title": "Impacted", "value": alert.annotations["impacted"], "short": False})
    attachment: dict[str, Any] = {
        "color": "danger" if alert.status == "firing" else "good",
        "title": _slack_escape(title),
        "text": _slack_escape(text),
        "fields": [{**f, "value": _slack_escape(f["value"])} for f in fields],
    }
    if alert.generator_url:
        attachment["title_link"] = alert.generator_url
    return attachment


def _slack_escape(text: str) -> str:
    # Slack reads <...> as links and mentions; these three must be escaped in message text.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- notifiers --------------------------------------------------------------------------------


class AlertmanagerNotifier:
    """Posts alerts to a Prometheus Alertmanager through its API v2.

    Args:
        url: Alertmanager's base URL, e.g. ``http://alertmanager:9093``.
        firing_ttl: how long Alertmanager keeps a firing alert without hearing of it again;
            longer than the interval at which firing alerts are re-sent.
        name: the notifier's name in logs and errors.
        timeout_s: seconds one attempt may take.
    """

    def __init__(
        self,
        url: str,
        firing_ttl: timedelta,
        name: str = "alertmanager",
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ):
        if firing_ttl <= timedelta(0):
            raise ValueError(f"firing_ttl must be positive, got {firing_ttl}")
        _check_timeout(timeout_s)
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.firing_ttl = firing_ttl
        self.name = name
        self.timeout_s = timeout_s

    def send(self, notification: Notification, now: datetime) -> None:
        """Post the notification's alerts once; raises DeliveryError if Alertmanager refuses them."""
        body = alertmanager_body(notification, now, self.firing_ttl)
        _post_json(self.url, body, self.name, notification.receiver, self.timeout_s, self.url)


class WebhookNotifier:
    """Posts Alertmanager's webhook v4 body to any HTTP endpoint."""

    def __init__(self, url: str, name: str = "webhook", timeout_s: float = DEFAULT_TIMEOUT_S):
        _check_timeout(timeout_s)
        self.url = url
        self.name = name
        self.timeout_s = timeout_s

    def send(self, notification: Notification, now: datetime) -> None:
        """Post the notification once; raises DeliveryError on a network error or non-2xx answer."""
        _post_json(
            self.url, webhook_body(notification), self.name, notification.receiver, self.timeout_s, self.url
        )


class SlackNotifier:
    """Posts to a Slack (or Slack-compatible) incoming webhook.

    The webhook URL's path is its secret, so errors show only its scheme, host and first segment.
    """

    def __init__(self, url: str, name: str = "slack", timeout_s: float = DEFAULT_TIMEOUT_S):
        _check_timeout(timeout_s)
        self.url = url
        self.name = name
        self.timeout_s = timeout_s

    def send(self, notification: Notification, now: datetime) -> None:
        """Post the message once; raises DeliveryError on a network error or non-2xx answer."""
        _post_json(
            self.url,
            slack_body(notification),
            self.name,
            notification.receiver,
            self.timeout_s,
            _redacted_url(self.url),
        )


def _check_timeout(timeout_s: float) -> None:
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")


def _redacted_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    first = parts.path.strip("/").split("/", 1)[0]
    path = f"/{first}/..." if first else "/"
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{path}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would turn the POST into a GET without its body: treat it as a failure."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _post_json(url: str, body: Any, notifier: str, receiver: str, timeout_s: float, shown_url: str) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(body, separators=(",", ":")).encode(),
        headers={"Content-Type": "application/json", "User-Agent": _USER_AGENT},
        method="POST",
    )
    where = f"{notifier} notifier, receiver {receiver!r}: POST {shown_url}"
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            response.read()
            status = int(response.status)
    except urllib.error.HTTPError as error:
        detail = error.read(_ERROR_BODY_CHARS).decode("utf-8", "replace").strip()
        error.close()
        raise DeliveryError(
            f"{where} answered HTTP {error.code}" + (f": {detail}" if detail else "")
        ) from error
    except urllib.error.URLError as error:
        raise DeliveryError(f"{where} failed: {error.reason}") from error
    except (OSError, http.client.HTTPException) as error:  # timeouts and broken answers
        raise DeliveryError(f"{where} failed: {error!r}") from error
    if not 200 <= status < 300:
        raise DeliveryError(f"{where} answered HTTP {status}")
