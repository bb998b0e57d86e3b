"""Typed events: every transition of a run, serialised as JSON (never pickle).

The event log is the truth (DESIGN rule 2); node states, outputs, approvals and artifact
versions are projections of these events (see projection.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import orjson

_KINDS: dict[str, type["Event"]] = {}
_FIELDS: dict[type["Event"], list[str]] = {}


@dataclass(frozen=True)
class Event:
    """Base of every event; `kind` is the stable name written to the log."""

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.kind:
            _KINDS[cls.kind] = cls

    def to_json(self) -> str:
        # a shallow dict: values are already JSON data (asdict would deep-copy them)
        names = _FIELDS.get(type(self)) or _FIELDS.setdefault(type(self), [f.name for f in fields(self)])
        data = {n: getattr(self, n) for n in names}
        try:  # orjson: the log is written for every event, and it is several times faster
            return orjson.dumps(data, default=_jsonable, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # what orjson refuses (integers beyond 64 bits...) the stdlib writes
            return json.dumps(data, separators=(",", ":"), default=_jsonable)


def _jsonable(value: Any) -> Any:
    """Outputs are JSON; anything else is recorded as its text rather than lost."""
    if isinstance(value, (set, tuple)):
        return list(value)
    return repr(value)


def decode(kind: str, data: str) -> Event:
    cls = _KINDS.get(kind)
    if cls is None:
        raise ValueError(f"unknown event kind {kind!r}")
    raw = json.loads(data)
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in raw.items() if k in names})


@dataclass(frozen=True)
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    workflow: str
    spec_text: str
    spec_path: str
    base_dir: str
    inputs: dict[str, Any]
    model_override: str | None = None
    pid: int = 0    # the process executing the run, so a second `resume` can refuse
    host: str = ""


@dataclass(frozen=True)
class RunResumed(Event):
    kind: ClassVar[str] = "run_resumed"
    pid: int
    host: str = ""


@dataclass(frozen=True)
class RunWaiting(Event):
    kind: ClassVar[str] = "run_waiting"
    nodes: list[str]


@dataclass(frozen=True)
class RunCancelRequested(Event):
    kind: ClassVar[str] = "run_cancel_requested"
    by: str = "cli"


@dataclass(frozen=True)
class RunFinished(Event):
    kind: ClassVar[str] = "run_finished"
    status: str  # succeeded | failed | cancelled


@dataclass(frozen=True)
class NodeStarted(Event):
    kind: ClassVar[str] = "node_started"
    node: str
    attempt: int
    reads: dict[str, int] = field(default_factory=dict)  # dependency -> artifact version read


@dataclass(frozen=True)
class NodeSucceeded(Event):
    kind: ClassVar[str] = "node_succeeded"
    node: str
    attempt: int
    output: Any
    model: str | None = None


@dataclass(frozen=True)
class NodeFailed(Event):
    kind: ClassVar[str] = "node_failed"
    node: str
    attempt: int
    error: str
    final: bool  # False: a retry follows


@dataclass(frozen=True)
class NodeSkipped(Event):
    kind: ClassVar[str] = "node_skipped"
    node: str
    reason: str


@dataclass(frozen=True)
class NodeCancelled(Event):
    kind: ClassVar[str] = "node_cancelled"
    node: str
    reason: str


@dataclass(frozen=True)
class NodeInvalidated(Event):
    kind: ClassVar[str] = "node_invalidated"
    node: str
    reason: str


@dataclass(frozen=True)
class ToolCallStarted(Event):
    kind: ClassVar[str] = "tool_call_started"
    node: str
    tool: str
    key: str
    args: dict[str, Any]


@dataclass(frozen=True)
class ToolCallFinished(Event):
    kind: ClassVar[str] = "tool_call_finished"
    node: str
    key: str
    result: Any


@dataclass(frozen=True)
class ToolCallFailed(Event):
    kind: ClassVar[str] = "tool_call_failed"
    node: str
    key: str
    error: str


@dataclass(frozen=True)
class ModelCalled(Event):
    kind: ClassVar[str] = "model_called"
    node: str
    attempt: int
    model: str
    scripted: bool
    input_tokens: int
    output_tokens: int
    key: str = ""
    output: Any = None  # recorded so a resumed run reuses the answer instead of asking again
    error: str = ""     # the answer did not validate; the node's retry asks again
    prompt: str = ""    # what the model was shown (already sanitised), for audit and replay


@dataclass(frozen=True)
class SandboxExecuted(Event):
    kind: ClassVar[str] = "sandbox_executed"
    node: str
    attempt: int
    result: dict[str, Any]


@dataclass(frozen=True)
class ArtifactWritten(Event):
    """A new version of a node's output (an adaptive node rewrote the code): STATE_MUTATED."""

    kind: ClassVar[str] = "artifact_written"
    artifact: str
    version: int
    output: Any
    by: str
    rationale: str = ""


@dataclass(frozen=True)
class ApprovalRequested(Event):
    kind: ClassVar[str] = "approval_requested"
    node: str
    message: str


@dataclass(frozen=True)
class ApprovalDecided(Event):
    kind: ClassVar[str] = "approval_decided"
    node: str
    approved: bool
    by: str
    reason: str = ""
