"""Config loading, one pipeline: read -> substitute ``${ENV}`` -> parse YAML -> validate -> map.

Every failure becomes one :class:`ConfigurationError` listing each problem with its file, line,
field path and reason, so ``flowsight check-config`` can print them all at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from flowsight.auth import Principal, Token, TokenSet, digest_of
from flowsight.durations import parse_duration
from flowsight.spec import TokensFileV1, TopologyFileV1, WorkflowsFileV1
from flowsight.topology import System, Topology, find_cycle
from flowsight.workflows import Stage, Workflow, WorkflowCatalog

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration source."""

    source: str
    path: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.path or '<root>'}: {self.reason}"


class ConfigurationError(Exception):
    """Configuration that cannot be used; ``issues`` lists every problem found."""

    def __init__(self, issues: Sequence[ConfigIssue]):
        self.issues = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))

    @classmethod
    def single(cls, source: str, path: str, reason: str) -> ConfigurationError:
        return cls([ConfigIssue(source, path, reason)])


def format_loc(loc: Iterable[str | int]) -> str:
    """``("workflows", 0, "stages", 2, "sla")`` -> ``workflows[0].stages[2].sla``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def substitute_env(text: str, source: str) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}``; an unset variable without default is an error."""
    missing: list[tuple[str, int]] = []

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        missing.append((name, text.count("\n", 0, match.start()) + 1))
        return ""

    result = _ENV_REF.sub(repl, text)
    if missing:
        raise ConfigurationError(
            [
                ConfigIssue(source, "", f"environment variable {name} is not set", line)
                for name, line in missing
            ]
        )
    return result


@dataclass(frozen=True)
class _Document:
    source: str
    data: Any
    node: yaml.Node | None


def _read(path: Path) -> _Document:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError.single(source, "", f"cannot read: {exc.strerror or exc}") from None
    text = substitute_env(text, source)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = f"invalid YAML: {getattr(exc, 'problem', None) or exc}"
        raise ConfigurationError([ConfigIssue(source, "", reason, line)]) from None
    return _Document(source, data, node)


def read_yaml(path: Path) -> Any:
    """Read, substitute and parse one YAML file."""
    return _read(path).data


def _line_of(node: yaml.Node | None, loc: Loc) -> int | None:
    """The 1-based line of the value at ``loc`` (or of its nearest existing parent)."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    child = value
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node = child
        line = node.start_mark.line + 1
    return line


def _pydantic_issues(exc: ValidationError, doc: _Document) -> list[ConfigIssue]:
    issues = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        reason = err["msg"]
        if err["type"] == "extra_forbidden":
            reason = "unknown field"
        elif reason.startswith("Value error, "):
            reason = reason[len("Value error, ") :]
        issues.append(ConfigIssue(doc.source, format_loc(loc), reason, _line_of(doc.node, loc)))
    return issues


def _validate(model: type[BaseModel], doc: _Document) -> BaseModel:
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigurationError(_pydantic_issues(exc, doc)) from None


# -- workflows ------------------------------------------------------------------------------


def _workflow_rules(spec: WorkflowsFileV1) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    seen_workflows: set[str] = set()
    for wi, wf in enumerate(spec.workflows):
        base: Loc = ("workflows", wi)
        if wf.name in seen_workflows:
            problems.append(((*base, "name"), f"duplicate workflow {wf.name!r}"))
        seen_workflows.add(wf.name)
        names: set[str] = set()
        first_in_sequence = True
        for si, stage in enumerate(wf.stages):
            if stage.name in names:
                problems.append(((*base, "stages", si, "name"), f"duplicate stage {stage.name!r}"))
            names.add(stage.name)
            if stage.in_sequence and first_in_sequence:
                first_in_sequence = False
                if stage.sla is not None:
                    problems.append(
                        (
                            (*base, "stages", si, "sla"),
                            "the first stage has no previous stage to measure an SLA from",
                        )
                    )
            elif not stage.in_sequence and stage.sla is not None:
                problems.append(((*base, "stages", si, "sla"), "an out-of-sequence stage has no SLA"))
        if first_in_sequence:
            problems.append(((*base, "stages"), "at least one stage must be in sequence"))
        for ti, terminal in enumerate(wf.terminal_stages):
            if terminal not in names:
                problems.append(
                    (
                        (*base, "terminal_stages", ti),
                        f"{terminal!r} is not a stage of workflow {wf.name!r}",
                    )
                )
    return problems


def _to_catalog(spec: WorkflowsFileV1) -> WorkflowCatalog:
    return WorkflowCatalog.of(
        Workflow(
            name=wf.name,
            stages=tuple(
                Stage(
                    s.name,
                    s.owner,
                    parse_duration(s.sla) if s.sla is not None else None,
                    s.in_sequence,
                )
                for s in wf.stages
            ),
            terminal_stages=frozenset(wf.terminal_stages),
            completion_deadline=parse_duration(wf.completion_deadline),
        )
        for wf in spec.workflows
    )


def _load_workflows_doc(doc: _Document) -> WorkflowCatalog:
    spec = _validate(WorkflowsFileV1, doc)
    assert isinstance(spec, WorkflowsFileV1)
    _raise_rules(doc, _workflow_rules(spec))
    return _to_catalog(spec)


def load_workflows(path: Path) -> WorkflowCatalog:
    """Load and validate a workflows file."""
    return _load_workflows_doc(_read(path))


# -- topology -------------------------------------------------------------------------------


def _topology_rules(spec: TopologyFileV1) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    declared: dict[str, int] = {}
    for si, system in enumerate(spec.systems):
        if system.name in declared:
            problems.append((("systems", si, "name"), f"duplicate system {system.name!r}"))
        declared.setdefault(system.name, si)
    for si, system in enumerate(spec.systems):
        for di, dep in enumerate(system.depends_on):
            if dep not in declared:
                problems.append((("systems", si, "depends_on", di), f"unknown system {dep!r}"))
            elif dep == system.name:
                problems.append((("systems", si, "depends_on", di), "a system cannot depend on itself"))
    edges = {s.name: [d for d in s.depends_on if d != s.name] for s in spec.systems}
    cycle = find_cycle(edges)
    if cycle and len(cycle) > 2:
        problems.append(
            (
                ("systems", declared[cycle[0]], "depends_on"),
                "dependency cycle: " + " -> ".join(cycle),
            )
        )
    return problems


def _load_topology_doc(doc: _Document) -> Topology:
    spec = _validate(TopologyFileV1, doc)
    assert isinstance(spec, TopologyFileV1)
    _raise_rules(doc, _topology_rules(spec))
    return Topology(tuple(System(s.name, tuple(s.depends_on)) for s in spec.systems))


def load_topology(path: Path) -> Topology:
    """Load and validate a topology file; a dependency cycle is an error."""
    return _load_topology_doc(_read(path))


# -- tokens ---------------------------------------------------------------------------------


def _load_tokens_doc(doc: _Document) -> TokenSet:
    spec = _validate(TokensFileV1, doc)
    assert isinstance(spec, TokensFileV1)
    problems: list[tuple[Loc, str]] = []
    names: set[str] = set()
    digests: set[bytes] = set()
    tokens = []
    for ti, item in enumerate(spec.tokens):
        if item.name in names:
            problems.append((("tokens", ti, "name"), f"duplicate token name {item.name!r}"))
        names.add(item.name)
        digest = bytes.fromhex(item.sha256) if item.sha256 else digest_of(item.token or "")
        if digest in digests:
            problems.append((("tokens", ti), "the same token is given twice"))
        digests.add(digest)
        principal = Principal(
            item.name,
            frozenset(item.scopes),
            frozenset(item.systems) if item.systems else None,
            item.requests_per_second,
        )
        tokens.append(Token(principal, digest))
    _raise_rules(doc, problems)
    return TokenSet(tuple(tokens))


def load_tokens(path: Path) -> TokenSet:
    """Load and validate a tokens file."""
    return _load_tokens_doc(_read(path))


def _raise_rules(doc: _Document, problems: list[tuple[Loc, str]]) -> None:
    if problems:
        raise ConfigurationError(
            [
                ConfigIssue(doc.source, format_loc(loc), reason, _line_of(doc.node, loc))
                for loc, reason in problems
            ]
        )


# -- settings -------------------------------------------------------------------------------


def read_settings_file(path: Path) -> dict[str, Any]:
    """The mapping of a settings YAML file (validated later, with the environment applied)."""
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigurationError.single(str(path), "", "a settings file must be a mapping of setting: value")
    return data


def settings_issues(
    exc: ValidationError, source: str, file_keys: set[str], flag_keys: frozenset[str] = frozenset()
) -> list[ConfigIssue]:
    """Name each invalid setting by where it came from: a flag, the file's field or the variable."""
    issues = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        reason = "unknown setting" if err["type"] == "extra_forbidden" else err["msg"]
        reason = reason.removeprefix("Value error, ")
        env = f"FLOWSIGHT_{field.upper()}"
        if field in flag_keys:
            where = f"flag --{field.replace('_', '-')}"
        elif field in file_keys and env not in os.environ:
            where = source
        else:
            where = f"environment {env}"
        issues.append(ConfigIssue(where, format_loc(err["loc"]), reason))
    return issues


def _check_settings_doc(doc: _Document) -> None:
    from flowsight.settings import Settings

    if doc.data is None:
        return
    if not isinstance(doc.data, dict):
        raise ConfigurationError.single(doc.source, "", "a settings file must be a mapping of setting: value")

    class FileOnly(Settings):
        @classmethod
        def settings_customise_sources(  # type: ignore[override]
            cls, settings_cls: Any, init_settings: Any, **_other_sources: Any
        ) -> tuple[Any, ...]:
            return (init_settings,)

    try:
        # Validate the file alone: the environment must not mask or cause file errors.
        FileOnly(**doc.data)
    except ValidationError as exc:
        raise ConfigurationError(_pydantic_issues(exc, doc)) from None


# -- check-config ---------------------------------------------------------------------------


Checker = Callable[[Path], list[ConfigIssue]]
"""Validates one file of a kind the core does not know (registered by the composition root)."""


def detect_kind(data: Any, extra_kinds: Iterable[str] = ()) -> str:
    """What a config file holds, from its top-level keys: workflows, topology, tokens, one of
    ``extra_kinds`` (such as slos), or settings."""
    if isinstance(data, dict):
        if "workflows" in data:
            return "workflows"
        if "systems" in data:
            return "topology"
        if "tokens" in data:
            return "tokens"
        for kind in extra_kinds:
            if kind in data:
                return kind
    return "settings"


def check_file(path: Path, checkers: Mapping[str, Checker] | None = None) -> tuple[str, list[ConfigIssue]]:
    """Validate one file of any kind; returns its kind and every problem found.

    ``checkers`` validate kinds owned by other packages, keyed by their top-level key.
    """
    checkers = checkers or {}
    try:
        doc = _read(path)
    except ConfigurationError as exc:
        return "unknown", exc.issues
    kind = detect_kind(doc.data, checkers)
    try:
        if kind == "workflows":
            _load_workflows_doc(doc)
        elif kind == "topology":
            _load_topology_doc(doc)
        elif kind == "tokens":
            _load_tokens_doc(doc)
        elif kind in checkers:
            return kind, checkers[kind](path)
        else:
            _check_settings_doc(doc)
    except ConfigurationError as exc:
        return kind, exc.issues
    return kind, []
