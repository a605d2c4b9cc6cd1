"""Table definitions rendered as DDL for one node or ``ON CLUSTER`` a named cluster.

On a single node a table is created as written. With a cluster, each table becomes a local
``Replicated*`` table on every replica plus a ``Distributed`` table of the public name, and
materialized views read and write the local tables, so per-order state stays on the shard that
holds the order (data is sharded by the table's ``sharding_key``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Table:
    """A ClickHouse table as this project declares it."""

    name: str
    columns: str
    engine: str
    order_by: str | None = None
    partition_by: str | None = None
    settings: str | None = None
    sharding_key: str = "rand()"
    indexes: str = ""


@dataclass(frozen=True)
class MaterializedView:
    """A materialized view from ``source`` into ``target``; ``select`` names its source ``{source}``."""

    name: str
    source: str
    target: str
    select: str


@dataclass(frozen=True)
class Schema:
    """Where tables live: the database and, optionally, the cluster."""

    database: str
    cluster: str | None = None

    def table(self, name: str) -> str:
        """The qualified name queries and inserts use (the Distributed table on a cluster)."""
        return f"{self.database}.{name}"

    def local(self, name: str) -> str:
        return f"{self.database}.{name}_local" if self.cluster else f"{self.database}.{name}"

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER {self.cluster}" if self.cluster else ""

    def create_database(self) -> str:
        return f"CREATE DATABASE IF NOT EXISTS {self.database}{self.on_cluster}"

    def create(self, obj: Table | MaterializedView) -> list[str]:
        """The statements that create ``obj`` here."""
        if isinstance(obj, MaterializedView):
            return [self._create_view(obj)]
        return self._create_table(obj)

    def _engine(self, table: Table) -> str:
        if not self.cluster or "MergeTree" not in table.engine:
            return table.engine
        family, _, args = table.engine.partition("(")
        args = args.rstrip(")")
        path = f"'/clickhouse/tables/{{shard}}/{self.database}/{table.name}_local', '{{replica}}'"
        return f"Replicated{family}({path}{', ' + args if args else ''})"

    def _create_table(self, table: Table) -> list[str]:
        body = table.columns.strip()
        if table.indexes:
            body += ",\n    " + table.indexes.strip()
        parts = [f"CREATE TABLE IF NOT EXISTS {self.local(table.name)}{self.on_cluster}\n(\n    {body}\n)"]
        parts.append(f"ENGINE = {self._engine(table)}")
        if table.partition_by:
            parts.append(f"PARTITION BY {table.partition_by}")
        if table.order_by:
            parts.append(f"ORDER BY {table.order_by}")
        if table.settings:
            parts.append(f"SETTINGS {table.settings}")
        statements = ["\n".join(parts)]
        if self.cluster:
            statements.append(
                f"CREATE TABLE IF NOT EXISTS {self.table(table.name)}{self.on_cluster} "
                f"AS {self.local(table.name)}\n"
                f"ENGINE = Distributed({self.cluster}, {self.database}, {table.name}_local, {table.sharding_key})"
            )
        return statements

    def _create_view(self, view: MaterializedView) -> str:
        select = view.select.strip().format(source=self.local(view.source))
        return (
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {self.local(view.name)}{self.on_cluster} "
            f"TO {self.local(view.target)}\nAS {select}"
        )
