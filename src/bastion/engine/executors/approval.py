"""`approval` nodes: the run pauses durably until a human decides (approve / deny)."""

from __future__ import annotations

from typing import Any

from bastion.engine.context import NodeWaiting, RunContext
from bastion.errors import NodeError
from bastion.spec.models import ApprovalNode
from bastion.spec.templates import render
from bastion.state import events as ev


async def run_approval(ctx: RunContext, node: ApprovalNode, attempt: int) -> Any:
    decision = ctx.state.approvals.get(node.id)
    if decision is not None and decision.approved is not None:
        if not decision.approved:
            raise NodeError(f"denied by {decision.by}" + (f": {decision.reason}" if decision.reason else ""))
        return {"approved": True, "by": decision.by, "reason": decision.reason}
    if decision is None:
        message = str(render(node.message, ctx.template_context(node)))
        ctx.emit([ev.ApprovalRequested(node.id, message)])
    raise NodeWaiting(node.id)
