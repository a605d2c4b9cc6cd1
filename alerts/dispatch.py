"""Notification dispatch: which alerts each receiver hears about, when, and delivery with retries.

Each receiver is told about an alert when it fires (not suppressed, not silenced), and told it
resolved once it resolves — or once it is suppressed or silenced after it was told it fires, so
the page for a symptom closes in favour of its root cause's. Alertmanager does its own grouping,
so it is sent every firing alert at every evaluation (its ``endsAt`` lets it expire them should
flowsight stop); the webhook and Slack receivers get Alertmanager-style groups: a new group
waits ``group_wait``, changes to a group wait ``group_interval`` after its last notification,
and an unchanged firing group is repeated every ``repeat_interval``.

Delivery runs on one worker thread per receiver, so a failing or slow receiver stops neither the
others nor evaluation; each notification is retried with exponential backoff. What a receiver
was told is recorded in ClickHouse once delivered, so a restart does not re-notify.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pyarrow as pa

from flowsight.alerts.lifecycle import Alert
from flowsight.alerts.notification import AlertView, DeliveryError, Notification
from flowsight.alerts.notifiers import Notifier
from flowsight.clock import system_clock
from flowsight.ddl import Schema
from flowsight.store import Store
from flowsight.timefmt import as_utc, to_ms

log = logging.getLogger(__name__)

_MS = pa.timestamp("ms", tz="UTC")


@dataclass(frozen=True)
class Receiver:
    """A notifier and how alerts are grouped for it (``grouped`` False: every evaluation)."""

    notifier: Notifier
    grouped: bool = True
    group_by: tuple[str, ...] = ("alertname", "system")
    group_wait: timedelta = timedelta(seconds=30)
    group_interval: timedelta = timedelta(minutes=5)
    repeat_interval: timedelta = timedelta(hours=4)

    @property
    def name(self) -> str:
        return self.notifier.name


class NotificationLog:
    """``alert_notifications``: the last status each receiver was told per alert."""

    def __init__(self, store: Store, schema: Schema):
        self.store = store
        self.schema = schema

    def load(self) -> dict[tuple[str, str], tuple[str, datetime, str]]:
        rows = self.store.rows(
            f"SELECT receiver, fingerprint, status, sent_at, group_key "
            f"FROM {self.schema.table('alert_notifications')} FINAL"
        )
        return {(str(r), str(fp)): (str(s), as_utc(t), str(g)) for r, fp, s, t, g in rows}

    def record(self, receiver: str, notification: Notification, sent_at: datetime) -> None:
        alerts = notification.alerts
        table = pa.table(
            {
                "receiver": [receiver] * len(alerts),
                "fingerprint": [a.fingerprint for a in alerts],
                "group_key": [notification.group_key] * len(alerts),
                "status": [a.status for a in alerts],
                "sent_at": pa.array([to_ms(sent_at)] * len(alerts), _MS),
            }
        )
        self.store.insert_arrow(self.schema.table("alert_notifications"), table)


_Job = tuple[Notification, datetime]


@dataclass
class _Group:
    first_new_at: datetime | None = None
    last_sent_at: datetime | None = None


@dataclass
class DeliveryStats:
    sent: dict[str, int] = field(default_factory=dict)
    failed_attempts: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)


IMPACTED_SHOWN = 20


def describe(alert: Alert) -> str:
    """``StuckOrders{system="wms", stage="fulfillment_released"}``: an alert in one line."""
    labels = ", ".join(
        f'{k}="{v}"' for k, v in sorted(alert.labels.items()) if k not in ("alertname", "severity")
    )
    return f"{alert.name}{{{labels}}}"


class Dispatcher:
    def __init__(
        self,
        receivers: Sequence[Receiver],
        notification_log: NotificationLog,
        *,
        external_url: str = "",
        retry_attempts: int = 5,
        retry_base_s: float = 1.0,
        retry_max_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = system_clock,
    ):
        self.receivers = list(receivers)
        self.log = notification_log
        self.external_url = external_url.rstrip("/")
        self.retry_attempts = max(1, retry_attempts)
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.sleep = sleep
        self.clock = clock
        self.stats = DeliveryStats()
        self._told: dict[tuple[str, str], str] = {}
        self._groups: dict[tuple[str, str], _Group] = {}
        self._lock = threading.Lock()
        self._queues: dict[str, queue.Queue[_Job | None]] = {}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._loaded = False

    # -- planning ---------------------------------------------------------------------------

    def _load(self) -> None:
        if self._loaded:
            return
        for (receiver, fp), (status, sent_at, group_key) in self.log.load().items():
            self._told[(receiver, fp)] = status
            group = self._groups.setdefault((receiver, group_key), _Group())
            if group.last_sent_at is None or sent_at > group.last_sent_at:
                group.last_sent_at = sent_at
        self._loaded = True

    def _view(self, alert: Alert, status: str, at: datetime, by_fp: Mapping[str, Alert]) -> AlertView:
        annotations = dict(alert.annotations)
        if alert.impacted and status == "firing":
            shown = [describe(by_fp[fp]) for fp in alert.impacted[:IMPACTED_SHOWN] if fp in by_fp]
            more = len(alert.impacted) - len(shown)
            annotations["impacted"] = ", ".join(shown) + (f" and {more} more" if more > 0 else "")
            annotations["impacted_count"] = str(len(alert.impacted))
        if status == "resolved" and alert.active and alert.suppressed_by:
            root = by_fp.get(alert.suppressed_by)
            annotations["suppressed_by"] = describe(root) if root else alert.suppressed_by
        ends = None
        if status == "resolved":
            ends = alert.resolved_at if alert.state == "resolved" and alert.resolved_at else at
        return AlertView(
            fingerprint=alert.fingerprint,
            status=status,
            labels=dict(alert.labels),
            annotations=annotations,
            starts_at=alert.fired_at or alert.active_since,
            ends_at=ends,
            generator_url=f"{self.external_url}/alerts#{alert.fingerprint}" if self.external_url else "",
        )

    def plan(self, alerts: Iterable[Alert], at: datetime) -> list[tuple[Receiver, Notification]]:
        """What to send now to each receiver; marks it told (delivery confirms or reverts)."""
        with self._lock:
            self._load()
            alerts = list(alerts)
            by_fp = {a.fingerprint: a for a in alerts}
            out: list[tuple[Receiver, Notification]] = []
            for receiver in self.receivers:
                views: list[AlertView] = []
                for alert in alerts:
                    told = self._told.get((receiver.name, alert.fingerprint))
                    notifiable = alert.state == "firing" and not alert.suppressed_by and not alert.silenced_by
                    if notifiable:
                        views.append(self._view(alert, "firing", at, by_fp))
                    elif told == "firing":
                        views.append(self._view(alert, "resolved", at, by_fp))
                if receiver.grouped:
                    out += self._grouped(receiver, views, at)
                elif views:
                    out.append((receiver, self._notification(receiver, "{}", {}, views)))
            for receiver, notification in out:
                for view in notification.alerts:
                    self._told[(receiver.name, view.fingerprint)] = view.status
            return out

    def _notification(
        self, receiver: Receiver, key: str, group_labels: dict[str, str], views: list[AlertView]
    ) -> Notification:
        return Notification(
            receiver=receiver.name,
            group_key=key,
            group_labels=group_labels,
            alerts=tuple(
                sorted(
                    views, key=lambda v: (v.status != "firing", v.labels.get("alertname", ""), v.fingerprint)
                )
            ),
            external_url=self.external_url,
        )

    def _grouped(
        self, receiver: Receiver, views: list[AlertView], at: datetime
    ) -> list[tuple[Receiver, Notification]]:
        groups: dict[str, tuple[dict[str, str], list[AlertView]]] = {}
        for view in views:
            labels = {k: view.labels.get(k, "") for k in receiver.group_by}
            key = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
            groups.setdefault(key, (labels, []))[1].append(view)
        out = []
        for key, (labels, members) in sorted(groups.items()):
            group = self._groups.setdefault((receiver.name, key), _Group())
            new = [v for v in members if self._told.get((receiver.name, v.fingerprint)) != v.status]
            firing = [v for v in members if v.status == "firing"]
            if group.last_sent_at is None:
                if not new:
                    continue
                group.first_new_at = group.first_new_at or at
                due = at - group.first_new_at >= receiver.group_wait
            elif new:
                due = at - group.last_sent_at >= receiver.group_interval
            else:
                due = bool(firing) and at - group.last_sent_at >= receiver.repeat_interval
            if due:
                group.last_sent_at, group.first_new_at = at, None
                out.append((receiver, self._notification(receiver, key, labels, members)))
        return out

    # -- delivery -----------------------------------------------------------------------------

    def dispatch(self, alerts: Iterable[Alert], at: datetime) -> int:
        """Plan and hand the notifications to the receivers' workers; returns how many."""
        planned = self.plan(alerts, at)
        for receiver, notification in planned:
            self._queue(receiver).put((notification, at))
        return len(planned)

    def _queue(self, receiver: Receiver) -> queue.Queue[_Job | None]:
        q = self._queues.get(receiver.name)
        if q is None:
            q = self._queues[receiver.name] = queue.Queue()
            thread = threading.Thread(
                target=self._work, args=(receiver, q), name=f"notify-{receiver.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return q

    def _work(self, receiver: Receiver, q: queue.Queue[_Job | None]) -> None:
        while True:
            job = q.get()
            try:
                if job is None:
                    return
                self.deliver(receiver, *job)
            finally:
                q.task_done()

    def deliver(self, receiver: Receiver, notification: Notification, at: datetime) -> bool:
        """Send with retries and backoff; record what the receiver was told, or revert it.

        ``at`` is the evaluation's time (what the lifecycle times are relative to); the send
        itself happens now, by the clock, which is what Alertmanager's ``endsAt`` of a firing
        alert is reckoned from."""
        name = receiver.name
        for attempt in range(self.retry_attempts):
            if self._stop.is_set():
                break
            try:
                receiver.notifier.send(notification, self.clock())
            except DeliveryError as exc:
                with self._lock:
                    self.stats.failed_attempts[name] = self.stats.failed_attempts.get(name, 0) + 1
                log.warning("notification to %s failed (attempt %d): %s", name, attempt + 1, exc)
                if attempt + 1 < self.retry_attempts:
                    self.sleep(min(self.retry_max_s, self.retry_base_s * 2**attempt))
                continue
            with self._lock:
                self.stats.sent[name] = self.stats.sent.get(name, 0) + 1
            try:
                self.log.record(name, notification, at)
            except Exception:
                log.exception("recording a notification to %s failed", name)
            return True
        with self._lock:
            self.stats.dropped[name] = self.stats.dropped.get(name, 0) + 1
            for view in notification.alerts:
                # Not told after all: the next evaluation plans it again (a resolve is owed to
                # a receiver that was told the alert fires).
                if self._told.get((name, view.fingerprint)) == view.status:
                    self._told[(name, view.fingerprint)] = (
                        "firing" if view.status == "resolved" else "unknown"
                    )
        log.error("notification to %s dropped after %d attempts", name, self.retry_attempts)
        return False

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every queued notification is delivered or dropped; False on timeout."""
        deadline = time.monotonic() + timeout
        for q in list(self._queues.values()):
            while q.unfinished_tasks:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.01)
        return True

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for q in self._queues.values():
            q.put(None)
        for thread in self._threads:
            thread.join(timeout)
