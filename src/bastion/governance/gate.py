"""The Gate: the one path by which a workflow causes an effect (DESIGN rule 1).

Order for every call: scope check → execute once → audit event. The event log makes the
execution at-most-once per idempotency key: a call whose result is recorded is answered
from the log, never executed again; a call that was in flight when the process died is
retried with the same key, so a tool that honours the key does not repeat its effect.
Policy engines, approvals-by-policy and budgets slot in between the scope check and the call.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Awaitable, Callable, Sequence

from bastion.errors import BastionError, ToolError
from bastion.state import events as ev
from bastion.state.projection import RunState
from bastion.tools import ToolRegistry

Commit = Callable[[Sequence[ev.Event]], Awaitable[None]]
Defer = Callable[[Sequence[ev.Event]], None]


def idempotency_key(run_id: str, node: str, *parts: object) -> str:
    """Stable for the same logical call across retries and resumes; different otherwise."""
    text = "/".join([run_id, node, *map(str, parts)])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Gate:
    def __init__(self, state: RunState, registry: ToolRegistry, commit: Commit, defer: Defer) -> None:
        self._state = state
        self._registry = registry
        self._commit = commit   # durable before the effect: a crash after it means "in flight"
        self._defer = defer     # the result rides with the node's next event

    async def call_tool(self, node: str, tool_name: str, args: dict[str, Any], key: str,
                        scopes: list[str] | None = None) -> Any:
        if key in self._state.tool_results:
            return self._state.tool_results[key]
        tool = self._registry.get(tool_name)
        if scopes is not None and scopes and f"tool:{tool_name}" not in scopes and "tool:*" not in scopes:
            raise ToolError(f"agent scopes {scopes} do not allow tool '{tool_name}' (add 'tool:{tool_name}')")
        await self._commit([ev.ToolCallStarted(node, tool_name, key, dict(args))])  # non-JSON values are logged as text
        try:
            result = await tool.invoke(args, key)
            result = _json_safe(result)
        except BastionError as exc:
            self._defer([ev.ToolCallFailed(node, key, str(exc))])
            raise
        except Exception as exc:  # a tool's own failure is recorded, then fails the node
            message = f"tool '{tool_name}' raised {type(exc).__name__}: {exc}"
            self._defer([ev.ToolCallFailed(node, key, message)])
            raise ToolError(message) from exc
        # Deferred: if the process dies before the node's next event is written, the call
        # counts as in flight and is retried with the same idempotency key.
        self._defer([ev.ToolCallFinished(node, key, result)])
        return result

    async def run_code(self, node: str, attempt: int, sandbox: Any, **run: Any) -> Any:
        """Run generated code in the Sandbox (never in this process); audit what it did,
        with the isolation layers that were in force."""
        result = await sandbox.run(**run)
        await self._commit([ev.SandboxExecuted(node, attempt, result.to_dict())])
        return result


_SCALARS = (str, int, float, bool, type(None))


def _json_safe(value: Any) -> Any:
    """Results go into the JSON log; a result that is not JSON fails the call loudly."""
    if isinstance(value, _SCALARS):
        return value
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise ToolError(f"tool returned a value that is not JSON ({exc}); return dicts, lists, "
                        "strings, numbers, booleans or None") from None
