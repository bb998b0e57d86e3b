"""A model wrapper that repairs broken JSON in output-tool arguments before pydantic-ai parses them.

Text answers are repaired by the text output function, but a provider that calls the output
tool with truncated or comma-sloppy JSON arguments would otherwise cost a retry (or the
attempt) over a syntax slip. Repairing here, before pydantic-ai sees the response, gives
both output paths the same tolerance. Types are never coerced: validation still decides.
"""

from __future__ import annotations

import json
from dataclasses import replace

import json_repair
from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models import ModelRequestParameters
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings

from bastion.agents._output import strip_fences


def repair_tool_args(args: str) -> str:
    """Return `args` unchanged if it is valid JSON, else the repaired JSON text."""
    try:
        json.loads(args)
        return args
    except json.JSONDecodeError:
        pass
    repaired = json_repair.loads(strip_fences(args), skip_json_loads=True)
    if not isinstance(repaired, dict):
        return args  # nothing object-like to recover: let pydantic-ai report it as it is
    return json.dumps(repaired, ensure_ascii=False)


class RepairingModel(WrapperModel):
    """Wraps any pydantic-ai model; only output-tool calls with string arguments are touched."""

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        response = await self.wrapped.request(messages, model_settings, model_request_parameters)
        output_tools = {tool.name for tool in model_request_parameters.output_tools}
        parts = list(response.parts)
        changed = False
        for index, part in enumerate(parts):
            if (
                isinstance(part, ToolCallPart)
                and part.tool_name in output_tools
                and isinstance(part.args, str)
            ):
                fixed = repair_tool_args(part.args)
                if fixed != part.args:
                    parts[index] = replace(part, args=fixed)
                    changed = True
        return replace(response, parts=parts) if changed else response
