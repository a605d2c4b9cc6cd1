"""A 2-shard x 2-replica ClickHouse cluster: its configuration files and the DDL each server runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowsight import migrations
from flowsight.app import MIGRATIONS
from flowsight.cluster_layout import ClusterLayout, expand, replicated_paths
from flowsight.ddl import Schema

GOLDEN = Path(__file__).parent / "golden" / "cluster-2x2"
LAYOUT = ClusterLayout("retail", shards=2, replicas=2)
DDL = "".join(sql.rstrip() + ";\n\n" for sql in migrations.plan(Schema("flowsight", "retail"), MIGRATIONS))


def test_the_configuration_of_two_shards_by_two_replicas_matches_the_golden_files() -> None:
    files = LAYOUT.files()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (GOLDEN / name).write_text(text)
    assert sorted(files) == sorted(p.name for p in GOLDEN.glob("*.xml"))
    for name, text in files.items():
        assert text == (GOLDEN / name).read_text(), name


def test_the_cluster_lists_each_shard_with_its_own_replicas() -> None:
    text = LAYOUT.remote_servers_xml()
    assert text.count("<shard>") == 2 and text.count("<replica>") == 4
    first, second = text.split("</shard>")[:2]
    assert "clickhouse-1-1" in first and "clickhouse-1-2" in first and "clickhouse-2-" not in first
    assert "clickhouse-2-1" in second and "clickhouse-2-2" in second
    assert "<internal_replication>true</internal_replication>" in first


def test_replicas_of_a_shard_share_every_keeper_path_and_shards_do_not() -> None:
    seen = {(s.shard, s.replica): replicated_paths(expand(DDL, s)) for s in LAYOUT.servers}
    local_tables = {
        "flowsight.events_local",
        "flowsight.order_state_local",
        "flowsight.dead_letters_local",
        "flowsight.schema_migrations_local",
    }
    assert local_tables <= set(seen[(1, 1)])
    assert seen[(1, 1)] == seen[(1, 2)]
    assert seen[(2, 1)] == seen[(2, 2)]
    for table, path in seen[(1, 1)].items():
        assert seen[(2, 1)][table] != path
        assert "{" not in path
    assert seen[(1, 1)]["flowsight.events_local"] == "/clickhouse/tables/01/flowsight/events_local"


def test_each_server_names_itself_apart_from_the_other_replica_of_its_shard() -> None:
    names = {}
    for server in LAYOUT.servers:
        expanded = expand(DDL, server)
        assert "{shard}" not in expanded and "{replica}" not in expanded
        names.setdefault(server.shard, set()).add(server.macros["replica"])
    assert names == {1: {"clickhouse-1-1", "clickhouse-1-2"}, 2: {"clickhouse-2-1", "clickhouse-2-2"}}


def test_the_distributed_tables_name_the_configured_cluster() -> None:
    assert "<retail>" in LAYOUT.remote_servers_xml()
    distributed = [line for line in DDL.splitlines() if "Distributed(" in line]
    assert distributed and all(
        line.startswith("ENGINE = Distributed(retail, flowsight, ") for line in distributed
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"name": "re-tail"}, "cluster", id="a cluster name that is no identifier"),
        pytest.param({"shards": 0}, "at least 1", id="no shards"),
        pytest.param({"host_pattern": "clickhouse-{shard}"}, "host_pattern", id="hosts that collide"),
    ],
)
def test_a_layout_that_cannot_work_is_refused(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"name": "retail", "shards": 2, "replicas": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        ClusterLayout(**args)  # type: ignore[arg-type]


def test_the_command_writes_the_golden_files(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flowsight.cli", "cluster-config", "--cluster", "retail",
         "--shards", "2", "--replicas", "2", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert result.stdout.count("wrote ") == 5
    for golden in GOLDEN.glob("*.xml"):
        assert (tmp_path / golden.name).read_text() == golden.read_text()
