"""Parse, repair and validate structured model output against a node's `output` schema.

Models wrap JSON in markdown fences, leave trailing commas or stop mid-object. Rejecting
such output would waste a (paid) attempt on a formatting slip, so text is repaired first
and only then held to the schema. Validation is strict: repair never changes types, so a
wrong type or a missing field is reported, naming the field, instead of being papered over.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import json_repair
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError

from bastion.errors import UserError

# A tool's arguments must be a JSON object, so non-object schemas travel under this key;
# it matches the key pydantic-ai itself uses when it wraps a non-object output type.
WRAP_KEY = "response"

_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_+-]*[ \t]*\r?\n?(.*?)```", re.DOTALL)
_MAX_ERRORS = 5
_MAX_MESSAGE = 200


class OutputInvalid(Exception):
    """Output could not be parsed or did not match the schema; the message names the field.

    Private to the room: `call_model` turns the last one into a `ModelOutputError`.
    """


def strip_fences(text: str) -> str:
    """Return the body of the first markdown code fence, or the text itself if unfenced."""
    match = _FENCE.search(text)
    if match:
        return match.group(1).strip()
    # An unterminated fence (the model stopped early) still starts with ```json.
    stripped = text.strip()
    if stripped.startswith("```"):
        first_newline = stripped.find("\n")
        return stripped[first_newline + 1 :].strip() if first_newline != -1 else ""
    return stripped


def parse_json_text(text: str) -> Any:
    """Parse model text as JSON, stripping fences and repairing small syntax slips.

    Raises `OutputInvalid` when nothing JSON-like can be recovered.
    """
    body = strip_fences(text)
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        pass
    repaired = json_repair.loads(body, skip_json_loads=True)
    # json-repair answers "" when it finds no JSON at all; a real empty string is '""'.
    if repaired == "" and body.strip() not in ('""', "''"):
        raise OutputInvalid(
            "output is not JSON (even after removing code fences and repairing syntax)"
        )
    return repaired


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def describe_error(error: ValidationError) -> str:
    """One line per problem: which field, and what is wrong with it."""
    where = _path(error.absolute_path)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if (
        error.validator == "required"
        and isinstance(error.instance, dict)
        and isinstance(error.validator_value, list)
    ):
        missing = [name for name in error.validator_value if name not in error.instance]
        names = ", ".join(f"'{_path([*error.absolute_path, name])}'" for name in missing)
        return f"missing required field {names}"
    if (
        error.validator == "additionalProperties"
        and error.validator_value is False
        and isinstance(error.instance, dict)
    ):
        allowed = set(schema.get("properties", {}))
        patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
        extra = sorted(
            str(k)
            for k in error.instance
            if k not in allowed and not any(p.search(str(k)) for p in patterns)
        )
        names = ", ".join(f"'{_path([*error.absolute_path, k])}'" for k in extra)
        return f"unexpected field {names} (the schema does not allow extra fields)"
    subject = f"field '{where}'" if where else "the output"
    return f"{subject}: {_shorten(error.message)}"


@dataclass
class OutputSchema:
    """A node's output schema, checked once, plus how it travels as a tool's arguments."""

    schema: dict[str, Any]
    wrapped: bool = field(init=False)
    tool_schema: dict[str, Any] = field(init=False)
    _validator: Draft202012Validator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        try:
            Draft202012Validator.check_schema(self.schema)
        except SchemaError as exc:
            where = _path(exc.absolute_path) or "top level"
            raise UserError(
                f"output schema is not a valid JSON schema at {where}: {_shorten(exc.message)}"
            ) from None
        self._validator = Draft202012Validator(self.schema)
        self.wrapped = self.schema.get("type") != "object"
        if self.wrapped:
            self.tool_schema = {
                "type": "object",
                "properties": {WRAP_KEY: self.schema},
                "required": [WRAP_KEY],
            }
        else:
            self.tool_schema = self.schema

    def from_tool_args(self, args: Any) -> Any:
        """Undo the wrapping applied to non-object schemas on the tool path."""
        if self.wrapped and isinstance(args, dict) and set(args) == {WRAP_KEY}:
            return args[WRAP_KEY]
        return args

    def from_text(self, text: str) -> Any:
        """Parse free model text into a value (validation happens in `validate`)."""
        try:
            return parse_json_text(text)
        except OutputInvalid:
            # A string-typed output may legitimately come back as bare, unquoted text.
            if self.schema.get("type") == "string":
                return strip_fences(text)
            raise

    def validate(self, value: Any) -> Any:
        """Return `value` if it matches the schema, else raise `OutputInvalid` naming fields."""
        errors = sorted(
            self._validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path]
        )
        if not errors:
            return value
        lines = [describe_error(e) for e in errors[:_MAX_ERRORS]]
        if len(errors) > _MAX_ERRORS:
            lines.append(f"... and {len(errors) - _MAX_ERRORS} more problems")
        raise OutputInvalid("; ".join(lines))
