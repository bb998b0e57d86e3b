"""Graph checks that Pydantic cannot do: references between nodes, agents, tools and templates.

Each problem is (path into the YAML, message); the loader turns paths into LINE:COL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jinja2.exceptions import TemplateSyntaxError

from bastion.spec.models import AdaptiveNode, ApprovalNode, RoutineNode, ToolNode, WorkflowSpec
from bastion.spec.templates import references, strings_in

Problem = tuple[tuple[Any, ...], str]


def check_graph(spec: WorkflowSpec) -> list[Problem]:
    problems: list[Problem] = []
    ids: dict[str, int] = {}
    for index, node in enumerate(spec.nodes):
        if node.id in ids:
            problems.append((("nodes", index, "id"), f"duplicate node id '{node.id}'"))
        ids.setdefault(node.id, index)
    for index, node in enumerate(spec.nodes):
        problems.extend(_node_problems(spec, index, node, ids))
    if not problems:
        problems.extend(_cycle_problems(spec, ids))
    return problems


def _node_problems(spec: WorkflowSpec, index: int, node: Any, ids: dict[str, int]) -> Iterator[Problem]:
    at = ("nodes", index)
    for d, dep in enumerate(node.depends_on):
        if dep not in ids:
            yield (*at, "depends_on", d), f"depends_on '{dep}': no node has that id"
        elif dep == node.id:
            yield (*at, "depends_on", d), f"cycle: {node.id} -> {node.id}"
    if isinstance(node, (RoutineNode, AdaptiveNode)) and node.agent not in spec.agents:
        yield (*at, "agent"), f"agent '{node.agent}' is not declared under agents{_known(spec.agents)}"
    if isinstance(node, ToolNode) and node.tool not in spec.tools:
        yield (*at, "tool"), f"tool '{node.tool}' is not declared under tools{_known(spec.tools)}"
    extra_names: set[str] = set()
    if isinstance(node, AdaptiveNode):
        if node.verify.tool not in spec.tools:
            yield (*at, "verify", "tool"), f"tool '{node.verify.tool}' is not declared under tools{_known(spec.tools)}"
        if node.artifact not in node.depends_on:
            yield (*at, "artifact"), f"artifact '{node.artifact}' must be listed in depends_on"
        extra_names = {"run", "artifact", "attempt"}
    for path, text in _templated(node):
        yield from _template_problems(spec, node, (*at, *path), text, extra_names)


def _templated(node: Any) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(node, ToolNode):
        yield from ((("args", *p), t) for p, t in strings_in(node.args))
    if isinstance(node, (RoutineNode, AdaptiveNode)):
        yield from ((("action", *p), t) for p, t in strings_in(node.action))
    if isinstance(node, ApprovalNode):
        yield from ((("message", *p), t) for p, t in strings_in(node.message))
    if isinstance(node, AdaptiveNode):
        yield from ((("run", "input", *p), t) for p, t in strings_in(node.run.input))
        yield from ((("verify", "args", *p), t) for p, t in strings_in(node.verify.args))


def _template_problems(spec: WorkflowSpec, node: Any, path: tuple[Any, ...], text: str,
                       extra_names: set[str]) -> Iterator[Problem]:
    try:
        refs = list(references(text))
    except TemplateSyntaxError as exc:
        yield path, f"template syntax error: {exc.message}"
        return
    for root, attr in refs:
        if root == "inputs":
            if attr is not None and attr not in spec.inputs:
                yield path, f"template reads inputs.{attr}, which is not declared under inputs{_known(spec.inputs)}"
        elif root == "nodes":
            if attr is None:
                yield path, "template must name a node: nodes.<id>.output"
            elif attr not in node.depends_on:
                what = "is not a node" if attr not in {n.id for n in spec.nodes} else "is not in depends_on"
                yield path, f"template reads nodes.{attr}, which {what}; add it to depends_on of '{node.id}'"
        elif root not in extra_names and root not in _JINJA_GLOBALS:
            allowed = ", ".join(sorted({"inputs", "nodes", *extra_names}))
            yield path, f"template reads '{root}', which is not defined (use {allowed})"


_JINJA_GLOBALS = {"range", "dict", "lipsum", "cycler", "joiner", "namespace", "loop", "true", "false", "none"}


def _cycle_problems(spec: WorkflowSpec, ids: dict[str, int]) -> Iterator[Problem]:
    deps = {n.id: n.depends_on for n in spec.nodes}
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(nid: str) -> list[str] | None:
        state[nid] = 1
        stack.append(nid)
        for dep in deps[nid]:
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[nid] = 2
        return None

    for nid in deps:
        if nid not in state:
            cycle = visit(nid)
            if cycle:
                # depends_on points backwards, so the flow runs the other way round
                flow = list(reversed(cycle))
                yield ("nodes", ids[flow[0]], "depends_on"), "cycle: " + " -> ".join(flow)
                return


def _known(names: dict[str, Any]) -> str:
    return f" (declared: {', '.join(sorted(names))})" if names else " (none declared)"
