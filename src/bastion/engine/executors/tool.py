"""`tool` nodes: render the args, call the tool through the Gate. No model involved."""

from __future__ import annotations

from typing import Any

from bastion.engine.context import RunContext
from bastion.errors import NodeError
from bastion.spec.models import ToolNode
from bastion.spec.templates import render


async def run_tool(ctx: RunContext, node: ToolNode, attempt: int) -> Any:
    args = render(node.args, ctx.template_context(node))
    if not isinstance(args, dict):
        raise NodeError(f"node '{node.id}': args must render to a mapping")
    # the key ignores `attempt`: a retry of the same call is the same logical call
    return await ctx.gate.call_tool(node.id, node.tool, args, ctx.key(node.id, "call", 0))
