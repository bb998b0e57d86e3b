"""Run lifecycle: start a run, resume one, and the result shape the CLI and API return."""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from bastion.engine.scheduler import Scheduler
from bastion.errors import UnknownRunError, UserError
from bastion.spec import LoadedSpec, parse_spec
from bastion.spec.models import WorkflowSpec
from bastion.state import events as ev
from bastion.state.projection import RunState
from bastion.state.store import Store


@dataclass
class NodeResult:
    status: str
    attempts: int
    started_at: float | None
    finished_at: float | None
    output: Any
    error: str | None
    model: str | None


@dataclass
class RunResult:
    run_id: str
    workflow: str
    status: str
    nodes: dict[str, NodeResult]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=repr)


def result_of(state: RunState, spec: WorkflowSpec) -> RunResult:
    nodes = {}
    for node in spec.nodes:
        n = state.node(node.id)
        nodes[node.id] = NodeResult(n.status, n.attempts, n.started_at, n.finished_at, n.output, n.error, n.model)
    return RunResult(state.run_id, state.workflow, state.status, nodes)


def coerce_inputs(spec: WorkflowSpec, given: dict[str, Any]) -> dict[str, Any]:
    """Check inputs against `inputs:`; text from the command line is converted to the type."""
    unknown = sorted(set(given) - set(spec.inputs))
    if unknown:
        raise UserError(f"unknown input {unknown[0]!r}; the workflow declares: {', '.join(spec.inputs) or 'none'}")
    out: dict[str, Any] = {}
    for name, decl in spec.inputs.items():
        if name not in given:
            if decl.default is None:
                raise UserError(f"input {name!r} is required; pass --input {name}=VALUE")
            out[name] = decl.default
            continue
        out[name] = _coerce(name, decl.type, given[name])
    return out


def _coerce(name: str, kind: str, value: Any) -> Any:
    try:
        if kind == "string":
            return value if isinstance(value, str) else json.dumps(value)
        if kind in ("number", "integer", "boolean", "object", "array") and isinstance(value, str):
            value = json.loads(value) if kind != "boolean" else {"true": True, "false": False}[value.lower()]
        expected = {"number": (int, float), "integer": (int,), "boolean": (bool,), "object": (dict,), "array": (list,)}[kind]
        if not isinstance(value, expected) or (kind != "boolean" and isinstance(value, bool)):
            raise ValueError
        return value
    except (ValueError, KeyError):
        raise UserError(f"input {name!r} must be of type {kind}; got {value!r}") from None


async def start_run(loaded: LoadedSpec, store: Store, inputs: dict[str, Any] | None = None,
                    model: str | None = None, run_id: str | None = None) -> RunState:
    values = coerce_inputs(loaded.spec, inputs or {})
    run_id = run_id or uuid.uuid4().hex[:12]
    first = ev.RunStarted(loaded.spec.name, loaded.text, str(loaded.path), str(loaded.base_dir), values, model,
                          os.getpid(), socket.gethostname())
    record = store.create_run(run_id, loaded.spec.name, first)
    state = RunState(run_id)
    state.apply(record)
    return await Scheduler(store, run_id, loaded.spec, state).run()


def load_run(store: Store, run_id: str) -> tuple[RunState, WorkflowSpec]:
    """Rebuild a run's state from its log, with the spec text it was started with."""
    if not store.has_run(run_id):
        raise UnknownRunError(f"no run {run_id!r} in {store.url}; `bastion runs` lists the runs")
    state = RunState.rebuild(run_id, store.events(run_id))
    return state, parse_spec(state.spec_text, state.spec_path or "workflow.yaml")


async def resume_run(store: Store, run_id: str) -> RunState:
    state, spec = load_run(store, run_id)
    if state.status in ("succeeded", "failed", "cancelled"):
        return state
    host, pid = state.owner
    if state.status == "running" and host == socket.gethostname() and pid != os.getpid() and _alive(pid):
        raise UserError(f"run {run_id} is being executed by process {pid}; wait for it, "
                        f"or `bastion cancel {run_id}`")
    for record in store.append(run_id, [ev.RunResumed(os.getpid(), socket.gethostname())]):
        state.apply(record)
    return await Scheduler(store, run_id, spec, state).run()


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped by its parent) is not executing anything
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
