"""`routine` nodes: one model call (persona + action), output validated against `output`."""

from __future__ import annotations

from typing import Any

from bastion.engine.context import RunContext
from bastion.errors import ModelOutputError
from bastion.spec.models import RoutineNode
from bastion.state import events as ev


async def ask_model(ctx: RunContext, node_id: str, agent_name: str, prompt: str,
                    output_schema: dict[str, Any] | None, attempt: int, key: str) -> Any:
    """One recorded model call; on resume a recorded answer is reused, not asked again."""
    if key in ctx.state.model_results:
        return ctx.state.model_results[key]
    from bastion.agents import call_model

    model = ctx.model_for(agent_name)
    responses = ctx.responses() if model == "scripted" else None
    try:
        reply = await call_model(model=model, persona=ctx.spec.agents[agent_name].persona, prompt=prompt,
                                 output_schema=output_schema, node_id=node_id, attempt=attempt,
                                 responses=responses)
    except ModelOutputError as exc:
        ctx.emit([ev.ModelCalled(node_id, attempt, model, model == "scripted", 0, 0, key, None, str(exc), prompt)])
        raise
    ctx.emit([ev.ModelCalled(node_id, attempt, reply.model, reply.scripted, reply.input_tokens,
                             reply.output_tokens, key, reply.output, prompt=prompt)])
    return reply.output


async def run_routine(ctx: RunContext, node: RoutineNode, attempt: int) -> Any:
    prompt = ctx.prompt(node, node.action)
    # a re-run after invalidation is a new question: the scripted model answers its next entry
    call = ctx.state.node(node.id).model_calls + 1
    return await ask_model(ctx, node.id, node.agent, prompt, node.output, call,
                           ctx.key(node.id, "model", attempt))
