"""Load workflow.yaml into a WorkflowSpec, or fail with every problem as FILE:LINE:COL lines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bastion.errors import SpecError, UserError
from bastion.spec._yaml import Located, load_located, position
from bastion.spec.graph import check_graph
from bastion.spec.models import WorkflowSpec

_NODE_TYPES = ("tool", "routine", "approval", "adaptive")


@dataclass(frozen=True)
class LoadedSpec:
    """A validated workflow, with the text it came from (recorded in the run) and its folder."""

    spec: WorkflowSpec
    text: str
    base_dir: Path
    path: Path


def load_spec(path: str | Path) -> LoadedSpec:
    """Read and validate a workflow file; raise SpecError / UserError with what to change."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; pass the path of a workflow.yaml") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the workflow: {exc}") from None
    return LoadedSpec(parse_spec(text, str(path)), text, path.resolve().parent, path)


def parse_spec(text: str, filename: str = "workflow.yaml") -> WorkflowSpec:
    """Validate workflow text; `filename` only labels the error lines."""
    try:
        data, located = load_located(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError([f"{filename}:{line}:{col}: YAML syntax error: {problem}"]) from None
    if not isinstance(data, dict):
        raise SpecError([f"{filename}:1:1: a workflow must be a mapping with name and nodes"])
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_pydantic_problems(exc, data, located, filename)) from None
    problems = [f"{filename}:{line}:{col}: {msg}"
                for path, msg in check_graph(spec)
                for line, col in [position(located, path)]]
    if problems:
        raise SpecError(problems)
    return spec


def _pydantic_problems(exc: ValidationError, data: dict[str, Any],
                       located: Located | None, filename: str) -> list[str]:
    problems: list[str] = []
    seen: set[tuple[Any, ...]] = set()
    for err in exc.errors():
        loc = _without_union_tag(tuple(err["loc"]))
        kind = err["type"]
        if kind.startswith("union_tag") or kind == "union_tag_invalid":
            message = f"node type must be one of {', '.join(_NODE_TYPES)}"
            loc = (*loc, "type")
        elif kind == "extra_forbidden":
            message = f"unknown key '{loc[-1]}'"
        elif kind == "missing":
            message = f"missing required field '{loc[-1]}'"
        else:
            message = f"{_dotted(loc)}: {err['msg']}"
        if (loc, message) in seen:
            continue
        seen.add((loc, message))
        line, col = position(located, loc)
        problems.append(f"{filename}:{line}:{col}: {message}")
    return problems


def _without_union_tag(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    if len(loc) >= 3 and loc[0] == "nodes" and isinstance(loc[1], int) and loc[2] in _NODE_TYPES:
        return loc[:2] + loc[3:]
    return loc


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for step in loc:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out or "workflow"
