"""A real Prometheus Alertmanager (Debian's prometheus-alertmanager) on a free loopback port.

Import the ``alertmanager`` fixture into a test module or conftest, or use
:class:`AlertmanagerProcess` directly (for example with a webhook receiver).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import pytest

from tests.server import free_port

DEBIAN_BINARY = "/usr/bin/prometheus-alertmanager"


def find_alertmanager() -> str | None:
    """The Alertmanager binary's path, or None when the package is not installed."""
    found = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if found:
        return found
    return DEBIAN_BINARY if os.access(DEBIAN_BINARY, os.X_OK) else None


def alertmanager_config(webhook_url: str | None = None, group_wait: str = "0s") -> str:
    """A minimal configuration: one route to one receiver, with a webhook only if ``webhook_url``."""
    receiver = "  - name: sink\n"
    if webhook_url:
        receiver += (
            f"    webhook_configs:\n      - url: {json.dumps(webhook_url)}\n        send_resolved: true\n"
        )
    return (
        "route:\n"
        "  receiver: sink\n"
        f"  group_wait: {group_wait}\n"
        "  group_interval: 1s\n"
        "  repeat_interval: 1h\n"
        "receivers:\n" + receiver
    )


class AlertmanagerProcess:
    """Starts and stops one Alertmanager with gossip off and its own storage directory."""

    def __init__(
        self,
        workdir: Path,
        webhook_url: str | None = None,
        group_wait: str = "0s",
        port: int | None = None,
    ):
        self.workdir = workdir
        self.port = port or free_port()
        self.config_file = workdir / "alertmanager.yml"
        self.storage = workdir / "alertmanager-data"
        self.log = workdir / "alertmanager.log"
        self.webhook_url = webhook_url
        self.group_wait = group_wait
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> AlertmanagerProcess:
        """Run Alertmanager and wait until ``/-/ready`` answers 200."""
        binary = find_alertmanager()
        assert binary, "Debian's prometheus-alertmanager package is needed (make system-deps installs it)"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage.mkdir(exist_ok=True)
        self.config_file.write_text(alertmanager_config(self.webhook_url, self.group_wait))
        self._log_file = self.log.open("ab")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={self.config_file}",
                f"--storage.path={self.storage}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self._close_log()
                raise AssertionError(f"alertmanager exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):  # not listening yet
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"alertmanager not ready in {timeout}s:\n{self.log_tail()}")
            time.sleep(0.1)

    def alerts(
        self,
        active: bool = True,
        silenced: bool = True,
        inhibited: bool = True,
        unprocessed: bool = True,
        filter: Sequence[str] = (),
        receiver: str | None = None,
    ) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts``: the alerts Alertmanager holds (resolved ones are never listed).

        Args:
            filter: label matchers such as ``'alertname="SystemUnhealthy"'`` (all must match).
            receiver: a regular expression the alert's receivers must match.
        """
        params: list[tuple[str, str]] = [
            ("active", _flag(active)),
            ("silenced", _flag(silenced)),
            ("inhibited", _flag(inhibited)),
            ("unprocessed", _flag(unprocessed)),
            *(("filter", matcher) for matcher in filter),
        ]
        if receiver is not None:
            params.append(("receiver", receiver))
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts?{query}", timeout=5) as response:
            result: list[dict[str, Any]] = json.loads(response.read())
        return result

    def wait_until(
        self,
        condition: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 20.0,
        **query: Any,
    ) -> list[dict[str, Any]]:
        """Poll :meth:`alerts` (with ``query``) until ``condition`` holds for the list; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            alerts = self.alerts(**query)
            if condition(alerts):
                return alerts
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout}s; alerts: {alerts}")
            time.sleep(0.1)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate Alertmanager (SIGTERM, then SIGKILL if it does not exit within ``timeout``)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._close_log()

    def __enter__(self) -> AlertmanagerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def _flag(value: bool) -> str:
    return "true" if value else "false"


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[AlertmanagerProcess]:
    """A running Alertmanager whose receiver has no integrations (it only holds alerts)."""
    process = AlertmanagerProcess(tmp_path / "alertmanager").start()
    yield process
    process.stop()
