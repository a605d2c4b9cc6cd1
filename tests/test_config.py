"""Configuration loading: workflow and topology files, settings, and ``flowsight check-config``.

Valid files live in ``configs/good``, files invalid in one known way in ``configs/bad``; every bad
file has a row in one of the tables below, and a test keeps the folder and the tables in step.
"""

from __future__ import annotations

import dataclasses
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from flowsight.cli import main
from flowsight.configfiles import (
    ConfigIssue,
    ConfigurationError,
    check_file,
    format_loc,
    load_topology,
    load_workflows,
)
from flowsight.settings import Settings, load_settings
from flowsight.topology import DEFAULT_TOPOLOGY, System, Topology, find_cycle
from flowsight.workflows import DEFAULT_WORKFLOWS, Stage, Workflow

CONFIGS = Path(__file__).parent / "configs"
GOOD = CONFIGS / "good"
BAD = CONFIGS / "bad"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No FLOWSIGHT_* variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("FLOWSIGHT_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def only_issue(exc: pytest.ExceptionInfo[ConfigurationError]) -> ConfigIssue:
    assert len(exc.value.issues) == 1, exc.value.issues
    return exc.value.issues[0]


# -- workflows and topology files map to the frozen domain model ------------------------------


def test_retail_workflows_file_equals_the_built_in_defaults() -> None:
    catalog = load_workflows(GOOD / "retail-workflows.yaml")

    assert catalog.names() == DEFAULT_WORKFLOWS.names() == ["order_to_cash", "return_to_refund"]
    for loaded, default in zip(catalog, DEFAULT_WORKFLOWS, strict=True):
        assert loaded.stages == default.stages
        assert [s.sla for s in loaded.stages] == [s.sla for s in default.stages]
        assert loaded.terminal_stages == default.terminal_stages
        assert loaded.completion_deadline == default.completion_deadline
    assert catalog == DEFAULT_WORKFLOWS


def test_minimal_custom_workflow_maps_every_field() -> None:
    catalog = load_workflows(GOOD / "minimal-workflow.yaml")

    assert catalog.workflows == (
        Workflow(
            name="quote_to_order",
            stages=(
                Stage("quote_sent", "crm", None, True),
                Stage("order_placed", "oms", timedelta(minutes=90), True),
            ),
            terminal_stages=frozenset({"order_placed"}),
            completion_deadline=timedelta(days=1),
        ),
    )
    assert catalog.get("quote_to_order") is catalog.workflows[0]
    assert catalog.workflows[0].previous("order_placed") == Stage("quote_sent", "crm")


def test_loaded_workflows_are_frozen() -> None:
    workflow = load_workflows(GOOD / "minimal-workflow.yaml").workflows[0]

    with pytest.raises(dataclasses.FrozenInstanceError):
        workflow.name = "renamed"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        workflow.stages[1].sla = None  # type: ignore[misc]


def test_retail_topology_file_equals_the_built_in_default() -> None:
    topology = load_topology(GOOD / "retail-topology.yaml")

    assert topology.systems == DEFAULT_TOPOLOGY.systems
    assert topology == DEFAULT_TOPOLOGY
    with pytest.raises(dataclasses.FrozenInstanceError):
        topology.systems[0].name = "renamed"  # type: ignore[misc]


# -- bad workflow and topology files ------------------------------------------------------------

# (file, field path, reason fragment, line)
BAD_WORKFLOWS = [
    pytest.param(
        "workflows-unknown-field.yaml",
        "workflows[0].stages[1].sal",
        "unknown field",
        9,
        id="a misspelt field is an unknown field",
    ),
    pytest.param(
        "workflows-invalid-duration.yaml",
        "workflows[0].stages[1].sla",
        "invalid duration '5x'",
        9,
        id="an sla of 5x is an invalid duration",
    ),
    pytest.param(
        "workflows-duplicate-stage.yaml",
        "workflows[0].stages[2].name",
        "duplicate stage 'quote_sent'",
        10,
        id="a stage named twice is a duplicate stage",
    ),
    pytest.param(
        "workflows-terminal-not-a-stage.yaml",
        "workflows[0].terminal_stages[1]",
        "'order_shipped' is not a stage of workflow 'quote_to_order'",
        12,
        id="a terminal stage missing from the stages is rejected",
    ),
    pytest.param(
        "workflows-sla-on-first-stage.yaml",
        "workflows[0].stages[0].sla",
        "the first stage has no previous stage",
        7,
        id="an sla on the first stage is rejected",
    ),
    pytest.param(
        "workflows-missing-deadline.yaml",
        "workflows[0].completion_deadline",
        "Field required",
        3,
        id="a workflow without completion_deadline is reported at the workflow",
    ),
    pytest.param(
        "workflows-wrong-version.yaml",
        "version",
        "Input should be 1",
        1,
        id="version 2 is not a known version",
    ),
    pytest.param(
        "workflows-invalid-yaml.yaml",
        "",
        "invalid YAML: mapping values are not allowed here",
        8,
        id="invalid YAML is reported with its line",
    ),
    pytest.param(
        "workflows-empty-stages.yaml",
        "workflows[0].stages",
        "at least 1 item",
        4,
        id="an empty stages list is rejected",
    ),
    pytest.param(
        "workflows-sla-too-large.yaml",
        "workflows[0].stages[1].sla",
        "too large",
        9,
        id="an sla too large for a timedelta is an error, not a crash",
    ),
    pytest.param(
        "workflows-boolean-sla.yaml",
        "workflows[0].stages[1].sla",
        "expected a duration",
        9,
        id="an sla of yes is not a duration of one second",
    ),
]

BAD_TOPOLOGIES = [
    pytest.param(
        "topology-unknown-dependency.yaml",
        "systems[1].depends_on[0]",
        "unknown system 'middleware'",
        5,
        id="depending on an undeclared system is rejected",
    ),
    pytest.param(
        "topology-self-dependency.yaml",
        "systems[1].depends_on[1]",
        "a system cannot depend on itself",
        5,
        id="a system depending on itself is rejected",
    ),
    pytest.param(
        "topology-cycle.yaml",
        "systems[1].depends_on",
        "dependency cycle: a -> b -> c -> a",
        5,
        id="a cycle of three systems is reported as the closed path",
    ),
    pytest.param(
        "topology-duplicate-system.yaml",
        "systems[2].name",
        "duplicate system 'oms'",
        5,
        id="a system declared twice is a duplicate system",
    ),
]


@pytest.mark.parametrize(("name", "path", "reason", "line"), BAD_WORKFLOWS)
def test_bad_workflows_file_names_field_reason_and_line(name: str, path: str, reason: str, line: int) -> None:
    with pytest.raises(ConfigurationError) as exc:
        load_workflows(BAD / name)

    issue = only_issue(exc)
    assert (issue.source, issue.path, issue.line) == (str(BAD / name), path, line)
    assert reason in issue.reason


@pytest.mark.parametrize(("name", "path", "reason", "line"), BAD_TOPOLOGIES)
def test_bad_topology_file_names_field_reason_and_line(name: str, path: str, reason: str, line: int) -> None:
    with pytest.raises(ConfigurationError) as exc:
        load_topology(BAD / name)

    issue = only_issue(exc)
    assert (issue.source, issue.path, issue.line) == (str(BAD / name), path, line)
    assert reason in issue.reason


def test_every_problem_of_one_workflows_file_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "workflows.yaml",
        "version: 1\n"
        "workflows:\n"
        "  - name: quote_to_order\n"
        "    stages:\n"
        "      - name: quote_sent\n"
        "        owner: crm\n"
        "        sla: 5m\n"
        "      - name: quote_sent\n"
        "        owner: oms\n"
        "    terminal_stages: [order_placed]\n"
        "    completion_deadline: 24h\n",
    )

    with pytest.raises(ConfigurationError) as exc:
        load_workflows(path)

    assert [(i.path, i.line) for i in exc.value.issues] == [
        ("workflows[0].stages[0].sla", 7),
        ("workflows[0].stages[1].name", 8),
        ("workflows[0].terminal_stages[0]", 10),
    ]
    assert str(exc.value).splitlines() == [
        f"{path}:7: workflows[0].stages[0].sla: the first stage has no previous stage to measure an SLA from",
        f"{path}:8: workflows[0].stages[1].name: duplicate stage 'quote_sent'",
        f"{path}:10: workflows[0].terminal_stages[0]: 'order_placed' is not a stage of workflow "
        "'quote_to_order'",
    ]


def test_self_dependency_does_not_hide_a_cycle(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "topology.yaml",
        "version: 1\n"
        "systems:\n"
        "  - name: a\n"
        "    depends_on: [a]\n"
        "  - name: b\n"
        "    depends_on: [c]\n"
        "  - name: c\n"
        "    depends_on: [b]\n",
    )

    with pytest.raises(ConfigurationError) as exc:
        load_topology(path)

    assert [(i.path, i.reason) for i in exc.value.issues] == [
        ("systems[0].depends_on[0]", "a system cannot depend on itself"),
        ("systems[1].depends_on", "dependency cycle: b -> c -> b"),
    ]


def test_unreadable_file_is_a_configuration_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"

    with pytest.raises(ConfigurationError) as exc:
        load_workflows(missing)

    assert only_issue(exc) == ConfigIssue(str(missing), "", "cannot read: No such file or directory")


@pytest.mark.parametrize(
    ("loc", "expected"),
    [
        pytest.param(("workflows", 0, "stages", 2, "sla"), "workflows[0].stages[2].sla", id="nested path"),
        pytest.param(("version",), "version", id="top-level field"),
        pytest.param((), "", id="the root is empty"),
    ],
)
def test_format_loc_writes_dotted_paths_with_indexes(loc: tuple[str | int, ...], expected: str) -> None:
    assert format_loc(loc) == expected


# -- topology graph ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("shipping", ["wms", "erp", "middleware"], id="shipping depends on wms, erp, middleware"),
        pytest.param("wms", ["erp", "middleware"], id="wms depends on erp then middleware"),
        pytest.param("crm", ["oms"], id="crm depends on oms only"),
        pytest.param("middleware", [], id="middleware depends on nothing"),
        pytest.param("unknown", [], id="an unknown system has no upstream"),
    ],
)
def test_default_upstream_is_transitive_and_nearest_first(name: str, expected: list[str]) -> None:
    assert DEFAULT_TOPOLOGY.upstream(name) == expected


def test_upstream_lists_a_shared_dependency_once_after_nearer_ones() -> None:
    topology = Topology(
        (
            System("a", ("b", "c")),
            System("b", ("d",)),
            System("c", ("d",)),
            System("d", ("e",)),
            System("e"),
        )
    )

    assert topology.upstream("a") == ["b", "c", "d", "e"]


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        pytest.param({"a": ["b"], "b": ["c"], "c": []}, None, id="a chain has no cycle"),
        pytest.param({"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []}, None, id="a diamond has no cycle"),
        pytest.param(
            {"a": ["b"], "b": ["c"], "c": ["a"]}, ["a", "b", "c", "a"], id="a three-system cycle is closed"
        ),
        pytest.param({"a": ["a"]}, ["a", "a"], id="a self-loop is a cycle of one"),
        pytest.param(
            {"x": ["y"], "y": [], "a": ["b"], "b": ["a"]},
            ["a", "b", "a"],
            id="a cycle not reachable from the first system is found",
        ),
        pytest.param(
            {"x": ["a"], "a": ["b"], "b": ["a"]},
            ["a", "b", "a"],
            id="the cycle path starts where the cycle starts, not at its entry",
        ),
        pytest.param({"a": ["ghost"]}, None, id="an undeclared dependency is not a cycle"),
    ],
)
def test_find_cycle_returns_a_closed_path_or_none(
    edges: dict[str, list[str]], expected: list[str] | None
) -> None:
    assert find_cycle(edges) == expected


# -- settings ---------------------------------------------------------------------------------


def test_settings_defaults() -> None:
    settings = load_settings()

    assert (settings.host, settings.port, settings.database, settings.cluster) == (
        "127.0.0.1",
        4318,
        "flowsight",
        None,
    )
    assert settings.data_dir == Path("flowsight-data")
    assert settings.dsn == f"chdb://{Path('flowsight-data/clickhouse').resolve()}"
    assert settings.embedded is True
    assert settings.wal_path == Path("flowsight-data/wal")
    assert settings.correlation_keys == ("order.id", "order_id", "correlation.id", "app.order.id")
    assert settings.max_body_bytes == 16 * 1024 * 1024
    assert settings.log_level == "info"
    assert settings.engine_merge_nice == 10
    assert settings.validation_pool_size == max(1, len(os.sched_getaffinity(0)) - 1)


def test_validation_threads_when_set_are_the_pool_size() -> None:
    assert Settings(validation_threads=3).validation_pool_size == 3


def test_good_settings_file_loads_every_value() -> None:
    settings = load_settings(GOOD / "settings.yaml")

    assert settings.model_dump(include={"host", "port", "data_dir", "database", "log_level"}) == {
        "host": "0.0.0.0",
        "port": 9000,
        "data_dir": Path("/var/lib/flowsight"),
        "database": "retail",
        "log_level": "debug",
    }
    assert settings.dsn == "http://flowsight:secret@clickhouse:8123"
    assert settings.embedded is False
    assert settings.correlation_keys == ("order.id", "return.id")
    assert settings.max_events_per_request == 1000
    assert settings.wal_path == Path("/var/lib/flowsight/wal")


@pytest.mark.parametrize(
    ("file_text", "env", "flags", "expected"),
    [
        pytest.param(None, {}, {}, ("127.0.0.1", 4318), id="nothing set gives the defaults"),
        pytest.param(
            "host: 10.0.0.1\nport: 9000\n", {}, {}, ("10.0.0.1", 9000), id="the file beats the defaults"
        ),
        pytest.param(
            "host: 10.0.0.1\nport: 9000\n",
            {"FLOWSIGHT_PORT": "9100"},
            {},
            ("10.0.0.1", 9100),
            id="the environment beats the file for the settings it names only",
        ),
        pytest.param(
            "port: 9000\n",
            {"FLOWSIGHT_PORT": "9100"},
            {"port": 9200},
            ("127.0.0.1", 9200),
            id="a flag beats the environment and the file",
        ),
        pytest.param(
            "port: 9000\n",
            {"FLOWSIGHT_PORT": "9100"},
            {"port": None, "host": None},
            ("127.0.0.1", 9100),
            id="a flag left unset leaves the environment in force",
        ),
        pytest.param(
            "port: abc\n",
            {"FLOWSIGHT_PORT": "9100"},
            {},
            ("127.0.0.1", 9100),
            id="an invalid file value the environment replaces is never used",
        ),
    ],
)
def test_settings_precedence(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    file_text: str | None,
    env: dict[str, str],
    flags: dict[str, Any],
    expected: tuple[str, int],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = write(tmp_path, "settings.yaml", file_text) if file_text is not None else None

    settings = load_settings(config, **flags)

    assert (settings.host, settings.port) == expected


def test_flowsight_config_names_the_settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWSIGHT_CONFIG", str(write(tmp_path, "s.yaml", "database: from_file\n")))

    assert load_settings().database == "from_file"


@pytest.mark.parametrize(
    ("file_text", "env", "source", "path", "reason"),
    [
        pytest.param(
            None,
            {"FLOWSIGHT_PORT": "abc"},
            "environment FLOWSIGHT_PORT",
            "port",
            "valid integer",
            id="an invalid environment value names the variable",
        ),
        pytest.param(
            "port: 9000\n",
            {"FLOWSIGHT_PORT": "abc"},
            "environment FLOWSIGHT_PORT",
            "port",
            "valid integer",
            id="an invalid environment value names the variable even when the file sets it",
        ),
        pytest.param(
            "port: abc\n",
            {},
            "FILE",
            "port",
            "valid integer",
            id="an invalid file value names the file",
        ),
        pytest.param(
            "port: 70000\n",
            {},
            "FILE",
            "port",
            "less than or equal to 65535",
            id="a port out of range in the file names the file",
        ),
        pytest.param(
            "host: 0.0.0.0\nprot: 9000\n",
            {},
            "FILE",
            "prot",
            "unknown setting",
            id="an unknown setting in the file is reported as unknown setting",
        ),
        pytest.param(
            "clickhouse_dsn: mysql://db:3306\n",
            {},
            "FILE",
            "clickhouse_dsn",
            "must start with chdb://, http:// or https://",
            id="a DSN with another scheme in the file is rejected",
        ),
        pytest.param(
            None,
            {"FLOWSIGHT_CLICKHOUSE_DSN": "postgres://db"},
            "environment FLOWSIGHT_CLICKHOUSE_DSN",
            "clickhouse_dsn",
            "must start with chdb://, http:// or https://",
            id="a DSN with another scheme in the environment is rejected",
        ),
        pytest.param(
            None,
            {"FLOWSIGHT_LOG_LEVEL": "verbose"},
            "environment FLOWSIGHT_LOG_LEVEL",
            "log_level",
            "'debug', 'info', 'warning' or 'error'",
            id="an unknown log level in the environment is rejected",
        ),
        pytest.param(
            None,
            {"FLOWSIGHT_ENGINE_MERGE_NICE": "-5"},
            "environment FLOWSIGHT_ENGINE_MERGE_NICE",
            "engine_merge_nice",
            "greater than or equal to 0",
            id="a merge niceness that would raise the merges above the service is rejected",
        ),
        pytest.param(
            "validation_threads: 0\n",
            {},
            "FILE",
            "validation_threads",
            "greater than or equal to 1",
            id="zero validation threads in the file is rejected",
        ),
    ],
)
def test_invalid_setting_names_where_it_came_from(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    file_text: str | None,
    env: dict[str, str],
    source: str,
    path: str,
    reason: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = write(tmp_path, "settings.yaml", file_text) if file_text is not None else None

    with pytest.raises(ConfigurationError) as exc:
        load_settings(config)

    issue = only_issue(exc)
    assert (issue.source, issue.path) == (str(config) if source == "FILE" else source, path)
    assert reason in issue.reason


def test_invalid_flag_is_not_blamed_on_the_environment() -> None:
    with pytest.raises(ConfigurationError) as exc:
        load_settings(None, port=70000)

    issue = only_issue(exc)
    assert (issue.source, issue.path) == ("flag --port", "port")


def test_settings_file_that_is_not_a_mapping_is_rejected(tmp_path: Path) -> None:
    config = write(tmp_path, "settings.yaml", "- port\n- 9000\n")

    with pytest.raises(ConfigurationError) as exc:
        load_settings(config)

    assert only_issue(exc) == ConfigIssue(
        str(config), "", "a settings file must be a mapping of setting: value"
    )


@pytest.mark.parametrize(
    ("file_text", "env", "expected"),
    [
        pytest.param("port: ${TEST_PORT}\n", {"TEST_PORT": "9001"}, 9001, id="a set variable is substituted"),
        pytest.param("port: ${TEST_PORT:-9002}\n", {}, 9002, id="an unset variable takes its default"),
        pytest.param(
            "port: ${TEST_PORT:-9002}\n",
            {"TEST_PORT": "9003"},
            9003,
            id="a set variable beats its default",
        ),
        pytest.param("port: 9${TEST_DIGITS}\n", {"TEST_DIGITS": "004"}, 9004, id="a variable inside a value"),
    ],
)
def test_variables_are_substituted_in_settings_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file_text: str, env: dict[str, str], expected: int
) -> None:
    monkeypatch.delenv("TEST_PORT", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    assert load_settings(write(tmp_path, "settings.yaml", file_text)).port == expected


def test_unset_variable_without_default_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_UNSET_HOST", raising=False)
    config = write(tmp_path, "settings.yaml", "host: ${TEST_UNSET_HOST}\n")

    with pytest.raises(ConfigurationError) as exc:
        load_settings(config)

    issue = only_issue(exc)
    assert (issue.source, issue.reason) == (str(config), "environment variable TEST_UNSET_HOST is not set")


def test_variables_are_substituted_in_workflows_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_SLA", "45m")
    text = (GOOD / "minimal-workflow.yaml").read_text().replace("sla: 90m", "sla: ${TEST_SLA}")

    catalog = load_workflows(write(tmp_path, "workflows.yaml", text))

    assert catalog.workflows[0].stages[1].sla == timedelta(minutes=45)


# -- flowsight check-config -------------------------------------------------------------------

GOOD_FILES = [
    ("minimal-workflow.yaml", "workflows"),
    ("retail-topology.yaml", "topology"),
    ("retail-workflows.yaml", "workflows"),
    ("settings.yaml", "settings"),
]

BAD_SETTINGS = [
    pytest.param("settings-unknown-setting.yaml", "prot", "unknown", 2, id="an unknown setting is reported"),
    pytest.param("settings-invalid-port.yaml", "port", "valid integer", 2, id="a port that is not a number"),
    pytest.param(
        "settings-invalid-dsn.yaml",
        "clickhouse_dsn",
        "must start with chdb://, http:// or https://",
        2,
        id="a DSN with another scheme",
    ),
    pytest.param(
        "settings-unset-variable.yaml",
        "",
        "environment variable FLOWSIGHT_TEST_UNSET_PORT is not set",
        2,
        id="an unset variable is reported at its line",
    ),
]


def expected_error(name: str, path: str, reason: str, line: int) -> re.Pattern[str]:
    """One stderr line: ``error: <file>:<line>: <field path>: <reason>``."""
    return re.compile(
        rf"^error: {re.escape(str(BAD / name))}:{line}: {re.escape(path or '<root>')}: .*{re.escape(reason)}"
    )


def test_check_config_accepts_every_good_file(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check-config", *(str(GOOD / name) for name, _ in GOOD_FILES)])

    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert out.splitlines() == [f"ok: {GOOD / name} ({kind})" for name, kind in GOOD_FILES]


def test_good_folder_holds_exactly_the_good_files() -> None:
    assert sorted(p.name for p in GOOD.glob("*.yaml")) == sorted(name for name, _ in GOOD_FILES)


def test_bad_folder_holds_exactly_the_tabled_files() -> None:
    tabled = [str(case.values[0]) for case in (*BAD_WORKFLOWS, *BAD_TOPOLOGIES, *BAD_SETTINGS)]

    assert sorted(p.name for p in BAD.glob("*.yaml")) == sorted(tabled)


@pytest.mark.parametrize(("name", "path", "reason", "line"), [*BAD_WORKFLOWS, *BAD_TOPOLOGIES, *BAD_SETTINGS])
def test_check_config_prints_file_line_field_and_reason(
    capsys: pytest.CaptureFixture[str], name: str, path: str, reason: str, line: int
) -> None:
    code = main(["check-config", str(BAD / name)])

    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert len(err.splitlines()) == 1, err
    assert expected_error(name, path, reason, line).match(err), err


def test_check_config_reports_every_error_of_every_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    two_problems = write(
        tmp_path,
        "topology.yaml",
        "version: 1\nsystems:\n  - name: oms\n    depends_on: [erp]\n  - name: oms\n",
    )
    files = [
        GOOD / "retail-topology.yaml",
        BAD / "workflows-invalid-duration.yaml",
        two_problems,
        BAD / "settings-invalid-port.yaml",
        GOOD / "minimal-workflow.yaml",
    ]

    code = main(["check-config", *map(str, files)])

    out, err = capsys.readouterr()
    assert code == 1
    assert out.splitlines() == [
        f"ok: {GOOD / 'retail-topology.yaml'} (topology)",
        f"ok: {GOOD / 'minimal-workflow.yaml'} (workflows)",
    ]
    assert err.splitlines() == [
        f"error: {BAD / 'workflows-invalid-duration.yaml'}:9: workflows[0].stages[1].sla: "
        "invalid duration '5x': expected e.g. 30s, 5m, 24h or 14d",
        f"error: {two_problems}:5: systems[1].name: duplicate system 'oms'",
        f"error: {two_problems}:4: systems[0].depends_on[0]: unknown system 'erp'",
        f"error: {BAD / 'settings-invalid-port.yaml'}:2: port: "
        "Input should be a valid integer, unable to parse string as an integer",
    ]


def test_check_config_reports_an_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.yaml"

    code = main(["check-config", str(missing)])

    assert code == 1
    assert capsys.readouterr().err == f"error: {missing}: <root>: cannot read: No such file or directory\n"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        pytest.param("retail-workflows.yaml", "workflows", id="a file with workflows is a workflows file"),
        pytest.param("retail-topology.yaml", "topology", id="a file with systems is a topology file"),
        pytest.param("settings.yaml", "settings", id="any other mapping is a settings file"),
    ],
)
def test_check_file_detects_the_kind(name: str, kind: str) -> None:
    assert check_file(GOOD / name) == (kind, [])


def test_check_config_judges_a_settings_file_without_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLOWSIGHT_RETRY_AFTER_SECONDS", "abc")  # a setting the file leaves out

    code = main(["check-config", str(GOOD / "settings.yaml")])

    assert (code, capsys.readouterr().err) == (0, "")


# -- flowsight settings -----------------------------------------------------------------------


def test_settings_command_prints_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["settings"])

    out = capsys.readouterr().out
    assert code == 0
    named = [line.split(" = ")[0] for line in out.splitlines() if not line.startswith(" ")]
    assert named == list(Settings.model_fields)
    assert "port = 4318" in out.splitlines()
    assert "host = '127.0.0.1'" in out.splitlines()


def test_settings_command_reads_the_config_file(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--config", str(GOOD / "settings.yaml"), "settings"])

    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert "port = 9000" in lines
    assert "database = 'retail'" in lines
    assert "log_level = 'debug'" in lines


def test_settings_command_reports_an_invalid_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLOWSIGHT_PORT", "abc")

    code = main(["settings"])

    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err == (
        "error: environment FLOWSIGHT_PORT: port: "
        "Input should be a valid integer, unable to parse string as an integer\n"
    )
