"""The ClickHouse connection every package reads and writes through.

``chdb://<dir>`` opens the embedded engine in-process; ``http(s)://`` reaches a server or
cluster with the same clickhouse-connect client. Connection failures surface as
:class:`StoreUnavailable` so callers can spool instead of failing; this class is also the
boundary where tests inject faults.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import clickhouse_connect
import numpy as np
import pyarrow as pa
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError

from flowsight import merge_priority

log = logging.getLogger(__name__)


class StoreUnavailable(Exception):
    """ClickHouse cannot be reached right now; the operation may be retried later."""


class Store:
    """A thin, thread-safe wrapper around one clickhouse-connect client."""

    def __init__(self, client: Client, database: str, *, embedded: bool):
        self.client = client
        self.database = database
        self.embedded = embedded
        # No lock here: the chDB backend serialises calls itself, and the HTTP client runs
        # without a session (autogenerate_session_id=False), so its queries may overlap.

    @classmethod
    def connect(
        cls, dsn: str, database: str, *, cluster: bool = False, merge_nice: int = merge_priority.DEFAULT_NICE
    ) -> Store:
        """Open a client for ``dsn`` (``chdb://dir`` or ``http(s)://...``).

        On a cluster, inserts into Distributed tables are made synchronous, so an acknowledged
        write is on its shard, not in a local queue. The embedded engine's merge threads run at
        niceness ``merge_nice`` (see :mod:`flowsight.merge_priority`; 0 leaves them as they are).
        """
        embedded = dsn.startswith("chdb://")
        if embedded:
            path = dsn[len("chdb://") :]
            if path:
                from pathlib import Path

                Path(path).mkdir(parents=True, exist_ok=True)
        options: dict[str, Any] = {} if embedded else {"autogenerate_session_id": False, "compress": "lz4"}
        if cluster:
            options["settings"] = {"distributed_foreground_insert": 1}
        try:
            client = clickhouse_connect.get_client(dsn=dsn, **options)
        except OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc
        if embedded:
            merge_priority.lower_merge_priority(merge_nice)
        return cls(client, database, embedded=embedded)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        """Run a statement that returns no rows (DDL, INSERT ... SELECT)."""
        return self._call(self.client.command, sql, parameters=parameters)

    def rows(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Sequence[Sequence[Any]]:
        """Run a query and return its rows as tuples."""
        return self._call(self.client.query, sql, parameters=parameters).result_rows

    def dicts(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a query and return its rows as dicts keyed by column name."""
        result = self._call(self.client.query, sql, parameters=parameters)
        names = result.column_names
        return [dict(zip(names, row, strict=True)) for row in result.result_rows]

    def arrow(self, sql: str, parameters: Mapping[str, Any] | None = None) -> pa.Table:
        """Run a query and return an Arrow table (columnar, no per-row Python objects)."""
        return self._call(self.client.query_arrow, sql, parameters=parameters)

    def uint64_rows(
        self, sql: str, columns: int, parameters: Mapping[str, Any] | None = None, block_bytes: int = 16 << 20
    ) -> Iterator[np.ndarray]:
        """Run a query of ``columns`` UInt64 columns and yield its rows as ``(n, columns)`` arrays
        of at most ``block_bytes``, streamed in RowBinary (fixed-width rows: no parsing), so a
        large result never sits in memory whole. Arrow output cannot stream from the embedded
        engine (clickhouse-connect materializes the whole Arrow result there first: about 3 GiB
        for 49M pairs of hashes)."""
        width = 8 * columns
        block_bytes -= block_bytes % width
        stream = self._call(self.client.raw_stream, sql, parameters=parameters, fmt="RowBinary")
        pending = b""
        try:
            with stream:
                while chunk := stream.read(block_bytes):
                    data = pending + chunk if pending else chunk
                    whole = len(data) - len(data) % width
                    pending = data[whole:]
                    if whole:
                        yield np.frombuffer(data, dtype="<u8", count=whole // 8).reshape(-1, columns)
        except OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc
        if pending:
            raise StoreUnavailable(f"the result ended within a row ({len(pending)} of {width} bytes)")

    def insert_arrow(self, table: str, data: pa.Table, settings: Mapping[str, Any] | None = None) -> None:
        """Insert an Arrow table in one statement."""
        if data.num_rows:
            self._call(self.client.insert_arrow, table, data, settings=settings)

    def ping(self) -> bool:
        try:
            self.command("SELECT 1")
        except StoreUnavailable:
            return False
        return True

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # closing is best effort at shutdown
            log.debug("closing the ClickHouse client failed", exc_info=True)
