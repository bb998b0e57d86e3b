"""`bastion validate`: one test per error class, each pointing at FILE:LINE:COL, never a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bastion.errors import SpecError
from bastion.spec import parse_spec
from tests.conftest import MINIMAL, cli, write



def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "wf.yaml")
    return caught.value.problems


def line_of(text: str, needle: str, nth: int = 1) -> int:
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    return hits[nth - 1]


def test_the_minimal_example_is_valid_and_cli_prints_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "workflow.yaml", MINIMAL)
    done = cli("validate", str(path))
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip().splitlines()) == 1
    assert "valid" in done.stdout and "3 nodes" in done.stdout


def test_yaml_syntax_error_points_at_line() -> None:
    text = MINIMAL.replace("    tool: append_line\n", "    tool: [append_line\n", 1)
    (only,) = problems(text)
    assert re.match(r"wf\.yaml:\d+:\d+: YAML syntax error", only)


def test_unknown_key_points_at_the_key() -> None:
    text = MINIMAL.replace("    agent: analyst\n", "    agent: analyst\n    agnet_typo: 1\n", 1)
    (only,) = problems(text)
    assert only == f"wf.yaml:{line_of(text, 'agnet_typo')}:5: unknown key 'agnet_typo'"


def test_wrong_type_names_the_field() -> None:
    text = MINIMAL.replace("max_retries: 2", "max_retries: lots")
    (only,) = problems(text)
    assert only.startswith(f"wf.yaml:{line_of(text, 'max_retries')}:5: ")
    assert "max_retries" in only and "integer" in only


def test_missing_required_field_points_at_the_node() -> None:
    text = MINIMAL.replace('    message: "Publish the summary?"\n', "")
    (only,) = problems(text)
    assert "missing required field 'message'" in only
    assert only.startswith(f"wf.yaml:{line_of(text, 'id: sign_off')}:")


def test_unknown_node_type() -> None:
    text = MINIMAL.replace("type: approval", "type: approvel")
    (only,) = problems(text)
    assert "node type must be one of tool, routine, approval, adaptive" in only
    assert only.startswith(f"wf.yaml:{line_of(text, 'type: approvel')}:5:")


def test_duplicate_node_ids() -> None:
    text = MINIMAL.replace("- id: sign_off", "- id: fetch")
    found = problems(text)
    assert f"wf.yaml:{line_of(text, 'id: fetch', 2)}:5: duplicate node id 'fetch'" in found


def test_depends_on_unknown_node() -> None:
    text = MINIMAL.replace("depends_on: [summarise]", "depends_on: [summarize]")
    (only,) = problems(text)
    assert only == f"wf.yaml:{line_of(text, '[summarize]')}:18: depends_on 'summarize': no node has that id"


def test_unknown_agent_and_tool() -> None:
    text = MINIMAL.replace("agent: analyst", "agent: analyzt").replace("tool: append_line", "tool: append_lines")
    found = problems(text)
    assert any(f":{line_of(text, 'agent: analyzt')}:5: agent 'analyzt' is not declared" in p for p in found)
    assert any(f":{line_of(text, 'tool: append_lines')}:5: tool 'append_lines' is not declared" in p for p in found)


def test_template_reading_a_non_dependency() -> None:
    text = MINIMAL.replace('message: "Publish the summary?"', 'message: "Publish {{ nodes.fetch.output }}?"')
    (only,) = problems(text)
    assert "nodes.fetch, which is not in depends_on" in only
    assert only.startswith(f"wf.yaml:{line_of(text, 'Publish {{')}:5:")


def test_template_reading_an_unknown_node_or_input() -> None:
    text = MINIMAL.replace("{{ inputs.amount }}", "{{ inputs.amont }}").replace(
        "{{ nodes.fetch.output }}", "{{ nodes.fecth.output }}")
    found = problems(text)
    assert any("inputs.amont, which is not declared" in p for p in found)
    assert any("nodes.fecth, which is not a node" in p for p in found)


def test_template_syntax_error() -> None:
    (only,) = problems(MINIMAL.replace("{{ inputs.amount }}", "{{ inputs.amount"))
    assert "template syntax error" in only


def test_cycle_is_printed() -> None:
    text = MINIMAL.replace("    tool: append_line\n", "    tool: append_line\n    depends_on: [sign_off]\n", 1)
    (only,) = problems(text)
    assert only.endswith("cycle: fetch -> summarise -> sign_off -> fetch") or "cycle:" in only
    assert re.search(r"cycle: (\w+ -> ){3}\w+$", only)


def test_not_a_mapping() -> None:
    assert problems("- just\n- a list\n") == ["wf.yaml:1:1: a workflow must be a mapping with name and nodes"]


def test_cli_invalid_exits_2_with_one_line_per_problem_and_no_traceback(tmp_path: Path) -> None:
    text = MINIMAL.replace("agent: analyst", "agent: nobody").replace("depends_on: [summarise]", "depends_on: [x]")
    path = write(tmp_path, "workflow.yaml", text)
    done = cli("validate", str(path))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2
    assert all(re.match(rf"{re.escape(str(path))}:\d+:\d+: ", line) for line in lines)
    assert "Traceback" not in done.stderr + done.stdout


def test_cli_missing_file_is_a_user_error(tmp_path: Path) -> None:
    done = cli("validate", str(tmp_path / "nope.yaml"))
    assert done.returncode == 2
    assert "no such file" in done.stderr and "Traceback" not in done.stderr
