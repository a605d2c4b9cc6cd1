"""Fault injection at the store boundary: a client that raises the driver's connection errors."""

from __future__ import annotations

import threading
from typing import Any

from clickhouse_connect.driver.exceptions import OperationalError

from flowsight.store import Store

_FAILING = ("query", "command", "insert_arrow", "query_arrow", "insert")


class SwitchableClient:
    """Delegates to a real clickhouse-connect client until switched off."""

    def __init__(self, client: Any):
        self._client = client
        self._down = threading.Event()
        self.failed_calls = 0

    def go_down(self) -> None:
        self._down.set()

    def come_back(self) -> None:
        self._down.clear()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)
        if name not in _FAILING:
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            if self._down.is_set():
                self.failed_calls += 1
                raise OperationalError(
                    "Error HTTPConnectionPool(host='clickhouse', port=8123): connection refused"
                )
            return target(*args, **kwargs)

        return call

    def close(self) -> None:
        """The shared engine outlives a test's store."""


def switchable_store(engine: Store) -> tuple[Store, SwitchableClient]:
    client = SwitchableClient(engine.client)
    return Store(client, engine.database, embedded=True), client  # type: ignore[arg-type]
