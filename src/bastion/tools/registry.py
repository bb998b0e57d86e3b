"""The tool registry: importable Python callables whose type hints are their input schema.

A tool is declared in workflow.yaml as `python: "module:callable"`, importable from the
workflow's folder. Arguments are validated against the signature before the call, so a
model-proposed or templated argument of the wrong type never reaches the tool. A parameter
named `idempotency_key: str` is filled by Bastion, never by the caller.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from bastion.errors import ToolError, UserError

IDEMPOTENCY_PARAM = "idempotency_key"


@dataclass
class Tool:
    name: str
    target: str
    func: Callable[..., Any]
    args_model: type[BaseModel]
    takes_idempotency_key: bool
    is_async: bool
    inline: bool = False

    def input_schema(self) -> dict[str, Any]:
        """JSON schema of the arguments a caller supplies (the idempotency key excluded)."""
        schema = self.args_model.model_json_schema()
        schema.get("properties", {}).pop(IDEMPOTENCY_PARAM, None)
        if IDEMPOTENCY_PARAM in schema.get("required", []):
            schema["required"].remove(IDEMPOTENCY_PARAM)
        return schema

    async def invoke(self, args: dict[str, Any], idempotency_key: str) -> Any:
        """Validate `args` against the signature, then call (sync tools in a worker thread)."""
        if IDEMPOTENCY_PARAM in args:
            raise ToolError(f"tool '{self.name}': {IDEMPOTENCY_PARAM} is supplied by Bastion, remove it from args")
        call_args = {**args, IDEMPOTENCY_PARAM: idempotency_key} if self.takes_idempotency_key else args
        try:
            model = self.args_model.model_validate(call_args)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'args'}: {e['msg']}" for e in exc.errors())
            raise ToolError(f"tool '{self.name}' got invalid arguments: {problems}") from None
        values = {name: getattr(model, name) for name in type(model).model_fields}
        if self.is_async:
            return await self.func(**values)
        if self.inline:
            return self.func(**values)
        return await asyncio.to_thread(self.func, **values)


_MODELS: dict[Callable[..., Any], type[BaseModel]] = {}


def _args_model(name: str, func: Callable[..., Any]) -> type[BaseModel]:
    """A Pydantic model of the callable's parameters; unknown arguments are errors.

    Built once per callable (building one costs milliseconds; runs reuse it).
    """
    cached = _MODELS.get(func)
    if cached is None:
        cached = _MODELS[func] = _build_args_model(name, func)
    return cached


def _build_args_model(name: str, func: Callable[..., Any]) -> type[BaseModel]:
    try:
        hints = get_type_hints(func)
    except Exception:  # unresolvable forward references: fall back to raw annotations
        hints = getattr(func, "__annotations__", {})
    fields: dict[str, Any] = {}
    for pname, param in inspect.signature(func).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise UserError(f"tool '{name}': *args/**kwargs are not supported; name every parameter")
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[pname] = (hints.get(pname, Any), default)
    return create_model(f"{name}_args", __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True,
                                                              coerce_numbers_to_str=True),
                        **fields)


class ToolRegistry:
    """Resolves the workflow's declared tools once, with errors that say what to fix."""

    def __init__(self, declared: dict[str, str], inline: set[str], base_dir: Path) -> None:
        self._declared = declared
        self._inline = inline
        self._base_dir = base_dir
        self._tools: dict[str, Tool] = {}

    def get(self, name: str) -> Tool:
        tool = self._tools.get(name)
        if tool is None:
            if name not in self._declared:
                raise UserError(f"tool '{name}' is not declared under tools")
            tool = self._tools[name] = _resolve(name, self._declared[name], self._base_dir)
            tool.inline = name in self._inline
        return tool


def _resolve(name: str, target: str, base_dir: Path) -> Tool:
    module_name, _, attr = target.partition(":")
    folder = str(base_dir)
    if folder in sys.path:
        sys.path.remove(folder)
    sys.path.insert(0, folder)  # the workflow's own folder wins over anything else on the path
    _forget_if_shadowed(module_name, base_dir)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"tool '{name}': cannot import module '{module_name}' ({exc}); "
                        f"it must be importable from {folder} or the Python path") from None
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise UserError(f"tool '{name}': module '{module_name}' has no attribute '{attr}'")
    if not callable(obj):
        raise UserError(f"tool '{name}': '{target}' is not callable")
    params = inspect.signature(obj).parameters
    return Tool(name, target, obj, _args_model(name, obj), IDEMPOTENCY_PARAM in params,
                inspect.iscoroutinefunction(obj))


def _forget_if_shadowed(module_name: str, base_dir: Path) -> None:
    """Two workflows in one process may each ship a `tools.py`: import this folder's one."""
    top = module_name.split(".")[0]
    cached = sys.modules.get(top)
    local = base_dir / top
    if cached is None or not (local.with_suffix(".py").exists() or (local / "__init__.py").exists()):
        return
    cached_file = getattr(cached, "__file__", None) or ""
    if not Path(cached_file).resolve().is_relative_to(base_dir.resolve()):
        for name in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
            del sys.modules[name]
