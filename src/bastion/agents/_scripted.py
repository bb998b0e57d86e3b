"""The offline "scripted" model: canned answers per (node, attempt), served through pydantic-ai.

Workflows must be runnable and testable without network or API keys, and the canned answer
must take the same road as a real one (output tool or text, parsing, repair, validation),
or a workflow that passes offline could still fail on a real model. So the scripted model
is a pydantic-ai `FunctionModel`, not a shortcut around the agent.

Responses file (YAML)::

    summarise: {summary: "...", risk: low}        # same answer for every attempt
    review:                                       # one answer per attempt; the last repeats
      - '```json\\n{"verdict": "revise",}\\n```'  # a string is raw model text (may be broken)
      - {verdict: approve}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from bastion.agents._output import WRAP_KEY, OutputSchema
from bastion.errors import ScriptedResponseMissing, UserError

SCRIPTED_MODEL = "scripted"
SCRIPTED_PREFIX = "[scripted] "


@dataclass(frozen=True)
class ScriptedResponses:
    """Canned answers keyed by node id; `source` says where they came from, for messages."""

    responses: Mapping[str, Any]
    source: str

    @classmethod
    def from_mapping(cls, mapping: Mapping[Any, Any], source: str = "<inline>") -> ScriptedResponses:
        """Check and normalise a mapping of node id → response (or list of responses)."""
        checked: dict[str, Any] = {}
        for key, value in mapping.items():
            node_id = str(key)
            if value is None or (isinstance(value, list) and not value):
                raise UserError(
                    f"{source}: node '{node_id}' has no scripted response; give it a value "
                    "(a string of model text, a mapping or a list with one entry per attempt)"
                )
            checked[node_id] = value
        return cls(responses=checked, source=source)

    def lookup(self, node_id: str, attempt: int) -> Any:
        """The response for this attempt (1-based); attempts past a list's end reuse the last."""
        if node_id not in self.responses:
            raise ScriptedResponseMissing(
                f"the scripted model has no response for node '{node_id}' (attempt {attempt}) "
                f"in {self.source}: add a top-level key '{node_id}:' whose value is the "
                "response, or a list with one response per attempt"
            )
        value = self.responses[node_id]
        # A list is always one entry per attempt; a node whose output *is* a list nests it
        # (`node: [[a, b]]`), so the file's meaning never depends on the node's schema.
        if isinstance(value, list):
            return value[min(max(attempt, 1), len(value)) - 1]
        return value


def load_scripted_responses(path: str | Path) -> ScriptedResponses:
    """Load a responses file with `yaml.safe_load` (never arbitrary YAML tags)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(
            f"scripted responses file not found: expected it at {file.resolve()}. Create it "
            "(a YAML mapping of node id → response) or point the workflow at the right file."
        )
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(file)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UserError(f"{where}: {problem}") from None
    except UnicodeDecodeError:
        raise UserError(f"{file}: not UTF-8 text; save the responses file as UTF-8") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(
            f"{file}: the top level must be a mapping of node id → response, "
            f"not a {type(data).__name__}"
        )
    return ScriptedResponses.from_mapping(data, source=str(file))


def scripted_model(
    responses: ScriptedResponses | None,
    node_id: str,
    attempt: int,
    schema: OutputSchema | None,
) -> FunctionModel:
    """A FunctionModel that answers this (node, attempt) from `responses`.

    Looked up eagerly so a missing answer fails before any agent machinery runs.
    """
    if responses is None:
        raise ScriptedResponseMissing(
            f"the scripted model has no responses file, so it cannot answer node '{node_id}': "
            f"pass a responses file with a top-level key '{node_id}:'"
        )
    value = responses.lookup(node_id, attempt)

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        # The prompt is deliberately ignored: a scripted answer never depends on it.
        return ModelResponse(parts=[_part(value, info, schema)])

    return FunctionModel(answer, model_name=SCRIPTED_MODEL)


def _part(value: Any, info: AgentInfo, schema: OutputSchema | None) -> TextPart | ToolCallPart:
    if schema is None:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return TextPart(text if text.startswith(SCRIPTED_PREFIX) else SCRIPTED_PREFIX + text)
    if isinstance(value, str) or not info.output_tools:
        # Raw model text: exercises fence stripping and JSON repair exactly as a real reply.
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return TextPart(text)
    tool = info.output_tools[0].name
    if schema.wrapped:
        return ToolCallPart(tool, {WRAP_KEY: value})
    if isinstance(value, dict):
        return ToolCallPart(tool, value)
    # Not an object although the schema wants one: send it as text so validation names the fault.
    return TextPart(json.dumps(value, ensure_ascii=False))
