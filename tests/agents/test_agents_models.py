"""Non-scripted models: TestModel offline, provider stand-ins, bad names, concurrency."""

from __future__ import annotations

import asyncio

import pytest
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from bastion.agents import SCHEMA_INSTRUCTION, ScriptedResponses, call_model, system_prompt
from bastion.errors import ModelOutputError, UserError

SCHEMA = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": ["approve", "revise"]},
        "score": {"type": "integer"},
        "notes": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["verdict", "score"],
}


async def test_test_model_structured_output_without_network() -> None:
    reply = await call_model(
        model="test",
        persona="Reviewer",
        prompt="Review this.",
        output_schema=SCHEMA,
        node_id="review",
        attempt=1,
        responses=None,
    )
    assert reply.model == "test"
    assert reply.scripted is False
    assert reply.output["verdict"] in {"approve", "revise"}
    assert isinstance(reply.output["score"], int)
    assert reply.input_tokens > 0 and reply.output_tokens > 0


async def test_test_model_free_text_and_array_output() -> None:
    text = await call_model(
        model="test", persona="Writer", prompt="Write.", output_schema=None, node_id="w"
    )
    assert isinstance(text.output, str) and text.output
    assert not text.output.startswith("[scripted]")
    items = await call_model(
        model="test",
        persona="Lister",
        prompt="List.",
        output_schema={"type": "array", "items": {"type": "integer"}},
        node_id="l",
    )
    assert isinstance(items.output, list)
    assert all(isinstance(i, int) for i in items.output)


@pytest.mark.parametrize("name", ["nonsense", "nosuchprovider:model"])
async def test_unknown_model_is_a_user_error(name: str) -> None:
    with pytest.raises(UserError, match="scripted"):
        await call_model(model=name, persona="A", prompt="x", output_schema=None, node_id="n")


def test_system_prompt_is_persona_plus_schema_line() -> None:
    assert system_prompt("Systems Analyst", structured=False) == "You are Systems Analyst."
    assert system_prompt("Systems Analyst", structured=True) == (
        "You are Systems Analyst.\n" + SCHEMA_INSTRUCTION
    )


def _tool_call_with(args: str) -> FunctionModel:
    """A provider stand-in that calls the output tool with the given raw argument text."""

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, args)])

    return FunctionModel(answer, model_name="sloppy")


async def test_broken_output_tool_arguments_are_repaired() -> None:
    reply = await call_model(
        model=_tool_call_with('{"verdict": "approve", "score": 3, "notes": ["a",'),
        persona="Reviewer",
        prompt="Review.",
        output_schema=SCHEMA,
        node_id="review",
    )
    assert reply.output == {"verdict": "approve", "score": 3, "notes": ["a"]}
    assert reply.model == "sloppy"
    assert reply.scripted is False


async def test_repaired_tool_arguments_are_still_validated() -> None:
    with pytest.raises(ModelOutputError, match="field 'score'"):
        await call_model(
            model=_tool_call_with('{"verdict": "approve", "score": "3",}'),
            persona="Reviewer",
            prompt="Review.",
            output_schema=SCHEMA,
            node_id="review",
        )


async def test_a_real_model_gets_a_retry_that_names_the_field() -> None:
    """Non-scripted models may fix their answer once when told which field is wrong."""
    seen: list[str] = []

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=[TextPart('{"verdict": "maybe", "score": 1}')])
        retry = messages[-1]
        assert isinstance(retry, ModelRequest)
        seen.extend(p.model_response() for p in retry.parts if isinstance(p, RetryPromptPart))
        return ModelResponse(parts=[TextPart('{"verdict": "revise", "score": 1}')])

    reply = await call_model(
        model=FunctionModel(answer),
        persona="Reviewer",
        prompt="Review.",
        output_schema=SCHEMA,
        node_id="review",
    )
    assert reply.output == {"verdict": "revise", "score": 1}
    assert any("field 'verdict'" in text for text in seen)


async def test_concurrent_calls_do_not_share_answers() -> None:
    responses = ScriptedResponses.from_mapping(
        {f"n{i}": {"verdict": "approve", "score": i} for i in range(20)}
    )
    replies = await asyncio.gather(
        *(
            call_model(
                model="scripted",
                persona="Reviewer",
                prompt="Review.",
                output_schema=SCHEMA,
                node_id=f"n{i}",
                responses=responses,
            )
            for i in range(20)
        )
    )
    assert [r.output["score"] for r in replies] == list(range(20))
