"""Crash safety: SIGKILL a run at random moments, resume it, repeat — until it completes.

Every node must complete, and no tool call whose result is in the log may run again. A call
that was in flight at the kill may run again, but only with the same idempotency key.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from bastion.state import events as ev
from bastion.state import open_store
from tests.conftest import BASTION, cli, write

HERE = Path(__file__).parent
NODES = 24


def _workflow(folder: Path, effects: Path) -> Path:
    (folder / "fx_tools.py").write_text((HERE / "fx_tools.py").read_text() + '''

def record_slowly(path: str, label: str, idempotency_key: str) -> dict:
    import time
    out = record(path, label, idempotency_key)
    time.sleep(0.1)    # widen the window between the effect and its recorded result
    return out
''')
    nodes = []
    for i in range(NODES):
        deps = f"[n{i - 1}]" if i % 4 else ("[]" if i == 0 else f"[n{i - 4}]")
        nodes.append(f"  - {{id: n{i}, type: tool, tool: rec, depends_on: {deps}, "
                     f"args: {{path: '{effects}', label: n{i}}}}}")
    return write(folder, "wf.yaml", "name: crashy\nconcurrency: 4\ntools:\n"
                 "  rec: {python: 'fx_tools:record_slowly'}\nnodes:\n" + "\n".join(nodes) + "\n")


def _start(args: list[str], store: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*BASTION, *args], env={**os.environ, "BASTION_STORE": store},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _event_count(db: Path) -> int:
    import sqlite3

    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_sigkill_at_random_moments_then_resume(tmp_path: Path) -> None:
    rng = random.Random(20261122)
    db = tmp_path / "b.db"
    store = f"sqlite:///{db}"
    effects = tmp_path / "effects.jsonl"
    wf = _workflow(tmp_path, effects)
    kills = 0
    proc = _start(["run", str(wf), "--json"], store)
    run_id = None
    for _ in range(60):
        # let this process make some progress (new events), then kill it at a random moment
        seen = _event_count(db)
        deadline = time.monotonic() + 20
        while _event_count(db) <= seen and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.choice([0.0, rng.uniform(0.0, 0.25)]))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        if run_id is None:
            runs = json.loads(cli("runs", "--json", env={"BASTION_STORE": store}).stdout)["runs"]
            if not runs:  # killed before the run was even recorded: start again
                proc = _start(["run", str(wf), "--json"], store)
                continue
            run_id = runs[0]["run_id"]
        status = json.loads(cli("show", run_id, "--json", env={"BASTION_STORE": store}).stdout)["status"]
        if status == "succeeded":
            break
        proc = _start(["resume", run_id], store)
    else:
        raise AssertionError("the run did not complete after 60 kill/resume rounds")
    assert kills >= 3, "the test should have killed the run several times"

    result = json.loads(cli("show", run_id, "--json", env={"BASTION_STORE": store}).stdout)
    assert all(n["status"] == "succeeded" for n in result["nodes"].values())

    log = [r.event for r in open_store(store).events(run_id)]
    finished = Counter(e.key for e in log if isinstance(e, ev.ToolCallFinished))
    assert all(count == 1 for count in finished.values()), "a call's result is recorded once"
    for i, e in enumerate(log):  # nothing starts again once its result is recorded
        if isinstance(e, ev.ToolCallFinished):
            assert not any(isinstance(later, ev.ToolCallStarted) and later.key == e.key for later in log[i:])
    key_of = {e.node: e.key for e in log if isinstance(e, ev.ToolCallStarted)}
    executed = [json.loads(line) for line in effects.read_text().splitlines()]
    assert {x["label"] for x in executed} == {f"n{i}" for i in range(NODES)}
    for x in executed:
        assert x["key"] == key_of[x["label"]], "a repeated call carries the same idempotency key"
    repeats = Counter(x["key"] for x in executed)
    started = Counter(e.key for e in log if isinstance(e, ev.ToolCallStarted))
    for key, times in repeats.items():
        assert times <= started[key], "an effect ran more often than it was attempted"
