"""Repair and validation of model output, end to end through call_model and unit-level.

Scripted string responses are raw model text, so these exercise the same fence stripping,
JSON repair and schema validation a real provider's sloppy answer would get.
"""

from __future__ import annotations

from typing import Any

import pytest

from bastion.agents import (
    OutputSchema,
    ScriptedResponses,
    call_model,
    parse_json_text,
    strip_fences,
)
from bastion.errors import ModelOutputError, UserError

FINDINGS = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "findings": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "title": {"type": "string"},
                    "severity": {"type": "string", "enum": ["low", "high"]},
                },
                "required": ["title", "severity"],
            },
        },
    },
    "required": ["summary", "findings"],
    "additionalProperties": False,
}


async def run(value: Any, schema: dict[str, Any] | None = FINDINGS) -> Any:
    reply = await call_model(
        model="scripted",
        persona="Reviewer",
        prompt="Review.",
        output_schema=schema,
        node_id="review",
        attempt=1,
        responses=ScriptedResponses.from_mapping({"review": value}),
    )
    return reply.output


async def test_fenced_json_is_unwrapped() -> None:
    text = 'Here it is:\n```json\n{"summary": "ok", "findings": []}\n```\nAnything else?'
    assert await run(text) == {"summary": "ok", "findings": []}


async def test_broken_json_is_repaired() -> None:
    text = "{'summary': 'ok', findings: [{\"title\": \"t\", \"severity\": \"low\",},]"
    assert await run(text) == {
        "summary": "ok",
        "findings": [{"title": "t", "severity": "low"}],
    }


async def test_unterminated_fence_and_truncated_object_are_repaired() -> None:
    text = '```json\n{"summary": "cut", "findings": [{"title": "a", "severity": "high"}'
    assert await run(text) == {"summary": "cut", "findings": [{"title": "a", "severity": "high"}]}


async def test_wrong_field_is_named_in_the_error() -> None:
    value = {"summary": "x", "findings": [{"title": "t", "severity": "urgent"}]}
    with pytest.raises(ModelOutputError) as info:
        await run(value)
    message = str(info.value)
    assert "findings[0].severity" in message
    assert "'urgent'" in message
    assert "node 'review'" in message
    assert "Traceback" not in message


async def test_missing_and_extra_fields_are_named() -> None:
    with pytest.raises(ModelOutputError) as info:
        await run({"findings": [{"title": "t"}], "mood": "grumpy"})
    message = str(info.value)
    assert "missing required field 'summary'" in message
    assert "missing required field 'findings[0].severity'" in message
    assert "unexpected field 'mood'" in message


async def test_repaired_text_is_still_validated() -> None:
    with pytest.raises(ModelOutputError, match="field 'summary'"):
        await run('```json\n{"summary": 42, "findings": []}\n```')


async def test_text_without_json_is_an_output_error() -> None:
    with pytest.raises(ModelOutputError, match="not JSON"):
        await run("I could not decide, sorry.")


async def test_list_sent_where_an_object_is_expected_is_reported() -> None:
    with pytest.raises(ModelOutputError, match="is not of type 'object'"):
        await run([[1, 2]])


async def test_non_object_schemas_round_trip() -> None:
    assert await run([["a", "b"]], {"type": "array", "items": {"type": "string"}}) == ["a", "b"]
    assert await run("```\n[1, 2,]\n```", {"type": "array", "items": {"type": "integer"}}) == [1, 2]
    assert await run("plain words", {"type": "string"}) == "plain words"
    assert await run(3, {"type": "integer", "minimum": 1}) == 3


async def test_invalid_schema_is_a_user_error() -> None:
    with pytest.raises(UserError, match="not a valid JSON schema"):
        await run({"a": 1}, {"type": "object", "properties": {"a": {"type": "integr"}}})


def test_strip_fences() -> None:
    assert strip_fences('```json\n{"a": 1}\n```') == '{"a": 1}'
    assert strip_fences("```\n[1]\n```") == "[1]"
    assert strip_fences('  {"a": 1}  ') == '{"a": 1}'
    assert strip_fences("```json\n{") == "{"


def test_parse_json_text_repairs_trailing_commas() -> None:
    assert parse_json_text('{"a": [1, 2,],}') == {"a": [1, 2]}
    assert parse_json_text('""') == ""


def test_output_schema_lists_at_most_five_problems() -> None:
    schema = OutputSchema({"type": "array", "items": {"type": "integer"}})
    with pytest.raises(Exception, match=r"and 3 more problems"):
        schema.validate(["a"] * 8)
