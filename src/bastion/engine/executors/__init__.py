"""One executor per node type: an async function (ctx, node, attempt) -> output."""

from typing import Any, Awaitable, Callable

from bastion.engine.context import RunContext
from bastion.engine.executors.adaptive import run_adaptive
from bastion.engine.executors.approval import run_approval
from bastion.engine.executors.routine import run_routine
from bastion.engine.executors.tool import run_tool

Executor = Callable[[RunContext, Any, int], Awaitable[Any]]

EXECUTORS: dict[str, Executor] = {
    "tool": run_tool,
    "routine": run_routine,
    "approval": run_approval,
    "adaptive": run_adaptive,
}

__all__ = ["EXECUTORS", "Executor"]
