"""The ClickHouse side of a sharded, replicated install: cluster and macros configuration.

flowsight's cluster DDL (:mod:`flowsight.ddl`) names no host: local tables are
``Replicated*MergeTree('/clickhouse/tables/{shard}/<db>/<table>_local', '{replica}')`` and
queries go through ``Distributed(<cluster>, ...)`` tables. What makes that DDL a concrete
N-shard x M-replica layout is each server's configuration: the ``remote_servers`` entry
listing the cluster's shards and replicas (the same on every server) and the ``macros``
naming the server's own shard and replica. This module renders both, and expands the DDL
as one server sees it, so the layout can be checked before a server runs it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.sax.saxutils import escape

MACRO = re.compile(r"\{(shard|replica)\}")


@dataclass(frozen=True)
class Replica:
    """One ClickHouse server: its place in the cluster and where it listens."""

    shard: int
    replica: int
    host: str
    port: int = 9000

    @property
    def macros(self) -> dict[str, str]:
        return {"shard": f"{self.shard:02d}", "replica": self.host}


@dataclass(frozen=True)
class ClusterLayout:
    """``shards`` x ``replicas`` servers named by ``host_pattern`` (``{shard}`` and ``{replica}``, from 1)."""

    name: str
    shards: int
    replicas: int
    host_pattern: str = "clickhouse-{shard}-{replica}"
    port: int = 9000

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.name):
            raise ValueError(f"cluster: {self.name!r} is not a ClickHouse identifier")
        if self.shards < 1 or self.replicas < 1:
            raise ValueError("shards and replicas must each be at least 1")
        hosts = [s.host for s in self.servers]
        if len(set(hosts)) != len(hosts):
            raise ValueError("host_pattern: must name every server apart (use {shard} and {replica})")

    @property
    def servers(self) -> list[Replica]:
        return [
            Replica(s, r, self.host_pattern.format(shard=s, replica=r), self.port)
            for s in range(1, self.shards + 1)
            for r in range(1, self.replicas + 1)
        ]

    def remote_servers_xml(self) -> str:
        """The ``remote_servers`` section, the same on every server of the cluster."""
        lines = ["<clickhouse>", "    <remote_servers>", f"        <{self.name}>"]
        for shard in range(1, self.shards + 1):
            lines += [
                "            <shard>",
                "                <internal_replication>true</internal_replication>",
            ]
            for server in (s for s in self.servers if s.shard == shard):
                lines += [
                    "                <replica>",
                    f"                    <host>{escape(server.host)}</host>",
                    f"                    <port>{server.port}</port>",
                    "                </replica>",
                ]
            lines.append("            </shard>")
        lines += [f"        </{self.name}>", "    </remote_servers>", "</clickhouse>"]
        return "\n".join(lines) + "\n"

    @staticmethod
    def macros_xml(server: Replica) -> str:
        """The ``macros`` section of one server."""
        body = "".join(f"        <{k}>{escape(v)}</{k}>\n" for k, v in server.macros.items())
        return f"<clickhouse>\n    <macros>\n{body}    </macros>\n</clickhouse>\n"

    def files(self) -> dict[str, str]:
        """File name -> content: the cluster section and one macros file per server."""
        out = {"remote_servers.xml": self.remote_servers_xml()}
        for server in self.servers:
            out[f"macros-{server.host}.xml"] = self.macros_xml(server)
        return out


def expand(sql: str, server: Replica) -> str:
    """``sql`` with the ``{shard}`` and ``{replica}`` macros as ``server`` substitutes them."""
    return MACRO.sub(lambda m: server.macros[m.group(1)], sql)


def replicated_paths(sql: str) -> dict[str, str]:
    """Local table -> the Keeper path of its Replicated engine, from expanded DDL."""
    found = re.findall(
        r"CREATE TABLE IF NOT EXISTS (\S+) ON CLUSTER \S+\n\(.*?\)\nENGINE = Replicated\w*\('([^']+)', '([^']+)'",
        sql,
        flags=re.S,
    )
    return {table: path for table, path, _replica in found}
