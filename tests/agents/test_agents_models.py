"""Non-scripted model names: pydantic-ai's TestModel offline, and clear errors for bad names."""

from __future__ import annotations

import pytest

from bastion.agents import SCHEMA_INSTRUCTION, call_model, system_prompt
from bastion.errors import UserError

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
