"""The scripted model: per-attempt answers, list reuse, free-text marking, missing answers.

These run the real pydantic-ai Agent with the scripted FunctionModel, so they also prove
that canned answers travel the same output path a real provider's answers would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bastion.agents import (
    SCRIPTED_PREFIX,
    ModelReply,
    ScriptedResponses,
    call_model,
    load_scripted_responses,
)
from bastion.errors import ScriptedResponseMissing, UserError

SUMMARY = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "risk": {"type": "string", "enum": ["low", "medium", "high"]},
    },
    "required": ["summary", "risk"],
}

RESPONSES_YAML = """\
summarise:
  summary: the service is healthy
  risk: low
review:
  - {summary: first look, risk: high}
  - {summary: second look, risk: medium}
notes: The build is green.
numbers:
  - [[1, 2, 3]]
"""


@pytest.fixture
def responses(tmp_path: Path) -> ScriptedResponses:
    path = tmp_path / "responses.yaml"
    path.write_text(RESPONSES_YAML, encoding="utf-8")
    return load_scripted_responses(path)


async def scripted(
    responses: ScriptedResponses, node_id: str, schema: dict[str, Any] | None, attempt: int = 1
) -> ModelReply:
    return await call_model(
        model="scripted",
        persona="Systems Analyst",
        prompt="Summarise the incident.",
        output_schema=schema,
        node_id=node_id,
        attempt=attempt,
        responses=responses,
    )


async def test_single_structured_response_serves_every_attempt(responses: ScriptedResponses) -> None:
    for attempt in (1, 2, 7):
        reply = await scripted(responses, "summarise", SUMMARY, attempt)
        assert reply.output == {"summary": "the service is healthy", "risk": "low"}
        assert reply.scripted is True
        assert reply.model == "scripted"


async def test_list_gives_one_response_per_attempt_and_reuses_the_last(
    responses: ScriptedResponses,
) -> None:
    first = await scripted(responses, "review", SUMMARY, attempt=1)
    second = await scripted(responses, "review", SUMMARY, attempt=2)
    later = await scripted(responses, "review", SUMMARY, attempt=5)
    assert first.output["summary"] == "first look"
    assert second.output["summary"] == "second look"
    assert later.output == second.output


async def test_free_text_is_marked_as_scripted(responses: ScriptedResponses) -> None:
    reply = await scripted(responses, "notes", None)
    assert reply.output == SCRIPTED_PREFIX + "The build is green."
    assert reply.raw_text == reply.output
    assert reply.scripted is True


async def test_list_output_is_nested_once_per_attempt(responses: ScriptedResponses) -> None:
    schema = {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}}
    reply = await scripted(responses, "numbers", schema)
    assert reply.output == [[1, 2, 3]]


async def test_usage_comes_from_pydantic_ai(responses: ScriptedResponses) -> None:
    reply = await scripted(responses, "summarise", SUMMARY)
    assert reply.input_tokens > 0
    assert reply.output_tokens > 0
    assert '"risk"' in reply.raw_text


async def test_missing_node_names_node_file_and_key(responses: ScriptedResponses) -> None:
    with pytest.raises(ScriptedResponseMissing) as info:
        await scripted(responses, "deploy", SUMMARY, attempt=2)
    message = str(info.value)
    assert "'deploy'" in message
    assert responses.source in message
    assert "deploy:" in message
    assert "attempt 2" in message


async def test_no_responses_at_all_is_a_missing_response() -> None:
    with pytest.raises(ScriptedResponseMissing, match="'summarise'"):
        await call_model(
            model="scripted",
            persona="Analyst",
            prompt="x",
            output_schema=None,
            node_id="summarise",
            attempt=1,
            responses=None,
        )


def test_missing_file_says_where_it_should_be(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "responses.yaml"
    with pytest.raises(UserError) as info:
        load_scripted_responses(path)
    assert str(path.resolve()) in str(info.value)


def test_bad_yaml_gives_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "responses.yaml"
    path.write_text("summarise:\n  summary: [unclosed\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"responses\.yaml:\d+:\d+"):
        load_scripted_responses(path)


def test_yaml_tags_are_not_executed(tmp_path: Path) -> None:
    path = tmp_path / "responses.yaml"
    path.write_text("x: !!python/object/apply:os.system ['true']\n", encoding="utf-8")
    with pytest.raises(UserError):
        load_scripted_responses(path)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "responses.yaml"
    path.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(UserError, match="mapping"):
        load_scripted_responses(path)


def test_empty_response_list_is_rejected_on_load() -> None:
    with pytest.raises(UserError, match="'review'"):
        ScriptedResponses.from_mapping({"review": []})


async def test_inline_mapping_of_responses_is_accepted() -> None:
    reply = await call_model(
        model="scripted",
        persona="Analyst",
        prompt="x",
        output_schema=SUMMARY,
        node_id="summarise",
        attempt=1,
        responses={"summarise": {"summary": "inline", "risk": "low"}},
    )
    assert reply.output == {"summary": "inline", "risk": "low"}
