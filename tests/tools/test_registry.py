"""The tool registry: signatures are the schema, and each workflow imports its own tools."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.errors import ToolError, UserError
from bastion.tools import ToolRegistry
from tests.conftest import write


def test_schema_comes_from_type_hints_and_hides_the_idempotency_key(tmp_path: Path) -> None:
    write(tmp_path, "t_schema.py", """
        def refund(order_id: str, amount: float, idempotency_key: str, note: str = "") -> dict:
            return {"order_id": order_id, "amount": amount, "key": idempotency_key}
    """)
    tool = ToolRegistry({"refund": "t_schema:refund"}, set(), tmp_path).get("refund")
    schema = tool.input_schema()
    assert set(schema["properties"]) == {"order_id", "amount", "note"}
    assert schema["required"] == ["order_id", "amount"]
    assert tool.takes_idempotency_key


async def test_arguments_are_validated_before_the_call(tmp_path: Path) -> None:
    write(tmp_path, "t_valid.py", """
        CALLS = []
        def refund(order_id: str, amount: float) -> float:
            CALLS.append(order_id)
            return amount
    """)
    tool = ToolRegistry({"refund": "t_valid:refund"}, set(), tmp_path).get("refund")
    assert await tool.invoke({"order_id": "o1", "amount": "12.5"}, "k") == 12.5
    with pytest.raises(ToolError, match="amount"):
        await tool.invoke({"order_id": "o1", "amount": "lots"}, "k")
    with pytest.raises(ToolError, match="supplied by Bastion"):
        await tool.invoke({"order_id": "o1", "amount": 1, "idempotency_key": "mine"}, "k")
    import t_valid  # type: ignore[import-not-found]
    assert t_valid.CALLS == ["o1"], "invalid calls never reached the tool"


def test_each_workflow_folder_imports_its_own_module(tmp_path: Path) -> None:
    for name, value in [("one", 1), ("two", 2)]:
        (tmp_path / name).mkdir()
        write(tmp_path / name, "shared_tools.py", f"def which() -> int:\n    return {value}\n")
    first = ToolRegistry({"w": "shared_tools:which"}, set(), tmp_path / "one").get("w")
    second = ToolRegistry({"w": "shared_tools:which"}, set(), tmp_path / "two").get("w")
    assert (first.func(), second.func()) == (1, 2)


@pytest.mark.parametrize("target,needle", [
    ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
    ("json:no_such_attr", "has no attribute 'no_such_attr'"),
    ("json:__doc__", "is not callable"),
])
def test_unresolvable_tools_are_user_errors(tmp_path: Path, target: str, needle: str) -> None:
    with pytest.raises(UserError, match=needle):
        ToolRegistry({"t": target}, set(), tmp_path).get("t")
