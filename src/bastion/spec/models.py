"""Pydantic models of workflow.yaml: the edge where user text becomes typed data.

Unknown keys are errors everywhere (`extra="forbid"`) so a typo never silently does nothing.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

_ID = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputSpec(_Strict):
    type: Literal["string", "number", "integer", "boolean", "object", "array"] = "string"
    default: Any = None
    description: str | None = None


class ToolSpec(_Strict):
    python: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$",
                        description="module:callable, importable from the workflow's folder")
    description: str | None = None
    inline: bool = Field(default=False, description=(
        "call a sync tool in the event loop instead of a worker thread: only for fast, "
        "non-blocking tools (a blocking inline tool stalls every other node)"))


class AgentSpec(_Strict):
    persona: str
    model: str = "scripted"
    identity: str | None = None
    scopes: list[str] = Field(default_factory=list)


Layer = Literal["network", "pids", "memory", "filesystem", "seccomp"]


class SandboxSpec(_Strict):
    require: list[Layer] = Field(default_factory=lambda: list[Layer](["network", "pids", "memory", "filesystem"]))


class _NodeBase(_Strict):
    id: str = Field(pattern=_ID)
    depends_on: list[str] = Field(default_factory=list)
    timeout: float | None = Field(default=None, gt=0)
    description: str | None = None


class ToolNode(_NodeBase):
    type: Literal["tool"]
    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    max_retries: int = Field(default=0, ge=0, le=20)


class RoutineNode(_NodeBase):
    type: Literal["routine"]
    agent: str
    action: str
    output: dict[str, Any] | None = None
    max_retries: int = Field(default=0, ge=0, le=20)


class ApprovalNode(_NodeBase):
    type: Literal["approval"]
    message: str


class SandboxRun(_Strict):
    """What the adaptive node runs in the sandbox each attempt."""

    entrypoint: str = Field(description="file beside workflow.yaml, run with python3")
    module: str = Field(default="artifact.py", description="file name the artifact's code is written as")
    input: Any = None
    timeout: float = Field(default=10, gt=0)
    memory_mb: int = Field(default=256, gt=16)
    pids: int = Field(default=64, gt=1)


class ToolCall(_Strict):
    tool: str
    args: dict[str, Any] = Field(default_factory=dict)


class AdaptiveNode(_NodeBase):
    type: Literal["adaptive"]
    agent: str
    action: str
    artifact: str = Field(description="the dependency whose output.code is run and rewritten")
    run: SandboxRun
    verify: ToolCall
    max_retries: int = Field(default=3, ge=0, le=20)


Node = Annotated[Union[ToolNode, RoutineNode, ApprovalNode, AdaptiveNode], Field(discriminator="type")]


class WorkflowSpec(_Strict):
    name: str
    version: str = "1"
    description: str | None = None
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    tools: dict[str, ToolSpec] = Field(default_factory=dict)
    agents: dict[str, AgentSpec] = Field(default_factory=dict)
    nodes: list[Node]
    concurrency: int = Field(default=8, ge=1, le=10_000)
    responses: str | None = Field(default=None, description="scripted model answers, beside the workflow")
    sandbox: SandboxSpec = Field(default_factory=SandboxSpec)

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, (int, float)) else value

    def node(self, node_id: str) -> Any:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)
