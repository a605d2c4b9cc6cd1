"""The ClickHouse connection every package reads and writes through.

``chdb://<dir>`` opens the embedded engine in-process; ``http(s)://`` reaches a server or
cluster with the same clickhouse-connect client. Connection failures surface as
:class:`StoreUnavailable`; an insert refused for its content surfaces as
:class:`StoreRejected` and any other failure of an insert (a full disk, too many parts, a memory
limit) as :class:`StoreUnavailable`, so the loader knows what to retry. This class is also the
boundary where tests inject faults.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import clickhouse_connect
import numpy as np
import pyarrow as pa
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, DataError, OperationalError

from flowsight import merge_priority

log = logging.getLogger(__name__)


class StoreUnavailable(Exception):
    """ClickHouse cannot do it right now; the operation may be retried later."""


class StoreRejected(Exception):
    """ClickHouse refused an insert for its content (a type or column mismatch): retrying the
    same rows cannot succeed."""


REJECTED_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        8,  # THERE_IS_NO_COLUMN
        10,  # NOT_FOUND_COLUMN_IN_BLOCK
        16,  # NO_SUCH_COLUMN_IN_TABLE
        20,  # NUMBER_OF_COLUMNS_DOESNT_MATCH
        26,  # CANNOT_PARSE_QUOTED_STRING
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        43,  # ILLEGAL_TYPE_OF_ARGUMENT
        44,  # ILLEGAL_COLUMN
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        128,  # TOO_LARGE_ARRAY_SIZE
        131,  # TOO_LARGE_STRING_SIZE
        190,  # SIZES_OF_ARRAYS_DONT_MATCH
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
        407,  # DECIMAL_OVERFLOW
    }
)
"""ClickHouse error codes that mean an insert's rows themselves are at fault. Every other
failure of an insert (connection, timeout, ``TOO_MANY_PARTS``, ``MEMORY_LIMIT_EXCEEDED``,
``NOT_ENOUGH_SPACE``, a table not there yet) is worth retrying."""

_CODE = re.compile(r"Code: (\d+)\.")


def error_code(exc: BaseException) -> int | None:
    """The ClickHouse error code an exception carries (the driver's, else its message's), if any."""
    code = getattr(exc, "code", None)
    if isinstance(code, int) and code:
        return code
    match = _CODE.search(str(exc))
    return int(match.group(1)) if match else None


class Store:
    """A thin, thread-safe wrapper around one clickhouse-connect client."""

    def __init__(self, client: Client, database: str, *, embedded: bool, dsn: str | None = None):
        self.client = client
        self.database = database
        self.embedded = embedded
        self.dsn = dsn
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
        return cls(client, database, embedded=embedded, dsn=dsn)

    def another(self) -> Store:
        """A second handle on the same database, for work that must not queue behind this
        one's: the embedded engine serialises the calls of one handle (a query would wait for a
        running insert), not those of two. A server client runs calls side by side already."""
        if not self.embedded or self.dsn is None:
            return self
        return Store(clickhouse_connect.get_client(dsn=self.dsn), self.database, embedded=True, dsn=self.dsn)

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
        """Insert an Arrow table in one statement.

        Raises:
            StoreRejected: the rows do not fit the table (:data:`REJECTED_CODES`, or the driver
                could not convert them).
            StoreUnavailable: any other failure; the insert may be retried.
        """
        if not data.num_rows:
            return
        try:
            self.client.insert_arrow(table, data, settings=dict(settings or {}))
        except DataError as exc:
            raise StoreRejected(str(exc)) from exc
        except ClickHouseError as exc:
            if error_code(exc) in REJECTED_CODES:
                raise StoreRejected(str(exc)) from exc
            raise StoreUnavailable(str(exc)) from exc
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise StoreRejected(f"{type(exc).__name__}: {exc}") from exc

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
