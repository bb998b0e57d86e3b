"""Routine nodes through the model layer: the issue's minimal workflow, retries, --model."""

from __future__ import annotations

import json
from pathlib import Path

from bastion import Workflow
from bastion.state import events as ev
from bastion.state import open_store
from tests.conftest import MINIMAL, cli, write



def _setup(tmp_path: Path, responses: str) -> Path:
    (tmp_path / "my_pkg").mkdir()
    write(tmp_path / "my_pkg", "__init__.py", "")
    write(tmp_path / "my_pkg", "effects.py", """
        def append_line(path: str, line: str) -> dict:
            with open(path, "a") as f:
                f.write(line + "\\n")
            return {"path": path, "line": line}
    """)
    write(tmp_path, "workflow.responses.yaml", responses)
    return write(tmp_path, "workflow.yaml", MINIMAL.replace("/tmp/out.txt", str(tmp_path / "out.txt")))


async def test_the_issue_minimal_workflow_runs_to_the_approval(tmp_path: Path, store_url: str) -> None:
    wf = _setup(tmp_path, "summarise: {summary: 'one line was appended'}\n")
    result = await Workflow.load(wf).run(inputs={"crm_base_url": "http://127.0.0.1:1"}, store=store_url)
    assert result.status == "waiting"
    assert (tmp_path / "out.txt").read_text() == "10\n"
    summarise = result.nodes["summarise"]
    assert summarise.output == {"summary": "one line was appended"} and summarise.model == "scripted"
    assert result.nodes["sign_off"].status == "waiting"


async def test_invalid_model_output_is_retried_with_the_next_answer(tmp_path: Path, store_url: str) -> None:
    wf = _setup(tmp_path, "summarise:\n  - {wrong_field: 1}\n  - '```json\\n{\"summary\": \"repaired\",}\\n```'\n")
    result = await Workflow.load(wf).run(inputs={"crm_base_url": "x"}, store=store_url)
    summarise = result.nodes["summarise"]
    assert summarise.status == "succeeded" and summarise.attempts == 2
    assert summarise.output == {"summary": "repaired"}
    calls = [r.event for r in open_store(store_url).events(result.run_id) if isinstance(r.event, ev.ModelCalled)]
    assert [bool(c.error) for c in calls] == [True, False]
    assert "summary" in calls[0].error


async def test_missing_scripted_answer_fails_the_node_with_what_to_add(tmp_path: Path, store_url: str) -> None:
    wf = _setup(tmp_path, "other_node: {summary: x}\n")
    result = await Workflow.load(wf).run(inputs={"crm_base_url": "x"}, store=store_url)
    assert result.nodes["summarise"].status == "failed"
    assert "summarise" in result.nodes["summarise"].error
    assert result.nodes["fetch"].status == "succeeded"


def test_model_override_from_the_cli(tmp_path: Path) -> None:
    wf = _setup(tmp_path, "{}\n")
    done = cli("run", str(wf), "--input", "crm_base_url=x", "--model", "test", "--json",
               env={"BASTION_STORE": f"sqlite:///{tmp_path}/b.db"})
    assert done.returncode == 3, done.stderr
    summarise = json.loads(done.stdout)["nodes"]["summarise"]
    assert summarise["status"] == "succeeded" and isinstance(summarise["output"]["summary"], str)
