"""`call_model`: one model call for one node attempt, through a pydantic-ai Agent.

The engine needs a single awaitable that turns (model name, persona, prompt, schema) into a
validated value and its token usage, whichever provider is behind the name. Going through
a pydantic-ai `Agent` for every model, the offline scripted one included, means real
providers slot in by name ("openai:gpt-4o") and every answer meets the same output tool,
repair and validation path. Prompts are never logged here: they may carry user data.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic_ai import Agent, ModelRetry, StructuredDict, TextOutput, ToolOutput
from pydantic_ai import exceptions as pai_exceptions
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models import Model, infer_model
from pydantic_ai.models.test import TestModel
from pydantic_ai.settings import ModelSettings

from bastion.agents._output import OutputInvalid, OutputSchema
from bastion.agents._repairing import RepairingModel
from bastion.agents._scripted import SCRIPTED_MODEL, ScriptedResponses, scripted_model
from bastion.errors import ModelOutputError, UserError

TEST_MODEL = "test"
OUTPUT_TOOL = "final_result"
SCHEMA_INSTRUCTION = (
    "Your output must follow the given JSON schema exactly: call the output tool with it, "
    "or reply with only the JSON value and nothing else."
)
# A real model may fix its answer when told what was wrong; a scripted one would just
# repeat it, so it gets no in-call retries (the engine's attempts move down its list).
DEFAULT_OUTPUT_RETRIES = 1


@dataclass(frozen=True)
class ModelReply:
    """What one model call produced: the validated output plus what it cost."""

    output: Any
    """dict/list/scalar valid against the node's schema, or str for free-text nodes."""
    model: str
    scripted: bool
    input_tokens: int
    output_tokens: int
    raw_text: str
    """The model's final answer as it arrived (text, or output-tool arguments as JSON)."""


def system_prompt(persona: str, structured: bool) -> str:
    """The fixed system prompt; the persona is the only part a workflow controls."""
    lines = [f"You are {persona}."]
    if structured:
        lines.append(SCHEMA_INSTRUCTION)
    return "\n".join(lines)


@functools.lru_cache(maxsize=32)
def _provider_model(name: str) -> Model:
    # Provider models hold HTTP clients; share one per name instead of one per call.
    return infer_model(name)


def resolve_model(name: str) -> Model:
    """A pydantic-ai model for a non-scripted name, or a UserError saying what to use."""
    if name == TEST_MODEL:
        return TestModel()  # stateful (records last request), so one per call
    try:
        return _provider_model(name)
    except (ValueError, ImportError, pai_exceptions.UserError) as exc:
        raise UserError(
            f"model {name!r} cannot be used: {exc}. Use 'scripted' (offline, canned "
            "responses), 'test', or a pydantic-ai model name such as 'openai:gpt-4o'."
        ) from None


async def call_model(
    *,
    model: str | Model,
    persona: str,
    prompt: str,
    output_schema: dict[str, Any] | None,
    node_id: str,
    attempt: int = 1,
    responses: ScriptedResponses | Mapping[str, Any] | None = None,
    settings: ModelSettings | None = None,
    output_retries: int | None = None,
) -> ModelReply:
    """Run one model call and return its validated output.

    `model` is "scripted", "test", a pydantic-ai model name, or a pydantic-ai `Model`.

    Raises `ScriptedResponseMissing` when the scripted model has no answer, `UserError` for
    an unusable model name or schema, and `ModelOutputError` when the answer still does not
    match `output_schema` after repair (and after any in-call retries).
    """
    schema = OutputSchema(output_schema) if output_schema is not None else None
    if isinstance(responses, Mapping):  # inline answers, e.g. from a test or a notebook
        responses = ScriptedResponses.from_mapping(responses)
    scripted = model == SCRIPTED_MODEL
    resolved: Model
    if isinstance(model, Model):  # a ready pydantic-ai model, e.g. a FunctionModel in tests
        resolved, name = model, model.model_name
    else:
        name = model
        resolved = (
            scripted_model(responses, node_id, attempt, schema) if scripted else resolve_model(model)
        )
    retries = output_retries if output_retries is not None else (0 if scripted else DEFAULT_OUTPUT_RETRIES)
    # TestModel answers in text whenever text is allowed, so give it only the output tool.
    allow_text = model != TEST_MODEL
    problems: list[str] = []
    agent = _build_agent(RepairingModel(resolved), persona, schema, node_id, retries, allow_text, problems)

    try:
        result = await agent.run(prompt, model_settings=settings)
    except pai_exceptions.UnexpectedModelBehavior as exc:
        detail = problems[-1] if problems else str(exc)
        raise ModelOutputError(
            f"node '{node_id}' attempt {attempt}: output from model '{name}' does not match "
            f"the node's output schema: {detail}"
        ) from None

    usage = _usage(result)
    return ModelReply(
        output=result.output,
        model=name,
        scripted=scripted,
        input_tokens=int(getattr(usage, "input_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "output_tokens", 0) or 0),
        raw_text=_raw_text(result.new_messages()),
    )


def _build_agent(
    model: Model,
    persona: str,
    schema: OutputSchema | None,
    node_id: str,
    retries: int,
    allow_text: bool,
    problems: list[str],
) -> Agent[None, Any]:
    """One Agent per call: cheap to build, and per-call state (`problems`) stays private."""
    prompt = system_prompt(persona, structured=schema is not None)
    if schema is None:
        return Agent(model, output_type=str, system_prompt=prompt, name=node_id, retries=retries)

    def from_text(text: str) -> Any:
        """Text answers (possibly fenced or broken JSON) become values here."""
        try:
            return schema.from_text(text)
        except OutputInvalid as exc:
            problems.append(str(exc))
            raise ModelRetry(str(exc)) from None

    output_type: list[Any] = [
        ToolOutput(StructuredDict(schema.tool_schema, name="output"), name=OUTPUT_TOOL)
    ]
    if allow_text:
        output_type.append(TextOutput(from_text))
    agent: Agent[None, Any] = Agent(
        model, output_type=output_type, system_prompt=prompt, name=node_id, retries=retries
    )

    @agent.output_validator
    def check(data: Any) -> Any:
        """Both paths meet here, so tool and text answers are held to the same schema."""
        try:
            return schema.validate(schema.from_tool_args(data))
        except OutputInvalid as exc:
            problems.append(str(exc))
            raise ModelRetry(f"Output does not match the schema: {exc}") from None

    return agent


def _usage(result: Any) -> Any:
    """The run's usage: a property in pydantic-ai 2.x, a method in 1.x (which pyproject allows)."""
    usage = result.usage
    if callable(usage) and not hasattr(usage, "input_tokens"):
        usage = usage()
    return usage


def _raw_text(messages: list[ModelMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, ModelResponse):
            chunks: list[str] = []
            for part in message.parts:
                if isinstance(part, TextPart):
                    chunks.append(part.content)
                elif isinstance(part, ToolCallPart):
                    chunks.append(part.args_as_json_str())
            return "".join(chunks)
    return ""
