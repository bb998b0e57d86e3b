"""Approvals survive the process: run → exit 3 → approve elsewhere → resume → exit 0."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import cli, write

HERE = Path(__file__).resolve().parents[1] / "engine"

WF = """
name: needs_a_human
tools:
  record: {python: "fx_tools:record"}
  echo: {python: "fx_tools:echo"}
nodes:
  - {id: prepare, type: tool, tool: echo, args: {value: 7}}
  - id: sign_off
    type: approval
    depends_on: [prepare]
    message: "Ship {{ nodes.prepare.output }} items?"
  - {id: ship, type: tool, tool: record, depends_on: [sign_off], args: {path: "EFFECTS", label: ship}}
"""


def _setup(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    shutil.copy(HERE / "fx_tools.py", tmp_path / "fx_tools.py")
    effects = tmp_path / "effects.jsonl"
    wf = write(tmp_path, "wf.yaml", WF.replace("EFFECTS", str(effects)))
    return wf, effects, {"BASTION_STORE": f"sqlite:///{tmp_path}/b.db"}


def test_run_waits_then_approve_and_resume(tmp_path: Path) -> None:
    wf, effects, env = _setup(tmp_path)
    first = cli("run", str(wf), "--json", env=env)
    assert first.returncode == 3, first.stderr
    run = json.loads(first.stdout)
    assert run["status"] == "waiting" and run["nodes"]["sign_off"]["status"] == "waiting"
    assert not effects.exists(), "nothing after the approval may run before it"

    pending = json.loads(cli("approvals", "--json", env=env).stdout)["approvals"]
    assert [(p["run_id"], p["node"], p["message"]) for p in pending] == [(run["run_id"], "sign_off", "Ship 7 items?")]

    approved = cli("approve", run["run_id"], "sign_off", "--by", "alice", "--reason", "checked", env=env)
    assert approved.returncode == 0, approved.stderr
    again = cli("approve", run["run_id"], "sign_off", env=env)
    assert again.returncode == 2 and "already approved by alice" in again.stderr

    resumed = cli("resume", run["run_id"], "--json", env=env)
    assert resumed.returncode == 0, resumed.stderr
    final = json.loads(resumed.stdout)
    assert final["status"] == "succeeded"
    assert final["nodes"]["sign_off"]["output"] == {"approved": True, "by": "alice", "reason": "checked"}
    assert len(effects.read_text().splitlines()) == 1
    assert json.loads(cli("approvals", "--json", env=env).stdout)["approvals"] == []


def test_deny_fails_the_node_and_skips_what_follows(tmp_path: Path) -> None:
    wf, effects, env = _setup(tmp_path)
    run_id = json.loads(cli("run", str(wf), "--json", env=env).stdout)["run_id"]
    assert cli("deny", run_id, "sign_off", "--by", "bob", "--reason", "not today", env=env).returncode == 0
    done = cli("resume", run_id, "--json", env=env)
    assert done.returncode == 1
    nodes = json.loads(done.stdout)["nodes"]
    assert nodes["sign_off"]["status"] == "failed" and "denied by bob: not today" in nodes["sign_off"]["error"]
    assert nodes["ship"]["status"] == "skipped"
    assert not effects.exists()


def test_user_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    wf, _, env = _setup(tmp_path)
    run_id = json.loads(cli("run", str(wf), "--json", env=env).stdout)["run_id"]
    for args, needle in [(("approve", run_id, "prepare"), "no approval request for node 'prepare'"),
                         (("approve", "nope", "sign_off"), "no run 'nope'"),
                         (("show", "nope"), "no run 'nope'"),
                         (("run", str(wf), "--input", "x=1"), "unknown input 'x'"),
                         (("run", str(wf), "--input", "novalue"), "write --input NAME=VALUE"),
                         (("runs", "--store", "mysql://x"), "is not supported")]:
        done = cli(*args, env=env)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert needle in done.stderr and "Traceback" not in done.stderr


def test_cancel_a_waiting_run(tmp_path: Path) -> None:
    wf, _, env = _setup(tmp_path)
    run_id = json.loads(cli("run", str(wf), "--json", env=env).stdout)["run_id"]
    assert cli("cancel", run_id, env=env).returncode == 0
    assert json.loads(cli("show", run_id, "--json", env=env).stdout)["status"] == "cancelled"
    assert cli("resume", run_id, env=env).returncode == 1


def test_resume_refuses_while_another_process_executes_the_run(tmp_path: Path) -> None:
    import subprocess
    import time

    from tests.conftest import BASTION

    shutil.copy(HERE / "fx_tools.py", tmp_path / "fx_tools.py")
    wf = write(tmp_path, "slow.yaml", """
        name: slow
        tools: {sleep: {python: "fx_tools:async_sleep"}}
        nodes: [{id: nap, type: tool, tool: sleep, args: {seconds: 20}}]
    """)
    env = {"BASTION_STORE": f"sqlite:///{tmp_path}/b.db"}
    import os
    proc = subprocess.Popen([*BASTION, "run", str(wf)], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            runs = json.loads(cli("runs", "--json", env=env).stdout)["runs"]
            if runs:
                break
            time.sleep(0.1)
        second = cli("resume", runs[0]["run_id"], env=env)
        assert second.returncode == 2 and f"being executed by process {proc.pid}" in second.stderr
    finally:
        proc.kill()
        proc.wait()
