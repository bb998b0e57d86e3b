"""One error hierarchy for Bastion, so callers can catch by meaning, not by module.

    BastionError
    ├── UserError                 a mistake the user can fix; the CLI prints it, exits 2
    │   ├── SpecError             workflow.yaml is invalid (carries every problem found)
    │   ├── UnknownRunError       a run id that is not in the store
    │   └── ScriptedResponseMissing  the scripted model has no answer for a node/attempt
    ├── StoreError                the event log could not be read or written
    ├── NodeError                 a node failed while running (the run records it)
    │   ├── ToolError             a tool raised or returned something unusable
    │   ├── ModelOutputError      model output did not match the node's `output` schema
    │   └── NodeTimeout           a node exceeded its `timeout`
    └── SandboxError              generated code could not be run contained
        └── SandboxUnavailable    a required isolation layer is missing: refused, fail closed
"""

from __future__ import annotations


class BastionError(Exception):
    """Root of every error Bastion raises on purpose."""


class UserError(BastionError):
    """The user can fix this; the message says what to change."""


class SpecError(UserError):
    """workflow.yaml is invalid. `problems` holds one `FILE:LINE:COL: message` line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class UnknownRunError(UserError):
    """A run id that the store does not hold."""


class ScriptedResponseMissing(UserError):
    """The scripted model has no response for this node and attempt."""


class StoreError(BastionError):
    """The event log could not be read or written."""


class NodeError(BastionError):
    """A node failed; the run records the message and fails only its descendants."""


class ToolError(NodeError):
    """A tool raised, or returned something Bastion cannot record."""


class ModelOutputError(NodeError):
    """Model output did not validate against the node's `output` schema."""


class NodeTimeout(NodeError):
    """A node ran longer than its `timeout`."""


class SandboxError(BastionError):
    """Generated code could not be run inside the sandbox."""


class SandboxUnavailable(SandboxError):
    """A required isolation layer is not available here; execution is refused."""
