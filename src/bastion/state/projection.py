"""Run state as a projection of the event log: rebuilt from events, never stored on its own.

The scheduler applies each event it appends through the same `apply`, so the live state and
the state rebuilt after a crash are the same by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from bastion.state import events as ev
from bastion.state.store import Recorded

PENDING, RUNNING, SUCCEEDED, FAILED, SKIPPED, WAITING, CANCELLED = (
    "pending", "running", "succeeded", "failed", "skipped", "waiting", "cancelled")
DONE = (SUCCEEDED, FAILED, SKIPPED, CANCELLED)


@dataclass
class NodeState:
    status: str = PENDING
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    output: Any = None
    error: str | None = None
    model: str | None = None
    reads: dict[str, int] = field(default_factory=dict)
    invalidations: int = 0  # how many times stale work was thrown away; part of idempotency keys
    model_calls: int = 0    # model calls made for this node in the run (the scripted model's attempt)


@dataclass
class Approval:
    node: str
    message: str
    requested_at: float
    approved: bool | None = None
    by: str | None = None
    reason: str = ""


@dataclass
class RunState:
    run_id: str
    workflow: str = ""
    spec_text: str = ""
    spec_path: str = ""
    base_dir: str = "."
    inputs: dict[str, Any] = field(default_factory=dict)
    model_override: str | None = None
    status: str = "running"
    created_at: float = 0.0
    finished_at: float | None = None
    cancel_requested: bool = False
    owner: tuple[str, int] = ("", 0)  # (host, pid) of the process that last executed the run
    nodes: dict[str, NodeState] = field(default_factory=dict)
    tool_results: dict[str, Any] = field(default_factory=dict)      # idempotency key -> result
    model_results: dict[str, Any] = field(default_factory=dict)      # call key -> model output
    approvals: dict[str, Approval] = field(default_factory=dict)
    artifact_versions: dict[str, int] = field(default_factory=dict)  # node -> latest version
    last_seq: int = 0

    @classmethod
    def rebuild(cls, run_id: str, records: Iterable[Recorded]) -> "RunState":
        state = cls(run_id)
        for record in records:
            state.apply(record)
        return state

    def node(self, node_id: str) -> NodeState:
        found = self.nodes.get(node_id)
        if found is None:
            found = self.nodes[node_id] = NodeState()
        return found

    def apply(self, record: Recorded) -> None:
        if record.seq:  # 0: applied by the live scheduler before the log assigned a seq
            self.last_seq = record.seq
        e, at = record.event, record.at
        # the events every node writes come first: this runs for every event
        if isinstance(e, ev.NodeStarted):
            n = self.node(e.node)
            n.status, n.attempts, n.reads = RUNNING, e.attempt, dict(e.reads)
            n.started_at = n.started_at if e.attempt > 1 and n.started_at else at
            n.finished_at, n.error = None, None
        elif isinstance(e, ev.NodeSucceeded):
            n = self.node(e.node)
            n.status, n.output, n.finished_at, n.model, n.error = SUCCEEDED, e.output, at, e.model, None
            self.artifact_versions[e.node] = self.artifact_versions.get(e.node, 0) + 1
        elif isinstance(e, ev.ToolCallFinished):
            self.tool_results[e.key] = e.result
        elif isinstance(e, ev.RunStarted):
            self.workflow, self.spec_text, self.spec_path = e.workflow, e.spec_text, e.spec_path
            self.base_dir, self.inputs, self.model_override = e.base_dir, e.inputs, e.model_override
            self.created_at, self.status, self.owner = at, "running", (e.host, e.pid)
        elif isinstance(e, ev.RunResumed):
            self.status, self.owner = "running", (e.host, e.pid)
        elif isinstance(e, ev.RunWaiting):
            self.status = "waiting"
        elif isinstance(e, ev.RunCancelRequested):
            self.cancel_requested = True
        elif isinstance(e, ev.RunFinished):
            self.status, self.finished_at = e.status, at
        elif isinstance(e, ev.NodeFailed):
            n = self.node(e.node)
            n.error = e.error
            if e.final:
                n.status, n.finished_at = FAILED, at
        elif isinstance(e, ev.NodeSkipped):
            n = self.node(e.node)
            n.status, n.error, n.finished_at = SKIPPED, e.reason, at
        elif isinstance(e, ev.NodeCancelled):
            n = self.node(e.node)
            n.status, n.error, n.finished_at = CANCELLED, e.reason, at
        elif isinstance(e, ev.NodeInvalidated):
            n = self.node(e.node)
            n.status, n.output, n.finished_at, n.error = PENDING, None, None, None
            n.attempts, n.invalidations = 0, n.invalidations + 1
        elif isinstance(e, ev.ModelCalled):
            self.node(e.node).model_calls += 1
            if e.key and not e.error:
                self.model_results[e.key] = e.output
        elif isinstance(e, ev.ArtifactWritten):
            n = self.node(e.artifact)
            n.output = e.output
            self.artifact_versions[e.artifact] = e.version
        elif isinstance(e, ev.ApprovalRequested):
            self.approvals[e.node] = Approval(e.node, e.message, at)
            self.node(e.node).status = WAITING
        elif isinstance(e, ev.ApprovalDecided):
            approval = self.approvals.setdefault(e.node, Approval(e.node, "", at))
            approval.approved, approval.by, approval.reason = e.approved, e.by, e.reason
