"""The alert-rules spec: loading rule files into the domain model, their validation, and check-config.

Valid files live in ``configs/alerts/good``, files invalid in one known way in ``configs/alerts/bad``;
every bad file has a row in ``BAD_RULES``, and a test keeps the folder and the table in step.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

from flowsight.alerts.loading import DEFAULT_RULES, DEFAULTS_FILE, check_rules_file, load_rules
from flowsight.alerts.model import Rule, RuleSet
from flowsight.alerts.spec import (
    AlertRulesFileV1,
    BurnRateRuleSpec,
    ExceptionAgingRuleSpec,
    StuckOrdersRuleSpec,
    SystemErrorRatioRuleSpec,
    SystemSilenceRuleSpec,
    ThresholdRuleSpec,
)
from flowsight.cli import main
from flowsight.configfiles import ConfigIssue, ConfigurationError
from flowsight.slo.loading import DEFAULT_SLOS
from flowsight.workflows import DEFAULT_WORKFLOWS

CONFIGS = Path(__file__).parent / "configs" / "alerts"
GOOD = CONFIGS / "good"
BAD = CONFIGS / "bad"


def m(minutes: float) -> timedelta:
    return timedelta(minutes=minutes)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def only_issue(exc: pytest.ExceptionInfo[ConfigurationError]) -> ConfigIssue:
    assert len(exc.value.issues) == 1, exc.value.issues
    return exc.value.issues[0]


def only_issue_of(path: Path) -> ConfigIssue:
    with pytest.raises(ConfigurationError) as exc:
        load_rules(path, DEFAULT_WORKFLOWS, DEFAULT_SLOS)
    return only_issue(exc)


# -- retail defaults ----------------------------------------------------------------------------


def test_defaults_file_loads_exactly_the_built_in_defaults() -> None:
    loaded = load_rules(DEFAULTS_FILE, DEFAULT_WORKFLOWS, DEFAULT_SLOS)

    assert [r.name for r in loaded] == [r.name for r in DEFAULT_RULES]
    assert loaded == DEFAULT_RULES


def test_defaults_are_the_documented_rules() -> None:
    assert list(DEFAULT_RULES) == [
        Rule(
            name="SloErrorBudgetBurn",
            kind="burn_rate",
            severity="page",
            annotations={"runbook_url": "https://sre.google/workbook/alerting-on-slos/"},
            params={"slos": None, "severities": ("page", "ticket")},
        ),
        Rule(
            name="StuckOrders",
            kind="stuck_orders",
            for_=m(5),
            severity="ticket",
            params={"workflow": None, "stages": None, "min_orders": 5},
        ),
        Rule(
            name="ExceptionAging",
            kind="exception_aging",
            severity="ticket",
            params={"workflow": None, "stages": None, "older_than": timedelta(hours=1)},
        ),
        Rule(
            name="SystemUnhealthy",
            kind="system_error_ratio",
            for_=m(1),
            keep_firing_for=m(2),
            severity="page",
            params={"systems": None, "window": m(5), "min_events": 20, "ratio": 0.2},
        ),
        Rule(
            name="SystemSilent",
            kind="system_silence",
            severity="page",
            params={"systems": None, "silent_for": m(15), "baseline": timedelta(hours=6), "min_events": 10},
        ),
    ]


def test_system_health_rules_are_the_error_ratio_and_silence_defaults() -> None:
    assert [r.name for r in DEFAULT_RULES if r.system_health] == ["SystemUnhealthy", "SystemSilent"]


def test_defaults_file_passes_check_rules_file() -> None:
    assert check_rules_file(DEFAULTS_FILE, DEFAULT_WORKFLOWS, DEFAULT_SLOS) == []


# -- good files map to the frozen domain model ----------------------------------------------------

GOOD_RULES = [
    pytest.param(
        "every-rule-kind.yaml",
        [
            Rule(
                name="CheckoutBudgetBurn",
                kind="burn_rate",
                for_=m(2),
                keep_firing_for=m(5),
                severity="page",
                labels={"team": "commerce"},
                annotations={
                    "summary": "Checkout error budget is burning fast",
                    "runbook_url": "https://runbooks.example.com/slo-burn",
                },
                params={"slos": ("order_completion", "erp_sync_lag"), "severities": ("page",)},
            ),
            Rule(
                name="ErpOrdersStuck",
                kind="stuck_orders",
                for_=m(10),
                keep_firing_for=m(1),
                severity="page",
                labels={"team": "erp"},
                annotations={"summary": "Orders are waiting on the ERP"},
                params={
                    "workflow": "order_to_cash",
                    "stages": ("inventory_reserved", "erp_order_created"),
                    "min_orders": 10,
                },
            ),
            Rule(
                name="RefundExceptionsAging",
                kind="exception_aging",
                for_=timedelta(seconds=90),
                keep_firing_for=timedelta(seconds=30),
                severity="ticket",
                labels={"team": "payments"},
                annotations={"description": "A refund exception has been open for over 4 hours"},
                params={
                    "workflow": "return_to_refund",
                    "stages": ("refund_issued",),
                    "older_than": timedelta(hours=4),
                },
            ),
            Rule(
                name="IntegrationErrors",
                kind="system_error_ratio",
                for_=m(1),
                keep_firing_for=m(2),
                severity="ticket",
                labels={"team": "integration"},
                annotations={"summary": "Middleware and ERP calls are failing"},
                params={"systems": ("middleware", "erp"), "window": m(10), "min_events": 50, "ratio": 0.05},
            ),
            Rule(
                name="WarehouseSilent",
                kind="system_silence",
                for_=m(5),
                keep_firing_for=m(10),
                severity="ticket",
                labels={"team": "logistics"},
                annotations={"summary": "The warehouse has stopped reporting"},
                params={
                    "systems": ("wms",),
                    "silent_for": m(30),
                    "baseline": timedelta(days=1),
                    "min_events": 100,
                },
            ),
            Rule(
                name="OrderBacklogHigh",
                kind="threshold",
                for_=m(15),
                keep_firing_for=m(5),
                severity="page",
                labels={"team": "commerce"},
                annotations={"summary": "More than 500 orders in flight"},
                params={
                    "figure": "workflows.order_to_cash.in_flight",
                    "op": ">=",
                    "value": 500.0,
                    "system": "oms",
                },
            ),
        ],
        id="one rule of each kind maps every field",
    ),
    pytest.param(
        "kind-defaults.yaml",
        [
            Rule(
                name="Burn",
                kind="burn_rate",
                severity="page",
                params={"slos": None, "severities": ("page", "ticket")},
            ),
            Rule(
                name="Stuck",
                kind="stuck_orders",
                severity="ticket",
                params={"workflow": None, "stages": None, "min_orders": 5},
            ),
            Rule(
                name="Aging",
                kind="exception_aging",
                severity="ticket",
                params={"workflow": None, "stages": None, "older_than": timedelta(hours=1)},
            ),
            Rule(
                name="Errors",
                kind="system_error_ratio",
                severity="page",
                params={"systems": None, "window": m(5), "min_events": 20, "ratio": 0.2},
            ),
            Rule(
                name="Silent",
                kind="system_silence",
                severity="page",
                params={
                    "systems": None,
                    "silent_for": m(15),
                    "baseline": timedelta(hours=6),
                    "min_events": 10,
                },
            ),
            Rule(
                name="OpenExceptions",
                kind="threshold",
                severity="ticket",
                params={"figure": "exceptions.open", "op": ">", "value": 100.0, "system": "erp"},
            ),
        ],
        id="unset fields take each kind's defaults",
    ),
]


@pytest.mark.parametrize(("name", "expected"), GOOD_RULES)
def test_good_rules_file_maps_to_the_domain_model(name: str, expected: list[Rule]) -> None:
    rules = load_rules(GOOD / name, DEFAULT_WORKFLOWS, DEFAULT_SLOS)

    assert list(rules) == expected
    for rule, want in zip(rules, expected, strict=True):
        # Equality alone would let 0 seconds pass for timedelta(0) or 500 for 500.0.
        assert (rule.for_, rule.keep_firing_for) == (want.for_, want.keep_firing_for)
        assert {k: type(v) for k, v in rule.params.items()} == {k: type(v) for k, v in want.params.items()}
    assert rules.get(expected[-1].name) is rules.rules[-1]
    assert check_rules_file(GOOD / name, DEFAULT_WORKFLOWS, DEFAULT_SLOS) == []


def test_loaded_rules_are_frozen() -> None:
    rule = load_rules(GOOD / "every-rule-kind.yaml", DEFAULT_WORKFLOWS, DEFAULT_SLOS).rules[0]

    with pytest.raises(dataclasses.FrozenInstanceError):
        rule.for_ = timedelta(0)  # type: ignore[misc]


def test_environment_variables_are_substituted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWSIGHT_TEST_STUCK_FOR", "20m")
    path = write(
        tmp_path,
        "version: 1\n"
        "rules:\n"
        "  - name: StuckOrders\n"
        "    kind: stuck_orders\n"
        "    for: ${FLOWSIGHT_TEST_STUCK_FOR}\n"
        "    min_orders: ${FLOWSIGHT_TEST_STUCK_UNSET:-7}\n",
    )

    (rule,) = load_rules(path, DEFAULT_WORKFLOWS)

    assert (rule.for_, rule.params["min_orders"]) == (m(20), 7)


def test_an_empty_rules_list_loads_to_no_rules(tmp_path: Path) -> None:
    assert load_rules(write(tmp_path, "version: 1\nrules: []\n"), DEFAULT_WORKFLOWS) == RuleSet(())


# -- bad files -----------------------------------------------------------------------------------

# (file, field path, reason fragment, line)
BAD_RULES = [
    pytest.param(
        "unknown-kind.yaml",
        "rules[0].kind",
        "'latency'",
        4,
        id="an unknown kind is rejected at the kind field naming the kind",
    ),
    pytest.param(
        "threshold-missing-system.yaml",
        "rules[0].system",
        "Field required",
        3,
        id="a threshold rule without its system is rejected at the rule",
    ),
    pytest.param(
        "negative-for.yaml",
        "rules[0].for",
        "a duration cannot be negative",
        6,
        id="a negative for is rejected",
    ),
    pytest.param(
        "invalid-for-duration.yaml",
        "rules[0].for",
        "invalid duration '5 minutes': expected e.g. 30s, 5m, 24h or 14d",
        6,
        id="a for that is not a duration is rejected",
    ),
    pytest.param(
        "ratio-above-one.yaml",
        "rules[0].ratio",
        "less than or equal to 1",
        7,
        id="an error ratio written as a percentage is rejected",
    ),
    pytest.param(
        "ratio-zero.yaml",
        "rules[0].ratio",
        "greater than 0",
        7,
        id="an error ratio of zero is rejected",
    ),
    pytest.param(
        "unknown-workflow.yaml",
        "rules[0].workflow",
        "unknown workflow 'quote_to_order': expected one of order_to_cash, return_to_refund",
        5,
        id="an unknown workflow is rejected",
    ),
    pytest.param(
        "stage-not-in-workflow.yaml",
        "rules[0].stages[1]",
        "'refund_issued' is not a stage of workflow 'order_to_cash'",
        6,
        id="a stage of another workflow is rejected",
    ),
    pytest.param(
        "unknown-slo.yaml",
        "rules[0].slos[1]",
        "unknown slo 'checkout_latency': expected one of order_completion, return_completion, "
        "erp_sync_lag, erp_posting_delay, refund_processing, exception_aging, api_error_ratio, "
        "ingest_freshness",
        7,
        id="a burn_rate rule naming an unknown slo is rejected",
    ),
    pytest.param(
        "figure-outside-flow-health.yaml",
        "rules[0].figure",
        "'host.cpu' is not a flow-health figure: expected a dotted path under workflows, exceptions, "
        "backlog, sync_lag, ingest, such as workflows.order_to_cash.in_flight",
        5,
        id="a threshold on a figure outside the flow-health document is rejected",
    ),
    pytest.param(
        "duplicate-name.yaml",
        "rules[1].name",
        "duplicate rule 'StuckOrders'",
        6,
        id="a duplicate rule name is rejected at the second rule",
    ),
    pytest.param(
        "invalid-alert-name.yaml",
        "rules[0].name",
        "String should match pattern",
        3,
        id="an alert name with a dash is rejected",
    ),
    pytest.param(
        "unknown-field.yaml",
        "rules[0].threshold",
        "unknown field",
        6,
        id="a field the kind does not have is an unknown field at its own path",
    ),
]

SLO_ONLY = {"unknown-slo.yaml"}
"""Bad only against the SLO catalog, which check-config does not pair rule files with."""


@pytest.mark.parametrize(("name", "path", "reason", "line"), BAD_RULES)
def test_bad_rules_file_names_field_reason_and_line(name: str, path: str, reason: str, line: int) -> None:
    with pytest.raises(ConfigurationError) as exc:
        load_rules(BAD / name, DEFAULT_WORKFLOWS, DEFAULT_SLOS)

    issue = only_issue(exc)
    assert (issue.source, issue.path, issue.line) == (str(BAD / name), path, line)
    assert reason in issue.reason


@pytest.mark.parametrize(("name", "path", "reason", "line"), BAD_RULES)
def test_check_rules_file_returns_the_same_issue(name: str, path: str, reason: str, line: int) -> None:
    issues = check_rules_file(BAD / name, DEFAULT_WORKFLOWS, DEFAULT_SLOS)

    assert [(i.source, i.path, i.line) for i in issues] == [(str(BAD / name), path, line)]
    assert reason in issues[0].reason


def test_unknown_kind_lists_every_kind() -> None:
    issue = only_issue_of(BAD / "unknown-kind.yaml")

    for kind in (
        "burn_rate",
        "stuck_orders",
        "exception_aging",
        "system_error_ratio",
        "system_silence",
        "threshold",
    ):
        assert kind in issue.reason


def test_slo_names_are_checked_only_against_a_given_slo_catalog() -> None:
    assert check_rules_file(BAD / "unknown-slo.yaml", DEFAULT_WORKFLOWS) == []
    assert [i.path for i in check_rules_file(BAD / "unknown-slo.yaml", DEFAULT_WORKFLOWS, DEFAULT_SLOS)] == [
        "rules[0].slos[1]"
    ]


def test_good_folder_holds_exactly_the_good_files() -> None:
    assert sorted(p.name for p in GOOD.glob("*.yaml")) == sorted(str(c.values[0]) for c in GOOD_RULES)


def test_bad_folder_holds_exactly_the_tabled_files() -> None:
    assert sorted(p.name for p in BAD.glob("*.yaml")) == sorted(str(c.values[0]) for c in BAD_RULES)


def test_every_problem_of_one_rules_file_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "version: 1\n"
        "rules:\n"
        "  - name: Stuck\n"
        "    kind: stuck_orders\n"
        "    workflow: order_to_cash\n"
        "    stages: [packed]\n"
        "  - name: Stuck\n"
        "    kind: threshold\n"
        "    figure: in_flight\n"
        "    op: '>'\n"
        "    value: 1\n"
        "    system: oms\n"
        "  - name: Burn\n"
        "    kind: burn_rate\n"
        "    slos: [checkout]\n",
    )

    with pytest.raises(ConfigurationError) as exc:
        load_rules(path, DEFAULT_WORKFLOWS, DEFAULT_SLOS)

    assert [(i.line, i.path) for i in exc.value.issues] == [
        (6, "rules[0].stages[0]"),
        (7, "rules[1].name"),
        (9, "rules[1].figure"),
        (15, "rules[2].slos[0]"),
    ]


def test_workflows_are_checked_against_the_given_catalog() -> None:
    only_orders = DEFAULT_WORKFLOWS.of(wf for wf in DEFAULT_WORKFLOWS if wf.name == "order_to_cash")

    issues = check_rules_file(GOOD / "every-rule-kind.yaml", only_orders, DEFAULT_SLOS)

    assert [(i.path, i.line, i.reason) for i in issues] == [
        (
            "rules[2].workflow",
            27,
            "unknown workflow 'return_to_refund': expected one of order_to_cash",
        )
    ]


def test_unreadable_file_is_a_configuration_issue(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"

    assert check_rules_file(missing, DEFAULT_WORKFLOWS) == [
        ConfigIssue(str(missing), "", "cannot read: No such file or directory")
    ]


# -- flowsight check-config -------------------------------------------------------------------


def test_check_config_accepts_the_good_and_default_rules_files(capsys: pytest.CaptureFixture[str]) -> None:
    files = [DEFAULTS_FILE, *(GOOD / str(c.values[0]) for c in GOOD_RULES)]

    code = main(["check-config", *map(str, files)])

    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert out.splitlines() == [f"ok: {path} (rules)" for path in files]


@pytest.mark.parametrize(
    ("name", "path", "reason", "line"), [c for c in BAD_RULES if c.values[0] not in SLO_ONLY]
)
def test_check_config_prints_file_line_field_and_reason(
    capsys: pytest.CaptureFixture[str], name: str, path: str, reason: str, line: int
) -> None:
    code = main(["check-config", str(BAD / name)])

    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {BAD / name}:{line}: {path}: "), err
    assert reason in err


# -- the spec documents itself ---------------------------------------------------------------------

SPEC_MODELS: list[type[BaseModel]] = [
    AlertRulesFileV1,
    BurnRateRuleSpec,
    StuckOrdersRuleSpec,
    ExceptionAgingRuleSpec,
    SystemErrorRatioRuleSpec,
    SystemSilenceRuleSpec,
    ThresholdRuleSpec,
]


@pytest.mark.parametrize("model", SPEC_MODELS, ids=lambda model: model.__name__)
def test_every_spec_field_has_a_description(model: type[BaseModel]) -> None:
    assert [name for name, field in model.model_fields.items() if not field.description] == []
