"""YAML loading that remembers where every key and value stood, for FILE:LINE:COL errors.

Only PyYAML's safe constructors are used (never `yaml.load` with a full loader).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml


@dataclass
class Located:
    """Positions (1-based line, col) of a value, and of each child by key or index."""

    line: int
    col: int
    key_pos: dict[Any, tuple[int, int]] = field(default_factory=dict)
    children: dict[Any, "Located"] = field(default_factory=dict)


def _locate(node: yaml.Node) -> Located:
    here = Located(node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            here.key_pos[key] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            here.children[key] = _locate(value_node)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            here.children[index] = _locate(item)
    return here


def load_located(text: str) -> tuple[Any, Located | None]:
    """Parse YAML text safely; return the data and its position tree.

    Raises yaml.YAMLError (with problem_mark) for syntax errors.
    """
    data = yaml.safe_load(text)
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    return data, (_locate(node) if node is not None else None)


def position(root: Located | None, path: tuple[Any, ...]) -> tuple[int, int]:
    """Position of the key (or list item) a pydantic-style error location names.

    Steps the YAML does not have (a union tag, a missing key) are skipped, so a missing
    field points at the mapping that lacks it.
    """
    if root is None:
        return 1, 1
    here, pos = root, (root.line, root.col)
    for step in path:
        child = here.children.get(step)
        if child is None:
            continue
        pos = here.key_pos.get(step, (child.line, child.col))
        here = child
    return pos
