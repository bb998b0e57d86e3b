"""Every Store backend passes these: append-only, ordered, typed JSON events, runs index."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bastion.errors import UnknownRunError, UserError
from bastion.state import RunState, open_store
from bastion.state import events as ev


@pytest.fixture(params=["sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    s = open_store(f"sqlite:///{tmp_path}/s.db")
    yield s
    s.close()


def _start(store, run_id: str = "r1"):  # type: ignore[no-untyped-def]
    return store.create_run(run_id, "wf", ev.RunStarted("wf", "name: wf", "wf.yaml", "/tmp", {"a": 1}))


def test_append_assigns_consecutive_seqs_and_round_trips_typed_events(store) -> None:  # type: ignore[no-untyped-def]
    _start(store)
    store.append("r1", [ev.NodeStarted("a", 1, {"dep": 2}), ev.NodeSucceeded("a", 1, {"x": [1, "two", None]})])
    records = store.events("r1")
    assert [r.seq for r in records] == [1, 2, 3]
    assert records[1].event == ev.NodeStarted("a", 1, {"dep": 2})
    assert records[2].event == ev.NodeSucceeded("a", 1, {"x": [1, "two", None]})
    assert [r.seq for r in store.events("r1", after_seq=2)] == [3]


def test_runs_index_tracks_status(store) -> None:  # type: ignore[no-untyped-def]
    _start(store, "r1")
    _start(store, "r2")
    store.append("r1", [ev.RunWaiting(["x"])])
    store.append("r2", [ev.RunFinished("failed")])
    status = {r.run_id: r.status for r in store.runs()}
    assert status == {"r1": "waiting", "r2": "failed"}
    assert store.has_run("r1") and not store.has_run("nope")


def test_unknown_run_is_a_user_error(store) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnknownRunError):
        store.append("nope", [ev.RunWaiting([])])


def test_events_are_json_never_pickle(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _start(store)
    store.append("r1", [ev.ToolCallFinished("a", "k", {"ok": True})])
    rows = sqlite3.connect(tmp_path / "s.db").execute("SELECT kind, data FROM events").fetchall()
    assert [k for k, _ in rows] == ["run_started", "tool_call_finished"]
    assert json.loads(rows[1][1]) == {"node": "a", "key": "k", "result": {"ok": True}}


def test_projection_rebuilds_node_states(store) -> None:  # type: ignore[no-untyped-def]
    _start(store)
    store.append("r1", [ev.NodeStarted("a", 1), ev.NodeFailed("a", 1, "boom", final=False),
                        ev.NodeStarted("a", 2), ev.NodeSucceeded("a", 2, 42),
                        ev.NodeStarted("b", 1, {"a": 1}), ev.ApprovalRequested("b", "ok?"),
                        ev.ArtifactWritten("a", 2, 43, by="c"), ev.NodeInvalidated("b", "stale")])
    state = RunState.rebuild("r1", store.events("r1"))
    assert state.node("a").status == "succeeded" and state.node("a").attempts == 2
    assert state.node("a").output == 43 and state.artifact_versions["a"] == 2
    assert state.node("b").status == "pending" and state.node("b").invalidations == 1
    assert state.approvals["b"].message == "ok?" and state.inputs == {"a": 1}


def test_a_second_process_appends_to_the_same_run(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _start(store)
    code = ("from bastion.state import open_store, events as ev; "
            f"open_store('sqlite:///{tmp_path}/s.db').append('r1', [ev.ApprovalDecided('b', True, 'other')])")
    subprocess.run([sys.executable, "-c", code], check=True)
    store.append("r1", [ev.RunWaiting([])])
    kinds = [r.event.kind for r in store.events("r1")]
    assert kinds == ["run_started", "approval_decided", "run_waiting"]


def test_bad_store_urls_say_what_to_write(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="sqlite:///"):
        open_store("postgres://nowhere/db")
    not_db = tmp_path / "not.db"
    not_db.write_text("this is not sqlite" * 100)
    with pytest.raises(UserError, match="not a usable SQLite database"):
        open_store(f"sqlite:///{not_db}")
