"""Fault injection at the store boundary: a client that raises what the driver raises when
ClickHouse is unreachable, overloaded, out of memory or out of disk, or when an insert's answer
is lost after the insert committed."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from flowsight.store import Store

_FAILING = ("query", "command", "insert_arrow", "query_arrow", "insert", "raw_stream")
INSERTS = ("insert_arrow", "insert", "command")
"""The calls that write (``command`` runs the loader's ``INSERT ... SELECT``)."""


def connection_refused() -> Exception:
    return OperationalError("Error HTTPConnectionPool(host='clickhouse', port=8123): connection refused")


def server_error(code: int, name: str, text: str) -> Exception:
    """A ClickHouse exception as the HTTP driver raises it (``DatabaseError``, code and name set)."""
    return DatabaseError(
        f"Received ClickHouse exception, code: {code}, server response: Code: {code}. "
        f"DB::Exception: {text}. ({name}) (version 24.8.4.13 (official build)) "
        "(for url http://clickhouse:8123)",
        code=code,
        name=name,
    )


def engine_error(code: int, name: str, text: str) -> Exception:
    """A ClickHouse exception as the embedded engine's backend raises it."""
    return DatabaseError(f"Code: {code}. DB::Exception: {text}. ({name})", code=code, name=name)


@dataclass(frozen=True)
class Fault:
    """What a call raises while the fault is on."""

    error: Callable[[], Exception]
    calls: tuple[str, ...] = _FAILING
    """The client methods that fail."""
    after: bool = False
    """The call runs (an insert commits) and then raises: the answer was lost, not the work."""
    tables: tuple[str, ...] = ()
    """When set, only inserts into these tables fail (unqualified names), and no other call."""

    def hits(self, call: str, args: tuple[Any, ...]) -> bool:
        if call not in self.calls:
            return False
        if not self.tables:
            return True
        return call in ("insert_arrow", "insert") and _table(args) in self.tables


def _table(args: tuple[Any, ...]) -> str:
    """The unqualified table an insert's arguments name."""
    return str(args[0]).rsplit(".", 1)[-1] if args else ""


DOWN = Fault(connection_refused)


class SwitchableClient:
    """Delegates to a real clickhouse-connect client until a fault is switched on."""

    def __init__(self, client: Any):
        self._client = client
        self._fault: Fault | None = None
        self._armed: tuple[Fault, str] | None = None
        self._lock = threading.Lock()
        self.failed_calls = 0
        self.committed_then_failed = 0
        """Calls that ran to the end and raised anyway (``Fault.after``)."""

    def go_down(self, *, from_insert_into: str | None = None) -> None:
        self.fail_with(DOWN, from_insert_into=from_insert_into)

    def fail_with(self, fault: Fault, *, from_insert_into: str | None = None) -> None:
        """Switch ``fault`` on now, or from the next insert into table ``from_insert_into`` on
        (that insert fails first: the outage starts at a known step of the loader's work)."""
        with self._lock:
            if from_insert_into is None:
                self._fault, self._armed = fault, None
            else:
                self._armed = (fault, from_insert_into)

    def come_back(self) -> None:
        with self._lock:
            self._fault = self._armed = None

    def _current(self, name: str, args: tuple[Any, ...]) -> Fault | None:
        with self._lock:
            if self._armed is not None and name == "insert_arrow" and _table(args) == self._armed[1]:
                self._fault, self._armed = self._armed[0], None
            return self._fault

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)
        if name not in _FAILING:
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            fault = self._current(name, args)
            if fault is None or not fault.hits(name, args):
                return target(*args, **kwargs)
            if fault.after:
                target(*args, **kwargs)
                with self._lock:
                    self.committed_then_failed += 1
            with self._lock:
                self.failed_calls += 1
            raise fault.error()

        return call

    def close(self) -> None:
        """The shared engine outlives a test's store."""


def switchable_store(engine: Store) -> tuple[Store, SwitchableClient]:
    client = SwitchableClient(engine.client)
    return Store(client, engine.database, embedded=True), client  # type: ignore[arg-type]
