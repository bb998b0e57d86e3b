"""Prompt and argument templates: Jinja2's SandboxedEnvironment, never plain eval.

A template may only read `inputs.*` and `nodes.<dep>.output...` of declared dependencies
(plus names an executor adds, such as `run` and `artifact` in an adaptive node). An argument
that is exactly one expression (`"{{ nodes.fetch.output }}"`) keeps its native type, so a list
stays a list; anything else renders to text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.exceptions import TemplateError
from jinja2.sandbox import SandboxedEnvironment

from bastion.errors import NodeError

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_SINGLE_EXPR = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)


def render(value: Any, context: dict[str, Any]) -> Any:
    """Render every string inside `value` (dicts and lists recursively)."""
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    if not isinstance(value, str) or "{" not in value:
        return value
    try:
        single = _SINGLE_EXPR.match(value)
        if single and "{{" not in single.group("expr") and "}}" not in single.group("expr"):
            return _ENV.compile_expression(single.group("expr"), undefined_to_none=False)(**context)
        return _ENV.from_string(value).render(**context)
    except TemplateError as exc:
        raise NodeError(f"template {value!r} could not be rendered: {exc}") from None


def references(template: str) -> Iterator[tuple[str, str | None]]:
    """Yield (root name, first attribute) for every variable the template reads.

    `{{ nodes.fetch.output }}` yields ("nodes", "fetch"); `{{ inputs.amount }}` yields
    ("inputs", "amount"). Raises jinja2's TemplateSyntaxError for bad syntax.
    """
    tree = _ENV.parse(template)
    seen_names: set[int] = set()
    for access in tree.find_all((nodes.Getattr, nodes.Getitem)):
        target = getattr(access, "node", None)
        if isinstance(target, nodes.Name):
            seen_names.add(id(target))
            if isinstance(access, nodes.Getattr):
                yield target.name, access.attr
            elif isinstance(access, nodes.Getitem) and isinstance(access.arg, nodes.Const) \
                    and isinstance(access.arg.value, str):
                yield target.name, access.arg.value
            else:
                yield target.name, None
    for name in tree.find_all(nodes.Name):
        if id(name) not in seen_names and name.ctx == "load":
            yield name.name, None


def strings_in(value: Any) -> Iterator[tuple[tuple[Any, ...], str]]:
    """Yield (path, text) for every templated string inside a nested value."""
    if isinstance(value, dict):
        for k, v in value.items():
            for path, text in strings_in(v):
                yield (k, *path), text
    elif isinstance(value, list):
        for i, v in enumerate(value):
            for path, text in strings_in(v):
                yield (i, *path), text
    elif isinstance(value, str) and ("{{" in value or "{%" in value):
        yield (), value
