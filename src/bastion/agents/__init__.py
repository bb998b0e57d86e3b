"""The agents room: model calls through pydantic-ai, the offline scripted model, output repair.

The engine only needs `call_model` (one validated answer per node attempt) and
`load_scripted_responses` (canned answers for offline runs and tests); the rest is exported
for the CLI and for rooms that validate outputs themselves.
"""

from bastion.agents._call import (
    SCHEMA_INSTRUCTION,
    TEST_MODEL,
    ModelReply,
    call_model,
    resolve_model,
    system_prompt,
)
from bastion.agents._output import OutputSchema, parse_json_text, strip_fences
from bastion.agents._scripted import (
    SCRIPTED_MODEL,
    SCRIPTED_PREFIX,
    ScriptedResponses,
    load_scripted_responses,
)

__all__ = [
    "SCHEMA_INSTRUCTION",
    "SCRIPTED_MODEL",
    "SCRIPTED_PREFIX",
    "TEST_MODEL",
    "ModelReply",
    "OutputSchema",
    "ScriptedResponses",
    "call_model",
    "load_scripted_responses",
    "parse_json_text",
    "resolve_model",
    "strip_fences",
    "system_prompt",
]
