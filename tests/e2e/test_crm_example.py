"""The CRM integration builder end to end, against the real staging server on 127.0.0.1."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx

from bastion import Workflow
from bastion.state import events as ev
from bastion.state import open_store
from tests.conftest import REPO, cli

sys.path.insert(0, str(REPO))
from examples.crm_integration.staging_crm import create_app, serve  # noqa: E402

WORKFLOW = REPO / "examples" / "crm_integration" / "workflow.yaml"


def _events(store: str, run_id: str) -> list[ev.Event]:
    return [r.event for r in open_store(store).events(run_id)]


async def test_adapts_on_422_invalidates_stale_consumers_and_publishes(tmp_path: Path, store_url: str) -> None:
    out_dir = tmp_path / "published"
    with serve(create_app(schema_version="v2")) as base_url:
        wf = Workflow.load(WORKFLOW)
        first = await wf.run(inputs={"crm_base_url": base_url, "out_dir": str(out_dir)}, store=store_url)
        assert first.status == "waiting"
        assert first.nodes["sign_off"].status == "waiting" and first.nodes["publish"].status == "pending"
        open_store(store_url).append(first.run_id, [ev.ApprovalDecided("sign_off", True, "tester")])
        final = await wf.resume(first.run_id, store=store_url)
        stats = httpx.get(f"{base_url}/admin/stats").json()
    assert final.status == "succeeded", {k: v.error for k, v in final.nodes.items()}

    log = _events(store_url, first.run_id)
    verdicts = [e.result["status"] for e in log if isinstance(e, ev.ToolCallFinished) and e.node == "adaptive_test_loop"]
    assert verdicts == [422, 201]
    (rewrite,) = [e for e in log if isinstance(e, ev.ArtifactWritten)]
    assert rewrite.artifact == "generate_mapper" and rewrite.version == 2 and "customer_tier" in rewrite.output["code"]
    invalidated = [e.node for e in log if isinstance(e, ev.NodeInvalidated)]
    assert sorted(invalidated) == ["write_docs", "write_tests"]
    sandbox_runs = [e.result for e in log if isinstance(e, ev.SandboxExecuted)]
    assert len(sandbox_runs) == 2 and all("network" in r["layers"] and "pids" in r["layers"] for r in sandbox_runs)
    prompt_inputs = [e for e in log if isinstance(e, ev.ModelCalled) and e.node == "adaptive_test_loop"]
    assert len(prompt_inputs) == 1 and prompt_inputs[0].scripted

    # the final tests and docs were written against version 2 of the code
    nodes = final.nodes
    assert "customer_tier" in nodes["write_tests"].output["code"]
    assert "customer_tier" in nodes["write_docs"].output["markdown"]
    assert nodes["adaptive_test_loop"].output["version"] == 2
    assert (out_dir / "mapper.py").read_text() == nodes["adaptive_test_loop"].output["code"]
    assert "customer_tier" in (out_dir / "README.md").read_text()
    assert stats["users_created"] == 3


async def test_server_errors_retry_the_same_code_without_a_rewrite(tmp_path: Path, store_url: str) -> None:
    with serve(create_app(schema_version="v1", fail_with_503=2)) as base_url:
        wf = Workflow.load(WORKFLOW)
        result = await wf.run(inputs={"crm_base_url": base_url, "out_dir": str(tmp_path / "o")}, store=store_url)
    assert result.status == "waiting"
    log = _events(store_url, result.run_id)
    verdicts = [e.result["status"] for e in log if isinstance(e, ev.ToolCallFinished) and e.node == "adaptive_test_loop"]
    assert verdicts == [503, 503, 201]
    assert not any(isinstance(e, ev.ArtifactWritten) for e in log), "5xx must never trigger a rewrite"
    assert result.nodes["adaptive_test_loop"].output["adaptations"] == 0


def test_bastion_demo_runs_end_to_end(tmp_path: Path) -> None:
    done = cli("demo", "--json", cwd=tmp_path, env={"BASTION_STORE": f"sqlite:///{tmp_path}/demo.db"})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded"
    assert all(n["status"] == "succeeded" for n in result["nodes"].values())
    log = _events(f"sqlite:///{tmp_path}/demo.db", result["run_id"])
    (decision,) = [e for e in log if isinstance(e, ev.ApprovalDecided)]
    assert decision.by == "demo" and decision.approved
    published = tmp_path / ".bastion" / "demo" / result["run_id"]
    assert sorted(p.name for p in published.iterdir()) == [".published", "README.md", "mapper.py", "test_mapper.py"]
