"""Tools: the registry of Pydantic-typed Python callables a workflow may call."""

from bastion.tools.registry import IDEMPOTENCY_PARAM, Tool, ToolRegistry

__all__ = ["IDEMPOTENCY_PARAM", "Tool", "ToolRegistry"]
