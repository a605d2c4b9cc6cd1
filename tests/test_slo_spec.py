"""The SLO spec: loading SLO files into the domain model, their validation, and the burn windows.

Valid files live in ``configs/slo/good``, files invalid in one known way in ``configs/slo/bad``;
every bad file has a row in ``BAD_SLOS``, and a test keeps the folder and the table in step.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

from flowsight.configfiles import ConfigIssue, ConfigurationError
from flowsight.slo.loading import DEFAULT_SLOS, DEFAULTS_FILE, check_slo_file, load_slos
from flowsight.slo.model import (
    BURN_WINDOWS,
    CALENDAR_MONTH,
    BurnWindow,
    CompletionSli,
    ExceptionAgeSli,
    FreshnessSli,
    Slo,
    SpanErrorRatioSli,
    StageLatencySli,
    Window,
    burn_windows,
)
from flowsight.slo.spec import (
    CompletionSliSpec,
    ExceptionAgeSliSpec,
    FreshnessSliSpec,
    SloFileV1,
    SloSpec,
    SpanErrorRatioSliSpec,
    StageLatencySliSpec,
)
from flowsight.workflows import DEFAULT_WORKFLOWS

CONFIGS = Path(__file__).parent / "configs" / "slo"
GOOD = CONFIGS / "good"
BAD = CONFIGS / "bad"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "slos.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def only_issue(exc: pytest.ExceptionInfo[ConfigurationError]) -> ConfigIssue:
    assert len(exc.value.issues) == 1, exc.value.issues
    return exc.value.issues[0]


# -- retail defaults ----------------------------------------------------------------------------


def test_defaults_file_loads_exactly_the_built_in_defaults() -> None:
    catalog = load_slos(DEFAULTS_FILE, DEFAULT_WORKFLOWS)

    assert catalog.names() == DEFAULT_SLOS.names()
    for loaded, default in zip(catalog, DEFAULT_SLOS, strict=True):
        assert loaded == default
    assert catalog == DEFAULT_SLOS


def test_defaults_cover_the_retail_slos_of_the_issue() -> None:
    assert DEFAULT_SLOS.names() == [
        "order_completion",
        "return_completion",
        "erp_sync_lag",
        "erp_posting_delay",
        "refund_processing",
        "exception_aging",
        "api_error_ratio",
        "ingest_freshness",
    ]
    assert [slo.sli for slo in DEFAULT_SLOS] == [
        CompletionSli("order_to_cash"),
        CompletionSli("return_to_refund"),
        StageLatencySli("order_to_cash", "order_created", "erp_order_created", timedelta(minutes=15)),
        StageLatencySli("order_to_cash", "shipped", "invoiced", timedelta(hours=2)),
        StageLatencySli("return_to_refund", "return_received", "refund_issued", timedelta(hours=24)),
        ExceptionAgeSli(timedelta(hours=4), None),
        SpanErrorRatioSli(None),
        FreshnessSli(timedelta(minutes=15), None),
    ]
    assert {slo.window for slo in DEFAULT_SLOS} == {timedelta(days=28)}
    assert [slo.objective for slo in DEFAULT_SLOS] == [0.99] * 6 + [0.995, 0.99]
    assert [slo.group_by for slo in DEFAULT_SLOS] == [()] * 6 + [("system",), ("system",)]
    assert {slo.min_events for slo in DEFAULT_SLOS} == {20}


def test_defaults_file_passes_check_slo_file() -> None:
    assert check_slo_file(DEFAULTS_FILE, DEFAULT_WORKFLOWS) == []


# -- good files map to the frozen domain model ----------------------------------------------------

GOOD_SLOS = [
    pytest.param(
        "every-sli-kind.yaml",
        [
            Slo(
                name="web_order_completion",
                objective=0.995,
                window=timedelta(days=7),
                sli=CompletionSli("order_to_cash"),
                description="Web orders complete in time.",
                group_by=("channel", "attributes.region"),
                min_events=50,
                labels={"team": "commerce", "system": "oms"},
            ),
            Slo(
                name="wms_release_lag",
                objective=0.99,
                window=timedelta(days=7),
                sli=StageLatencySli(
                    "order_to_cash", "erp_order_created", "fulfillment_released", timedelta(minutes=30)
                ),
                min_events=0,
            ),
            Slo(
                name="return_exceptions",
                objective=0.9,
                window=timedelta(days=28),
                sli=ExceptionAgeSli(timedelta(hours=1), "return_to_refund"),
                group_by=("system",),
            ),
            Slo(
                name="erp_api_errors",
                objective=0.999,
                window=timedelta(days=28),
                sli=SpanErrorRatioSli(("erp", "middleware")),
                group_by=("system", "attributes.http.route"),
            ),
            Slo(
                name="erp_freshness",
                objective=0.95,
                window=timedelta(days=1),
                sli=FreshnessSli(timedelta(minutes=5), ("erp",)),
            ),
        ],
        id="one slo of each sli kind maps every field",
    ),
    pytest.param(
        "calendar-month.yaml",
        [
            Slo(
                name="monthly_order_completion",
                objective=0.99,
                window=CALENDAR_MONTH,
                sli=CompletionSli("order_to_cash"),
                description="",
                group_by=(),
                min_events=20,
                labels={},
            )
        ],
        id="calendar_month is accepted as a window and unset fields take their defaults",
    ),
]


@pytest.mark.parametrize(("name", "expected"), GOOD_SLOS)
def test_good_slo_file_maps_to_the_domain_model(name: str, expected: list[Slo]) -> None:
    catalog = load_slos(GOOD / name, DEFAULT_WORKFLOWS)

    assert list(catalog) == expected
    assert catalog.get(expected[0].name) is catalog.slos[0]
    assert check_slo_file(GOOD / name, DEFAULT_WORKFLOWS) == []


def test_loaded_slos_are_frozen() -> None:
    slo = load_slos(GOOD / "every-sli-kind.yaml", DEFAULT_WORKFLOWS).slos[1]

    with pytest.raises(dataclasses.FrozenInstanceError):
        slo.objective = 0.5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        slo.sli.threshold = timedelta(0)  # type: ignore[union-attr]


def test_environment_variables_are_substituted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWSIGHT_TEST_SLO_OBJECTIVE", "0.97")
    path = write(
        tmp_path,
        "version: 1\n"
        "slos:\n"
        "  - name: order_completion\n"
        "    objective: ${FLOWSIGHT_TEST_SLO_OBJECTIVE}\n"
        "    window: ${FLOWSIGHT_TEST_SLO_UNSET_WINDOW:-14d}\n"
        "    sli: {kind: completion, workflow: order_to_cash}\n",
    )

    (slo,) = load_slos(path, DEFAULT_WORKFLOWS)

    assert (slo.objective, slo.window) == (0.97, timedelta(days=14))


# -- bad files -----------------------------------------------------------------------------------

# (file, field path, reason fragment, line)
BAD_SLOS = [
    pytest.param(
        "objective-one.yaml",
        "slos[0].objective",
        "objective of 1.0 leaves no error budget: it must be below 1",
        4,
        id="objective of 1.0 is rejected",
    ),
    pytest.param(
        "objective-zero.yaml",
        "slos[0].objective",
        "objective of 0 is not above 0",
        4,
        id="objective of 0 is rejected",
    ),
    pytest.param(
        "objective-percent.yaml",
        "slos[0].objective",
        "objective of 99.5 is above 1: write a fraction, e.g. 0.995",
        4,
        id="an objective written as a percentage is rejected with a hint",
    ),
    pytest.param(
        "unknown-sli-kind.yaml",
        "slos[0].sli.kind",
        "unknown sli kind 'latency': expected one of completion, stage_latency, exception_age, "
        "span_error_ratio, freshness",
        7,
        id="an unknown sli kind is rejected naming the kind",
    ),
    pytest.param(
        "missing-sli-kind.yaml",
        "slos[0].sli.kind",
        "kind is required: one of completion,",
        7,
        id="an sli without a kind is rejected",
    ),
    pytest.param(
        "sli-field-of-another-kind.yaml",
        "slos[0].sli.services",
        "unknown field",
        12,
        id="a field of another sli kind is an unknown field at its own path",
    ),
    pytest.param(
        "stage-of-another-workflow.yaml",
        "slos[0].sli.to_stage",
        "'refund_issued' is not a stage of workflow 'order_to_cash' (it is a stage of return_to_refund)",
        10,
        id="a stage_latency to a stage of another workflow is rejected",
    ),
    pytest.param(
        "from-after-to.yaml",
        "slos[0].sli.from_stage",
        "from_stage 'invoiced' comes after to_stage 'shipped' in workflow 'order_to_cash'",
        9,
        id="from_stage after to_stage is rejected",
    ),
    pytest.param(
        "same-stage.yaml",
        "slos[0].sli.to_stage",
        "to_stage must differ from from_stage 'shipped'",
        10,
        id="a stage_latency from a stage to itself is rejected",
    ),
    pytest.param(
        "zero-threshold.yaml",
        "slos[0].sli.threshold",
        "must be a duration greater than zero",
        11,
        id="a threshold of 0s is rejected",
    ),
    pytest.param(
        "unknown-workflow.yaml",
        "slos[0].sli.workflow",
        "unknown workflow 'quote_to_order': expected one of order_to_cash, return_to_refund",
        8,
        id="an unknown workflow is rejected",
    ),
    pytest.param(
        "exception-age-unknown-workflow.yaml",
        "slos[0].sli.workflow",
        "unknown workflow 'order_to_kash'",
        8,
        id="an exception_age on an unknown workflow is rejected",
    ),
    pytest.param(
        "duplicate-name.yaml",
        "slos[1].name",
        "duplicate slo 'order_completion'",
        9,
        id="a duplicate slo name is rejected",
    ),
    pytest.param(
        "group-by-unknown-key.yaml",
        "slos[0].group_by[1]",
        "cannot group a completion sli by 'region': expected channel or attributes.<key>",
        6,
        id="a group_by on an unknown key is rejected",
    ),
    pytest.param(
        "group-freshness-by-channel.yaml",
        "slos[0].group_by[0]",
        "cannot group a freshness sli by 'channel': expected system",
        6,
        id="a freshness slo grouped by channel is rejected",
    ),
    pytest.param(
        "duplicate-group-by-key.yaml",
        "slos[0].group_by[1]",
        "duplicate group_by key 'channel'",
        6,
        id="a group_by key given twice is rejected",
    ),
    pytest.param(
        "invalid-window.yaml",
        "slos[0].window",
        "window must be a duration such as 28d, or calendar_month: invalid duration 'monthly'",
        5,
        id="a window of monthly is rejected naming calendar_month",
    ),
    pytest.param(
        "negative-min-events.yaml",
        "slos[0].min_events",
        "greater than or equal to 0",
        6,
        id="a negative min_events is rejected",
    ),
    pytest.param(
        "name-not-snake-case.yaml",
        "slos[0].name",
        "String should match pattern",
        3,
        id="a name that is not lower_snake_case is rejected",
    ),
    pytest.param(
        "wrong-version.yaml",
        "version",
        "Input should be 1",
        1,
        id="version 2 is not a known version",
    ),
    pytest.param(
        "empty-services.yaml",
        "slos[0].sli.services",
        "at least 1 item",
        8,
        id="an empty services list is rejected rather than meaning no service",
    ),
]


@pytest.mark.parametrize(("name", "path", "reason", "line"), BAD_SLOS)
def test_bad_slo_file_names_field_reason_and_line(name: str, path: str, reason: str, line: int) -> None:
    with pytest.raises(ConfigurationError) as exc:
        load_slos(BAD / name, DEFAULT_WORKFLOWS)

    issue = only_issue(exc)
    assert (issue.source, issue.path, issue.line) == (str(BAD / name), path, line)
    assert reason in issue.reason


@pytest.mark.parametrize(("name", "path", "reason", "line"), BAD_SLOS)
def test_check_slo_file_returns_the_same_issue(name: str, path: str, reason: str, line: int) -> None:
    issues = check_slo_file(BAD / name, DEFAULT_WORKFLOWS)

    assert [(i.source, i.path, i.line) for i in issues] == [(str(BAD / name), path, line)]
    assert reason in issues[0].reason


def test_good_folder_holds_exactly_the_good_files() -> None:
    assert sorted(p.name for p in GOOD.glob("*.yaml")) == sorted(str(case.values[0]) for case in GOOD_SLOS)


def test_bad_folder_holds_exactly_the_tabled_files() -> None:
    assert sorted(p.name for p in BAD.glob("*.yaml")) == sorted(str(case.values[0]) for case in BAD_SLOS)


def test_every_problem_of_one_slo_file_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "version: 1\n"
        "slos:\n"
        "  - name: lag\n"
        "    objective: 0.99\n"
        "    window: 28d\n"
        "    group_by: [region]\n"
        "    sli:\n"
        "      kind: stage_latency\n"
        "      workflow: order_to_cash\n"
        "      from_stage: packed\n"
        "      to_stage: invoiced\n"
        "      threshold: 1h\n"
        "  - name: lag\n"
        "    objective: 0.99\n"
        "    window: 28d\n"
        "    sli: {kind: completion, workflow: quote_to_order}\n",
    )

    with pytest.raises(ConfigurationError) as exc:
        load_slos(path, DEFAULT_WORKFLOWS)

    assert str(exc.value).splitlines() == [
        f"{path}:13: slos[1].name: duplicate slo 'lag'",
        f"{path}:10: slos[0].sli.from_stage: 'packed' is not a stage of workflow 'order_to_cash'",
        f"{path}:6: slos[0].group_by[0]: cannot group a stage_latency sli by 'region': "
        "expected channel or attributes.<key>",
        f"{path}:16: slos[1].sli.workflow: unknown workflow 'quote_to_order': "
        "expected one of order_to_cash, return_to_refund",
    ]


def test_workflows_are_checked_against_the_given_catalog() -> None:
    with pytest.raises(ConfigurationError) as exc:
        load_slos(
            DEFAULTS_FILE, DEFAULT_WORKFLOWS.of(wf for wf in DEFAULT_WORKFLOWS if wf.name == "order_to_cash")
        )

    assert [(i.path, i.line, i.reason) for i in exc.value.issues] == [
        ("slos[1].sli.workflow", 19, "unknown workflow 'return_to_refund': expected one of order_to_cash"),
        ("slos[4].sli.workflow", 52, "unknown workflow 'return_to_refund': expected one of order_to_cash"),
    ]


def test_out_of_sequence_stages_have_no_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "version: 1\n"
        "slos:\n"
        "  - name: cancel_after_invoice\n"
        "    objective: 0.99\n"
        "    window: 28d\n"
        "    sli: {kind: stage_latency, workflow: order_to_cash, from_stage: invoiced, to_stage: cancelled,"
        " threshold: 1h}\n",
    )

    (slo,) = load_slos(path, DEFAULT_WORKFLOWS)

    assert slo.sli == StageLatencySli("order_to_cash", "invoiced", "cancelled", timedelta(hours=1))


def test_unreadable_file_is_a_configuration_issue(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"

    assert check_slo_file(missing, DEFAULT_WORKFLOWS) == [
        ConfigIssue(str(missing), "", "cannot read: No such file or directory")
    ]


# -- the spec documents itself ---------------------------------------------------------------------

SPEC_MODELS: list[type[BaseModel]] = [
    SloFileV1,
    SloSpec,
    CompletionSliSpec,
    StageLatencySliSpec,
    ExceptionAgeSliSpec,
    SpanErrorRatioSliSpec,
    FreshnessSliSpec,
]


@pytest.mark.parametrize("model", SPEC_MODELS, ids=lambda model: model.__name__)
def test_every_spec_field_has_a_description(model: type[BaseModel]) -> None:
    assert [name for name, field in model.model_fields.items() if not field.description] == []


def test_json_schema_discriminates_the_sli_on_kind() -> None:
    sli = SloFileV1.model_json_schema()["$defs"]["SloSpec"]["properties"]["sli"]

    assert sorted(sli["discriminator"]["mapping"]) == [
        "completion",
        "exception_age",
        "freshness",
        "span_error_ratio",
        "stage_latency",
    ]


def test_spec_built_in_python_validates_its_sli() -> None:
    slo = SloSpec(
        name="lag",
        objective=0.99,
        window="28d",
        sli=StageLatencySliSpec(
            kind="stage_latency", workflow="order_to_cash", from_stage="a", to_stage="b", threshold="1m"
        ),
    )

    assert isinstance(slo.sli, StageLatencySliSpec)
    assert slo.sli.threshold == "1m"


# -- burn-rate windows -----------------------------------------------------------------------------


def h(hours: float) -> timedelta:
    return timedelta(hours=hours)


def m(minutes: float) -> timedelta:
    return timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("slo_window", "expected"),
    [
        pytest.param(
            timedelta(days=30),
            [
                BurnWindow("page", 14.4, h(1), m(5)),
                BurnWindow("page", 6.0, h(6), m(30)),
                BurnWindow("ticket", 3.0, h(24), h(2)),
                BurnWindow("ticket", 1.0, h(72), h(6)),
            ],
            id="a 30d window uses the workbook table as it stands",
        ),
        pytest.param(
            timedelta(days=28),
            [
                BurnWindow("page", 14.4, m(56), timedelta(minutes=4, seconds=40)),
                BurnWindow("page", 6.0, h(5) + m(36), m(28)),
                BurnWindow("ticket", 3.0, h(22) + m(24), h(1) + m(52)),
                BurnWindow("ticket", 1.0, h(67) + m(12), h(5) + m(36)),
            ],
            id="a 28d window scales 1h to 56m exactly",
        ),
        pytest.param(
            timedelta(days=7),
            [
                BurnWindow("page", 14.4, m(14), timedelta(seconds=70)),
                BurnWindow("page", 6.0, h(1) + m(24), m(7)),
                BurnWindow("ticket", 3.0, h(5) + m(36), m(28)),
                BurnWindow("ticket", 1.0, h(16) + m(48), h(1) + m(24)),
            ],
            id="a 7d window scales every window to a quarter and less",
        ),
        pytest.param(
            CALENDAR_MONTH,
            [
                BurnWindow("page", 14.4, h(1), m(5)),
                BurnWindow("page", 6.0, h(6), m(30)),
                BurnWindow("ticket", 3.0, h(24), h(2)),
                BurnWindow("ticket", 1.0, h(72), h(6)),
            ],
            id="a calendar month uses the 30d table",
        ),
    ],
)
def test_burn_windows_scale_with_the_slo_window(slo_window: Window, expected: list[BurnWindow]) -> None:
    assert list(burn_windows(slo_window)) == expected


@pytest.mark.parametrize(
    "slo_window",
    [timedelta(days=30), timedelta(days=28), timedelta(days=7), timedelta(days=1)],
    ids=["30d", "28d", "7d", "1d"],
)
def test_each_burn_window_spends_the_same_share_of_the_budget(slo_window: timedelta) -> None:
    shares = [round(w.burn_rate * (w.long / slo_window), 9) for w in burn_windows(slo_window)]

    assert shares == [0.02, 0.05, 0.1, 0.1]
    assert [w.long / w.short for w in burn_windows(slo_window)] == [12.0] * 4


def test_burn_windows_reject_an_empty_slo_window() -> None:
    with pytest.raises(ValueError, match="longer than zero"):
        burn_windows(timedelta(0))


def test_an_slo_reads_the_burn_windows_of_its_window() -> None:
    slo = DEFAULT_SLOS.get("erp_sync_lag")

    assert slo is not None
    assert slo.burn_windows == burn_windows(timedelta(days=28))
    assert slo.burn_windows[0] == BurnWindow("page", 14.4, m(56), timedelta(minutes=4, seconds=40))
    assert burn_windows(timedelta(days=30)) == BURN_WINDOWS


def test_check_config_validates_slo_files(capsys: pytest.CaptureFixture[str]) -> None:
    from flowsight.cli import main

    bad = sorted((Path(__file__).parent / "configs" / "slo" / "bad").glob("*.yaml"))[0]
    assert main(["check-config", str(DEFAULTS_FILE), str(bad)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"ok: {DEFAULTS_FILE} (slos)"]
    assert err.startswith(f"error: {bad}:")
