"""The Grafana dashboards: importable JSON whose queries name only what flowsight really has.

Every PromQL expression is checked against the app's own ``/metrics`` exposition (metric names
with their ``_total``/``_bucket``/``_sum``/``_count`` suffixes, and label names), and every
ClickHouse query runs on the real engine against flowsight's schema with Grafana's macros
expanded, so a renamed metric, label, table or column breaks this suite rather than a dashboard.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from flowsight.app import Services
from flowsight.settings import Settings
from tests.receiver import Receiver
from tests.test_flow_health import EVENTS, NOW
from tests.test_otlp_protocol import json_request

DASHBOARDS = Path(__file__).resolve().parents[1] / "dashboards" / "grafana"
FILES = (
    "flowsight-flow-health.json",
    "flowsight-slos.json",
    "flowsight-collector.json",
    "flowsight-traces-clickhouse.json",
)
PROMETHEUS_FILES = FILES[:3]
CLICKHOUSE_FILES = FILES[3:]
PROMETHEUS = "prometheus"
CLICKHOUSE = "grafana-clickhouse-datasource"
PLUGIN_OF_INPUT = {"DS_PROMETHEUS": PROMETHEUS, "DS_CLICKHOUSE": CLICKHOUSE}
TOP_LEVEL = {
    "__inputs",
    "__requires",
    "annotations",
    "editable",
    "panels",
    "refresh",
    "schemaVersion",
    "tags",
    "templating",
    "time",
    "timepicker",
    "title",
    "uid",
}


def load(name: str) -> dict[str, Any]:
    board: dict[str, Any] = json.loads((DASHBOARDS / name).read_text())
    return board


def variables(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in board["templating"]["list"]}


def queries(board: dict[str, Any], plugin: str) -> Iterator[tuple[str, str]]:
    """(where, query) for every panel target and template variable of ``plugin``."""
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            if target["datasource"]["type"] == plugin:
                yield (
                    f"panel {panel['title']!r} {target['refId']}",
                    target["expr" if plugin == PROMETHEUS else "rawSql"],
                )
    for variable in board["templating"]["list"]:
        if variable["type"] == "query" and variable["datasource"]["type"] == plugin:
            query = variable["query"]
            yield f"variable {variable['name']!r}", query["query"] if isinstance(query, dict) else query


# -- the JSON itself ----------------------------------------------------------------------------


def test_the_folder_holds_exactly_the_four_dashboards() -> None:
    assert sorted(p.name for p in DASHBOARDS.glob("*.json")) == sorted(FILES)


def test_dashboard_uids_are_unique() -> None:
    uids = [load(name)["uid"] for name in FILES]
    assert len(set(uids)) == len(uids), uids


@pytest.mark.parametrize("name", FILES)
def test_dashboard_is_importable_json(name: str) -> None:
    board = load(name)
    assert board.keys() >= TOP_LEVEL, TOP_LEVEL - board.keys()
    assert board["schemaVersion"] == 39
    assert board["tags"] == ["flowsight"]
    assert board["refresh"] == "1m"
    assert board["time"]["from"].startswith("now-") and board["time"]["to"] == "now"
    assert board["title"].startswith("flowsight")
    assert re.fullmatch(r"[a-z0-9-]{1,40}", board["uid"])
    assert board.get("id") is None  # an import creates its own id
    inputs = {i["name"]: i for i in board["__inputs"]}
    assert inputs, "import must ask for the datasource"
    for input_name, spec in inputs.items():
        assert spec["type"] == "datasource" and spec["pluginId"] == PLUGIN_OF_INPUT[input_name]
    required = {r["id"] for r in board["__requires"]}
    # Provisioned (not imported) copies resolve ${DS_...} through a datasource variable of that name.
    declared = variables(board)
    for input_name, spec in inputs.items():
        assert spec["pluginId"] in required
        assert declared[input_name]["type"] == "datasource"
        assert declared[input_name]["query"] == spec["pluginId"]

    ids = [panel["id"] for panel in board["panels"]]
    assert len(set(ids)) == len(ids), f"duplicate panel ids in {name}: {ids}"
    for panel in board["panels"]:
        where = f"{name}: panel {panel['id']} {panel.get('title')!r}"
        assert panel["type"] in required, where
        assert panel.get("title") and panel.get("gridPos"), where
        datasource = panel.get("datasource")
        assert datasource, f"{where} has no datasource"
        input_name = re.fullmatch(r"\$\{(DS_[A-Z]+)\}", datasource["uid"])
        assert input_name and input_name[1] in inputs, f"{where}: datasource {datasource}"
        assert datasource["type"] == inputs[input_name[1]]["pluginId"], where
        targets = panel.get("targets") or []
        assert targets, f"{where} has no target"
        assert len({t["refId"] for t in targets}) == len(targets), where
        for target in targets:
            assert target["datasource"] == datasource, where
            if datasource["type"] == PROMETHEUS:
                assert target["expr"].strip(), where
            else:
                assert target["editorType"] == "sql" and target["rawSql"].strip(), where
                assert (target["format"], target["queryType"]) in ((0, "timeseries"), (1, "table")), where


_VARIABLE_USE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


@pytest.mark.parametrize("name", FILES)
def test_queries_use_only_defined_variables(name: str) -> None:
    board = load(name)
    defined = set(variables(board))
    plugin = PROMETHEUS if name in PROMETHEUS_FILES else CLICKHOUSE
    for where, query in queries(board, plugin):
        for braced, bare in _VARIABLE_USE.findall(query):
            used = braced or bare
            assert used.startswith("__") or used in defined, f"{name} {where}: ${used} is not a variable"


# -- PromQL against the real exposition ------------------------------------------------------

# fmt: off
PROMQL_FUNCTIONS = frozenset({
    "abs", "absent", "absent_over_time", "avg", "avg_over_time", "bottomk", "ceil", "changes",
    "clamp", "clamp_max", "clamp_min", "count", "count_over_time", "count_values", "day_of_month",
    "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp", "floor", "group",
    "histogram_quantile", "holt_winters", "hour", "idelta", "increase", "irate", "label_join",
    "label_replace", "last_over_time", "ln", "log10", "log2", "max", "max_over_time", "min",
    "min_over_time", "minute", "month", "predict_linear", "present_over_time", "quantile",
    "quantile_over_time", "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc", "sqrt",
    "stddev", "stddev_over_time", "stdvar", "stdvar_over_time", "sum", "sum_over_time", "time",
    "timestamp", "topk", "vector", "year",
})
PROMQL_KEYWORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset", "atan2", "inf", "nan",
})
# fmt: on

_STRING = r'"(?:[^"\\]|\\.)*"'
_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)?\s*\{([^{}]*)\}")
_MATCHER = re.compile(rf"\s*([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)\s*{_STRING}\s*,?")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_LABEL_VALUES = re.compile(r"\s*label_values\((.+),\s*([A-Za-z_]\w*)\s*\)\s*")


@dataclass(frozen=True)
class PromRefs:
    """What one PromQL expression names."""

    metrics: frozenset[str]
    functions: frozenset[str]
    matched: frozenset[tuple[str, str]]  # (metric, label) pairs from selectors' matchers
    grouped: frozenset[str]  # labels of by/without/on/ignoring/group_* clauses
    unparsed: tuple[str, ...]  # selector text that is not a list of matchers


def promql_refs(expr: str) -> PromRefs:
    """The metric, function and label names of ``expr`` (a checker for dashboards, not a parser)."""
    match = _LABEL_VALUES.fullmatch(expr)
    if match:  # a template variable's label_values(selector, label)
        expr = f"count by ({match[2]}) ({match[1]})"
    metrics: set[str] = set()
    matched: set[tuple[str, str]] = set()
    unparsed: list[str] = []

    def selector(m: re.Match[str]) -> str:
        name, keep = m[1] or "", ""
        if name.lower() in PROMQL_KEYWORDS:  # `unless {...}`: the word is an operator, not a metric
            name, keep = "", name
        labels = _MATCHER.findall(m[2])
        if _MATCHER.sub("", m[2]).strip():
            unparsed.append(m[0])
        if not name:  # {__name__="..."} selects by name
            found = re.search(r'__name__\s*=\s*"([\w:]+)"', m[2])
            name = found[1] if found else ""
        if name:
            metrics.add(name)
        matched.update((name, label) for label in labels if label != "__name__")
        return f" {keep} "

    rest = _SELECTOR.sub(selector, expr)
    rest = re.sub(_STRING, " ", rest)
    grouped = {
        label.strip() for clause in _GROUPING.findall(rest) for label in clause.split(",") if label.strip()
    }
    rest = _GROUPING.sub(" ", rest)
    rest = re.sub(r"\[[^\]]*\]", " ", rest)  # range and subquery durations
    rest = re.sub(r"\$\{?\w+(?::\w+)?\}?", " ", rest)  # $__rate_interval and friends
    functions: set[str] = set()
    for ident, call in re.findall(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?", rest):
        if call:
            functions.add(ident)
        elif ident.lower() not in PROMQL_KEYWORDS:
            metrics.add(ident)
    return PromRefs(
        frozenset(metrics), frozenset(functions), frozenset(matched), frozenset(grouped), tuple(unparsed)
    )


def promql_problems(expr: str, exported: Mapping[str, frozenset[str]]) -> list[str]:
    """Why ``expr`` would not find what flowsight exports; empty when it would."""
    refs = promql_refs(expr)
    problems = [f"cannot read the matchers of {text!r}" for text in refs.unparsed]
    problems += [f"{fn}() is not a PromQL function" for fn in sorted(refs.functions - PROMQL_FUNCTIONS)]
    if not refs.metrics:
        problems.append("names no metric")
    problems += [f"metric {name} is not exported" for name in sorted(refs.metrics - exported.keys())]
    for metric, label in sorted(refs.matched):
        if metric in exported and label not in exported[metric]:
            problems.append(f"label {label} is not a label of {metric}")
    known = set().union(*(exported.get(name, frozenset()) for name in refs.metrics))
    problems += [
        f"label {label} (by/on/without) is not a label of {', '.join(sorted(refs.metrics))}"
        for label in sorted(refs.grouped - known)
    ]
    return problems


SAMPLE_EXPORT = {
    "flowsight_backlog": frozenset({"system"}),
    "flowsight_ingest_insert_duration_seconds_bucket": frozenset({"le"}),
}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        pytest.param("max by (system) (flowsight_backlog)", [], id="an exported metric and label pass"),
        pytest.param(
            "histogram_quantile(0.95, sum by (le) (rate(flowsight_ingest_insert_duration_seconds_bucket[$__rate_interval])))",
            [],
            id="a histogram quantile over the bucket series passes",
        ),
        pytest.param(
            "sum(rate(flowsight_events_accepted_total[5m]))",
            ["metric flowsight_events_accepted_total is not exported"],
            id="a metric the app does not export fails",
        ),
        pytest.param(
            "rate(flowsight_ingest_insert_duration_seconds[5m])",
            ["metric flowsight_ingest_insert_duration_seconds is not exported"],
            id="a histogram without its bucket suffix fails",
        ),
        pytest.param(
            'flowsight_backlog{team="erp"}',
            ["label team is not a label of flowsight_backlog"],
            id="a matcher on a label the metric lacks fails",
        ),
        pytest.param(
            "sum by (stage) (flowsight_backlog)",
            ["label stage (by/on/without) is not a label of flowsight_backlog"],
            id="grouping by a label the metric lacks fails",
        ),
        pytest.param(
            "rat(flowsight_backlog[5m])",
            ["rat() is not a PromQL function"],
            id="a misspelt function fails",
        ),
        pytest.param(
            "label_values(flowsight_backlog, workflow)",
            ["label workflow (by/on/without) is not a label of flowsight_backlog"],
            id="a variable's label_values on a missing label fails",
        ),
        pytest.param(
            'flowsight_backlog{system=~"$system"} or vector(0)',
            [],
            id="variables in matchers and vector() are not metrics",
        ),
    ],
)
def test_promql_checker(expr: str, expected: list[str]) -> None:
    assert promql_problems(expr, SAMPLE_EXPORT) == expected


@pytest.fixture
def settings(settings: Settings, webhook: Receiver) -> Settings:
    # A configured receiver gives the per-receiver notification counters their samples.
    return settings.model_copy(update={"alert_webhook_url": webhook.url})


def exposition(client: TestClient, clock: Any) -> dict[str, frozenset[str]]:
    """Sample name -> label names, from /metrics after ingest and one evaluation."""
    clock.now = NOW
    response = client.post(
        "/v1/events", content=orjson.dumps(EVENTS), headers={"content-type": "application/json"}
    )
    assert response.json()["accepted"] == len(EVENTS)
    assert client.post("/api/evaluate").status_code == 200
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(found) for name, found in labels.items()}


@pytest.mark.parametrize("name", PROMETHEUS_FILES)
def test_promql_names_only_exported_metrics_and_labels(name: str, client: TestClient, clock: Any) -> None:
    exported = exposition(client, clock)
    # The families a dashboard relies on have samples here, so a miss below is a real one.
    assert {"flowsight_alert_active", "flowsight_notifications_total", "flowsight_slo_sli"} <= exported.keys()
    assert promql_problems("sum(rate(flowsight_no_such_metric_total[5m]))", exported)

    checked, problems = 0, []
    for where, expr in queries(load(name), PROMETHEUS):
        checked += 1
        problems += [f"{where}: {problem} in {expr!r}" for problem in promql_problems(expr, exported)]
    assert checked
    assert not problems, "\n".join(problems)


def without_grafana_variables(expr: str) -> str:
    """``expr`` as Prometheus receives it: Grafana's intervals and variables filled in."""
    match = _LABEL_VALUES.fullmatch(expr)
    if match:
        expr = f"count by ({match[2]}) ({match[1]})"
    expr = re.sub(r"\$(?:__rate_interval|__interval|__range)\b", "5m", expr)
    return re.sub(r"\$\{?\w+(?::\w+)?\}?", ".*", expr)


@pytest.mark.parametrize("name", PROMETHEUS_FILES)
def test_promql_parses_with_prometheus_own_parser(name: str, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "Debian's prometheus package provides promtool (make system-deps installs it)"
    found = list(queries(load(name), PROMETHEUS))
    rules = [
        {"record": f"flowsight:dashboard_check_{i}", "expr": without_grafana_variables(expr)}
        for i, (_, expr) in enumerate(found, 1)
    ]
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps({"groups": [{"name": name, "rules": rules}]}))  # JSON is YAML
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    numbered = "\n".join(f"rule {i}: {where}" for i, (where, _) in enumerate(found, 1))
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{numbered}"
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


# -- ClickHouse SQL against the real engine ------------------------------------------------------

FROM_S = int((NOW - timedelta(days=7)).timestamp())
TO_S = int((NOW + timedelta(hours=1)).timestamp())
INTERVAL_S = 60
ORDER = "FAILING"  # an order of EVENTS with a failed stage
TRACE = "5b8efff798038103d269b633813fc60c"
_TABLE_REF = re.compile(r"\b(FROM|JOIN)\s+([A-Za-z_][\w.]*)(?![\w.])(?!\s*\()", re.IGNORECASE)


def sqlstring(value: str) -> str:
    """Grafana's ``${var:sqlstring}`` format: quoted, single quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def expand(sql: str, table: Any, correlation_id: str = ORDER) -> str:
    """``sql`` as the ClickHouse plugin sends it: variables and macros expanded, tables in the test database."""
    # Only the quoted form is expanded: a bare $correlation_id would paste the typed text into SQL.
    sql = sql.replace("${correlation_id:sqlstring}", sqlstring(correlation_id))
    sql = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 >= toDateTime({FROM_S}) AND \1 <= toDateTime({TO_S})", sql)
    sql = re.sub(
        r"\$__timeInterval\((\w+)\)", rf"toStartOfInterval(toDateTime(\1), INTERVAL {INTERVAL_S} second)", sql
    )
    sql = sql.replace("$__fromTime", f"toDateTime({FROM_S})").replace("$__toTime", f"toDateTime({TO_S})")
    sql = sql.replace("$__interval_s", str(INTERVAL_S))
    assert "$" not in sql, f"unexpanded macro or variable in {sql}"

    def qualify(m: re.Match[str]) -> str:
        assert "." not in m[2], (
            f"{m[2]}: dashboards name tables unqualified (the datasource picks the database)"
        )
        return f"{m[1]} {table(m[2])}"

    return _TABLE_REF.sub(qualify, sql)


def spans_request() -> bytes:
    start = int((NOW - timedelta(minutes=10)).timestamp() * 1e9)

    def span(
        span_id: str, name: str, parent: str, ms: int, error: bool, attrs: dict[str, str]
    ) -> dict[str, Any]:
        return {
            "traceId": TRACE,
            "spanId": span_id,
            "parentSpanId": parent,
            "name": name,
            "kind": 2,
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(start + ms * 1_000_000),
            "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attrs.items()],
            "status": {"code": 2, "message": "timeout"} if error else {"code": 1},
        }

    return json_request(
        [
            span("00f067aa0ba902b7", "POST /orders/reserve", "", 250, True, {"order.id": ORDER}),
            span("00f067aa0ba902b8", "SELECT stock", "00f067aa0ba902b7", 40, False, {}),
        ],
        {"service.name": "erp"},
    )


@pytest.fixture
def loaded(client: TestClient, services: Services, clock: Any) -> TestClient:
    """The app holding EVENTS and one ERP trace of the failing order (its root span names the order)."""
    clock.now = NOW
    response = client.post(
        "/v1/events", content=orjson.dumps(EVENTS), headers={"content-type": "application/json"}
    )
    assert response.json()["accepted"] == len(EVENTS)
    response = client.post(
        "/v1/traces", content=spans_request(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert services.writer.wait_idle()  # the panels' queries read ClickHouse directly
    return client


@pytest.mark.parametrize("name", CLICKHOUSE_FILES)
def test_clickhouse_queries_run_on_flowsight_schema(
    name: str, loaded: TestClient, services: Services
) -> None:
    checked, problems = 0, []
    for where, raw in queries(load(name), CLICKHOUSE):
        checked += 1
        if re.search(r"\botel_traces\b", raw) and "$__timeFilter(Timestamp)" not in raw:
            problems.append(f"{where}: reads otel_traces without $__timeFilter(Timestamp)")
            continue
        try:
            rows = services.store.rows(expand(raw, services.schema.table))
        except Exception as exc:  # the engine's own message names the missing table or column
            problems.append(f"{where}: {type(exc).__name__}: {str(exc)[:500]}")
            continue
        # The fixture's data lies in the range, so every panel shows something.
        if not rows:
            problems.append(f"{where}: no rows over data in its time range")
    assert checked
    assert not problems, "\n".join(problems)


def test_a_query_naming_a_missing_column_fails_on_the_engine(loaded: TestClient, services: Services) -> None:
    bogus = "SELECT ServiceName, count() FROM otel_traces WHERE $__timeFilter(Timestamp) AND OrderNumber != '' GROUP BY 1"
    with pytest.raises(Exception, match="OrderNumber"):
        services.store.rows(expand(bogus, services.schema.table))


def order_panel() -> str:
    board = load("flowsight-traces-clickhouse.json")
    [panel] = [p for p in board["panels"] if "correlation_id" in p["title"]]
    [target] = panel["targets"]
    return str(target["rawSql"])


def test_order_table_shows_the_orders_events_and_whole_trace(loaded: TestClient, services: Services) -> None:
    rows = services.store.dicts(expand(order_panel(), services.schema.table))
    events = [r for r in rows if r["kind"] == "event"]
    spans = [r for r in rows if r["kind"] == "span"]
    assert sorted(r["id"] for r in events) == sorted(
        e["event_id"] for e in EVENTS if e["correlation_id"] == ORDER
    )
    # The child span carries no order ID; it belongs to the order through its trace.
    assert sorted((r["name"], r["status"]) for r in spans) == [
        ("POST /orders/reserve", "Error"),
        ("SELECT stock", "Ok"),
    ]
    assert [r["time"] for r in rows] == sorted(r["time"] for r in rows)


def test_order_table_takes_an_id_with_quotes_as_one_value(loaded: TestClient, services: Services) -> None:
    sql = expand(order_panel(), services.schema.table, correlation_id=f"{ORDER}' OR '1'='1")
    assert services.store.rows(sql) == []
