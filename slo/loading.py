"""SLO file loading: the config pipeline of :mod:`flowsight.configfiles`, then the SLO rules.

Read -> substitute ``${ENV}`` -> parse YAML -> validate the spec -> check the rules that need the
workflow catalog -> map to :class:`~flowsight.slo.model.SloCatalog`. Every problem becomes one
:class:`ConfigurationError` naming the file, line and field.
"""

from __future__ import annotations

import re
from pathlib import Path

from flowsight.configfiles import (
    ConfigIssue,
    ConfigurationError,
    Loc,
    _raise_rules,
    _read,
    _validate,
)
from flowsight.durations import parse_duration
from flowsight.slo.model import (
    CALENDAR_MONTH,
    CompletionSli,
    ExceptionAgeSli,
    FreshnessSli,
    Sli,
    Slo,
    SloCatalog,
    SpanErrorRatioSli,
    StageLatencySli,
    Window,
)
from flowsight.slo.spec import (
    CompletionSliSpec,
    ExceptionAgeSliSpec,
    FreshnessSliSpec,
    SliSpec,
    SloFileV1,
    SloSpec,
    SpanErrorRatioSliSpec,
    StageLatencySliSpec,
)
from flowsight.workflows import DEFAULT_WORKFLOWS, Workflow, WorkflowCatalog

DEFAULTS_FILE = Path(__file__).with_name("defaults.yaml")
"""The retail default SLOs as a file users can copy; it loads to exactly :data:`DEFAULT_SLOS`."""

_ATTRIBUTE_KEY = re.compile(r"^attributes\.[A-Za-z0-9_.\-]{1,128}$")

# What each SLI's series can be split by: an order has a channel and attributes (it passes
# through every system, so it has no one system); an exception the system that reported it;
# spans a service (their system) and attributes; freshness is known per system only.
_GROUP_KEYS: dict[str, tuple[str, ...]] = {
    "completion": ("channel", "attributes.<key>"),
    "stage_latency": ("channel", "attributes.<key>"),
    "exception_age": ("channel", "system", "attributes.<key>"),
    "span_error_ratio": ("system", "attributes.<key>"),
    "freshness": ("system",),
}

# -- rules ------------------------------------------------------------------------------------


def _duplicate_names(spec: SloFileV1) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    seen: set[str] = set()
    for si, slo in enumerate(spec.slos):
        if slo.name in seen:
            problems.append((("slos", si, "name"), f"duplicate slo {slo.name!r}"))
        seen.add(slo.name)
    return problems


def _workflow(name: str, loc: Loc, catalog: WorkflowCatalog) -> tuple[Workflow | None, list[tuple[Loc, str]]]:
    workflow = catalog.get(name)
    if workflow is None:
        known = ", ".join(catalog.names()) or "none configured"
        return None, [(loc, f"unknown workflow {name!r}: expected one of {known}")]
    return workflow, []


def _stage_problem(stage: str, workflow: Workflow, catalog: WorkflowCatalog) -> str | None:
    if workflow.has_stage(stage):
        return None
    reason = f"{stage!r} is not a stage of workflow {workflow.name!r}"
    others = [wf.name for wf in catalog if wf.has_stage(stage)]
    if others:
        reason += f" (it is a stage of {', '.join(others)})"
    return reason


def _stage_latency_rules(
    sli: StageLatencySliSpec, base: Loc, catalog: WorkflowCatalog
) -> list[tuple[Loc, str]]:
    workflow, problems = _workflow(sli.workflow, (*base, "workflow"), catalog)
    if workflow is None:
        return problems
    for field in ("from_stage", "to_stage"):
        reason = _stage_problem(getattr(sli, field), workflow, catalog)
        if reason:
            problems.append(((*base, field), reason))
    if problems:
        return problems
    if sli.from_stage == sli.to_stage:
        return [((*base, "to_stage"), f"to_stage must differ from from_stage {sli.from_stage!r}")]
    sequence = [stage.name for stage in workflow.sequence]
    in_sequence = sli.from_stage in sequence and sli.to_stage in sequence
    if in_sequence and sequence.index(sli.from_stage) > sequence.index(sli.to_stage):
        problems.append(
            (
                (*base, "from_stage"),
                f"from_stage {sli.from_stage!r} comes after to_stage {sli.to_stage!r} "
                f"in workflow {workflow.name!r}",
            )
        )
    return problems


def _sli_rules(sli: SliSpec, base: Loc, catalog: WorkflowCatalog) -> list[tuple[Loc, str]]:
    if isinstance(sli, StageLatencySliSpec):
        return _stage_latency_rules(sli, base, catalog)
    if isinstance(sli, CompletionSliSpec | ExceptionAgeSliSpec) and sli.workflow is not None:
        return _workflow(sli.workflow, (*base, "workflow"), catalog)[1]
    return []


def _one_of(choices: tuple[str, ...]) -> str:
    return choices[0] if len(choices) == 1 else f"{', '.join(choices[:-1])} or {choices[-1]}"


def _group_by_rules(slo: SloSpec, base: Loc) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    allowed = _GROUP_KEYS[slo.sli.kind]
    seen: set[str] = set()
    for gi, key in enumerate(slo.group_by):
        loc: Loc = (*base, "group_by", gi)
        is_attribute = _ATTRIBUTE_KEY.match(key) is not None
        if not (key in allowed or (is_attribute and "attributes.<key>" in allowed)):
            problems.append(
                (loc, f"cannot group a {slo.sli.kind} sli by {key!r}: expected {_one_of(allowed)}")
            )
        elif key in seen:
            problems.append((loc, f"duplicate group_by key {key!r}"))
        seen.add(key)
    return problems


def _slo_rules(spec: SloFileV1, catalog: WorkflowCatalog) -> list[tuple[Loc, str]]:
    problems = _duplicate_names(spec)
    for si, slo in enumerate(spec.slos):
        problems += _sli_rules(slo.sli, ("slos", si, "sli"), catalog)
        problems += _group_by_rules(slo, ("slos", si))
    return problems


# -- mapping ----------------------------------------------------------------------------------


def _to_window(value: str | int) -> Window:
    return CALENDAR_MONTH if value == "calendar_month" else parse_duration(value)


def _to_sli(sli: SliSpec) -> Sli:
    if isinstance(sli, CompletionSliSpec):
        return CompletionSli(sli.workflow)
    if isinstance(sli, StageLatencySliSpec):
        return StageLatencySli(sli.workflow, sli.from_stage, sli.to_stage, parse_duration(sli.threshold))
    if isinstance(sli, ExceptionAgeSliSpec):
        return ExceptionAgeSli(parse_duration(sli.threshold), sli.workflow)
    if isinstance(sli, SpanErrorRatioSliSpec):
        return SpanErrorRatioSli(tuple(sli.services) if sli.services is not None else None)
    assert isinstance(sli, FreshnessSliSpec)
    return FreshnessSli(
        parse_duration(sli.threshold), tuple(sli.systems) if sli.systems is not None else None
    )


def _to_catalog(spec: SloFileV1) -> SloCatalog:
    return SloCatalog.of(
        Slo(
            name=slo.name,
            objective=float(slo.objective),
            window=_to_window(slo.window),
            sli=_to_sli(slo.sli),
            description=slo.description,
            group_by=tuple(slo.group_by),
            min_events=slo.min_events,
            labels=dict(slo.labels),
        )
        for slo in spec.slos
    )


def load_slos(path: Path, catalog: WorkflowCatalog) -> SloCatalog:
    """Load and validate an SLO file against the workflows it measures.

    Raises:
        ConfigurationError: every problem of the file, each with its line and field path.
    """
    doc = _read(path)
    spec = _validate(SloFileV1, doc)
    assert isinstance(spec, SloFileV1)
    _raise_rules(doc, _slo_rules(spec, catalog))
    return _to_catalog(spec)


def check_slo_file(doc_path: Path, catalog: WorkflowCatalog) -> list[ConfigIssue]:
    """Every problem of an SLO file (none when it is valid), for ``flowsight check-config``."""
    try:
        load_slos(doc_path, catalog)
    except ConfigurationError as exc:
        return exc.issues
    return []


# -- retail defaults ----------------------------------------------------------------------------

DEFAULT_SLOS: SloCatalog = load_slos(DEFAULTS_FILE, DEFAULT_WORKFLOWS)
"""The retail defaults, read from ``defaults.yaml`` (the file users copy to start their own)."""
"""The retail defaults of the design, over the default workflows; :data:`DEFAULTS_FILE` as values."""
