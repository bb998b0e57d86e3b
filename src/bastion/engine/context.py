"""What an executor may touch while running one node: the run's state, the Gate, models, sandbox.

Executors never hold a store or a tool directly: effects go through `gate`, events through
`emit`, so the scheduler sees every transition (and can invalidate stale consumers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from bastion.governance import Gate, idempotency_key
from bastion.safety import flag_injection, sanitise_value
from bastion.spec.templates import render
from bastion.spec.models import WorkflowSpec
from bastion.state import events as ev
from bastion.state.projection import RunState


class NodeWaiting(Exception):
    """An executor paused its node for a human; not a failure (internal to the engine)."""


@dataclass
class RunContext:
    run_id: str
    spec: WorkflowSpec
    state: RunState
    base_dir: Path
    gate: Gate
    emit: Callable[[Sequence[ev.Event]], None]
    model_override: str | None = None
    _responses: Any = field(default=None, repr=False)

    def template_context(self, node: Any) -> dict[str, Any]:
        """`inputs` and the outputs of the node's declared dependencies, nothing else."""
        deps = {d: {"output": self.state.node(d).output} for d in node.depends_on}
        return {"inputs": dict(self.state.inputs), "nodes": deps}

    def prompt(self, node: Any, template: str) -> str:
        """Render a prompt: dependency outputs are outside text, so they are sanitised first
        (secrets redacted, host paths stripped) and instructions hidden in them are flagged."""
        context = self.template_context(node)
        context["nodes"] = sanitise_value(context["nodes"])
        return flag_injection(str(render(template, context)))

    def key(self, node_id: str, *parts: object) -> str:
        n = self.state.node(node_id)
        return idempotency_key(self.run_id, node_id, n.invalidations, *parts)

    def model_for(self, agent_name: str) -> str:
        return self.model_override or self.spec.agents[agent_name].model

    def responses(self) -> Any:
        """Scripted answers, loaded once when a scripted model first needs them."""
        if self._responses is None:
            from bastion.agents import load_scripted_responses

            self._responses = load_scripted_responses(self.responses_path())
        return self._responses

    def responses_path(self) -> Path:
        if self.spec.responses:
            return self.base_dir / self.spec.responses
        stem = Path(self.state.spec_path).stem if self.state.spec_path else "workflow"
        specific = self.base_dir / f"{stem}.responses.yaml"
        return specific if specific.exists() else self.base_dir / "responses.yaml"
