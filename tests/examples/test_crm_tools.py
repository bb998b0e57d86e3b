"""The CRM example's tools and sandbox harness against a real staging CRM on loopback.

These are the effects the workflow performs, so they are tested as the engine will use
them: real HTTP, real files, and the harness run by a bare interpreter with an empty
environment, as the sandbox will run it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from examples.crm_integration import crm_tools
from examples.crm_integration.crm_tools import (
    CrmApiError,
    fetch_user_schema,
    post_users,
    publish_integration,
)
from examples.crm_integration.staging_crm import serve

CRM_DIR = Path(__file__).resolve().parents[2] / "examples" / "crm_integration"
TEST_USERS: list[dict[str, Any]] = json.loads((CRM_DIR / "test_users.json").read_text())

V1_MAPPER = '''
def sync_to_crm(user: dict) -> dict:
    return {"email": user["email"], "full_name": f"{user['first']} {user['last']}"}
'''
V2_MAPPER = '''
def sync_to_crm(user: dict) -> dict:
    return {
        "email": user["email"],
        "full_name": f"{user['first']} {user['last']}",
        "customer_tier": user["plan"],
    }
'''


def valid(email: str) -> dict[str, str]:
    return {"email": email, "full_name": "Some One", "customer_tier": "free"}


def stats(url: str) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(url + "/admin/stats").json()
    return result


# fetch_user_schema


def test_fetch_user_schema_v2(crm_url: str) -> None:
    assert fetch_user_schema(crm_url + "/") == {
        "version": "v2",
        "required": ["email", "full_name", "customer_tier"],
        "properties": {
            "email": {"type": "string", "format": "email"},
            "full_name": {"type": "string"},
            "customer_tier": {"type": "string", "enum": ["free", "pro", "enterprise"]},
        },
    }


def test_fetch_user_schema_follows_drift(start_crm: Callable[..., str]) -> None:
    url = start_crm(schema_version="v1")
    schema = fetch_user_schema(url)
    assert schema["version"] == "v1"
    assert schema["required"] == ["email", "full_name"]
    assert set(schema["properties"]) == {"email", "full_name"}
    httpx.post(url + "/admin/schema", json={"version": "v2"})
    assert "customer_tier" in fetch_user_schema(url)["required"]


def test_fetch_user_schema_non_2xx_names_url_and_status() -> None:
    async def broken(request: Request) -> PlainTextResponse:
        return PlainTextResponse("upstream exploded", status_code=502)

    with serve(Starlette(routes=[Route("/openapi.json", broken)])) as url:
        with pytest.raises(CrmApiError) as caught:
            fetch_user_schema(url)
    assert caught.value.status_code == 502
    assert caught.value.url == url + "/openapi.json"
    assert f"{url}/openapi.json answered HTTP 502" in str(caught.value)


def test_fetch_user_schema_404_for_a_server_without_the_document() -> None:
    with serve(Starlette(routes=[])) as url:
        with pytest.raises(CrmApiError, match="HTTP 404"):
            fetch_user_schema(url)


# post_users


def test_post_users_creates_all(crm_url: str) -> None:
    payloads = [valid("a@example.com"), valid("b@example.com")]
    assert post_users(crm_url, payloads, "run-1") == {
        "status": 201,
        "created": ["usr_0001", "usr_0002"],
    }
    assert stats(crm_url)["idempotency_keys"] == {"run-1-0": 1, "run-1-1": 1}


def test_post_users_stops_at_the_first_error(crm_url: str) -> None:
    bad = {"email": "b@example.com", "full_name": "B"}
    result = post_users(crm_url, [valid("a@example.com"), bad, valid("c@example.com")], "run-1")
    assert result["status"] == 422
    assert result["index"] == 1
    assert result["body"]["field"] == "customer_tier"
    assert result["body"]["message"] == "customer_tier is required"
    # The third payload was never sent.
    assert stats(crm_url)["posts"] == 2
    assert stats(crm_url)["users_created"] == 1


def test_post_users_retried_with_the_same_key_does_not_duplicate(crm_url: str) -> None:
    payloads = [valid("a@example.com"), valid("b@example.com")]
    first = post_users(crm_url, payloads, "node-adaptive-attempt-1")
    again = post_users(crm_url, payloads, "node-adaptive-attempt-1")
    assert again == first
    assert stats(crm_url)["users_created"] == 2
    assert stats(crm_url)["idempotent_replays"] == 2


def test_post_users_returns_5xx_instead_of_raising(start_crm: Callable[..., str]) -> None:
    url = start_crm(fail_with_503=1)
    result = post_users(url, [valid("a@example.com")], "k")
    assert result == {
        "status": 503,
        "body": {"error": "unavailable", "message": "staging CRM is temporarily unavailable"},
        "index": 0,
    }
    # The engine retries 5xx with the same key; now it goes through.
    assert post_users(url, [valid("a@example.com")], "k") == {"status": 201, "created": ["usr_0001"]}


def test_post_users_returns_400_for_a_non_object_payload(crm_url: str) -> None:
    result = post_users(crm_url, ["not a dict"], "k")  # type: ignore[list-item]
    assert result["status"] == 400
    assert result["body"]["error"] == "invalid_body"


def test_post_users_caps_a_huge_error_body() -> None:
    async def huge(request: Request) -> PlainTextResponse:
        return PlainTextResponse("x" * 100_000, status_code=400)

    with serve(Starlette(routes=[Route("/users", huge, methods=["POST"])])) as url:
        result = post_users(url, [valid("a@example.com")], "k")
    assert result["status"] == 400
    assert isinstance(result["body"], str)
    assert len(result["body"].encode()) <= crm_tools.BODY_CAP_BYTES + len("...[truncated]")
    assert result["body"].endswith("...[truncated]")


def test_post_users_raises_on_connection_errors() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        post_users(f"http://127.0.0.1:{port}", [valid("a@example.com")], "k")


# publish_integration


def test_publish_writes_files_and_marker(tmp_path: Path) -> None:
    out = tmp_path / "published" / "crm"
    result = publish_integration(str(out), "CODE", "TESTS", "DOCS", "run-9-publish")
    assert result == {"out_dir": str(out), "files": ["mapper.py", "test_mapper.py", "README.md"]}
    assert (out / "mapper.py").read_text() == "CODE"
    assert (out / "test_mapper.py").read_text() == "TESTS"
    assert (out / "README.md").read_text() == "DOCS"
    assert (out / ".published").read_text().strip() == "run-9-publish"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".published", "README.md", "mapper.py", "test_mapper.py"]
    )
    assert (out / "mapper.py").stat().st_mode & 0o777 == 0o644


def test_publish_again_with_the_same_key_is_identical(tmp_path: Path) -> None:
    first = publish_integration(str(tmp_path), "CODE", "TESTS", "DOCS", "k")
    before = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert publish_integration(str(tmp_path), "CODE", "TESTS", "DOCS", "k") == first
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == before


def test_publish_that_fails_mid_write_leaves_old_files_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_integration(str(tmp_path), "OLD CODE", "OLD TESTS", "OLD DOCS", "k1")
    real_fsync = os.fsync
    calls = {"n": 0}

    def failing_fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the second file: test_mapper.py
            raise OSError("disk full")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        publish_integration(str(tmp_path), "NEW CODE", "NEW TESTS", "NEW DOCS", "k2")
    # mapper.py was replaced whole, test_mapper.py kept whole, no temp files, old marker.
    assert (tmp_path / "mapper.py").read_text() == "NEW CODE"
    assert (tmp_path / "test_mapper.py").read_text() == "OLD TESTS"
    assert (tmp_path / ".published").read_text().strip() == "k1"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# harness.py, run as the sandbox will: bare interpreter, isolated mode, empty environment


def run_harness(tmp_path: Path, mapper: str, users: Any = TEST_USERS) -> subprocess.CompletedProcess[str]:
    """Copy the harness beside a mapper and run it with the base interpreter, no venv."""
    (tmp_path / "harness.py").write_text((CRM_DIR / "harness.py").read_text())
    (tmp_path / "mapper.py").write_text(textwrap.dedent(mapper))
    python = os.path.realpath(sys.executable)  # the interpreter behind the venv: stdlib only
    return subprocess.run(
        [python, "-I", str(tmp_path / "harness.py")],
        input=json.dumps(users),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={},
        timeout=30,
    )


def test_harness_v1_mapper_is_rejected_by_v2_naming_customer_tier(
    tmp_path: Path, crm_url: str
) -> None:
    run = run_harness(tmp_path, V1_MAPPER)
    assert run.returncode == 0, run.stderr
    payloads = json.loads(run.stdout)
    assert payloads[0] == {"email": "ada@example.com", "full_name": "Ada Lovelace"}
    result = post_users(crm_url, payloads, "attempt-1")
    assert result["status"] == 422
    assert result["index"] == 0
    assert result["body"]["field"] == "customer_tier"


def test_harness_v2_mapper_succeeds(tmp_path: Path, crm_url: str) -> None:
    run = run_harness(tmp_path, V2_MAPPER)
    assert run.returncode == 0, run.stderr
    payloads = json.loads(run.stdout)
    assert [p["customer_tier"] for p in payloads] == ["pro", "enterprise", "free"]
    result = post_users(crm_url, payloads, "attempt-2")
    assert result == {"status": 201, "created": ["usr_0001", "usr_0002", "usr_0003"]}


def test_harness_mapper_exception_exits_1_with_traceback(tmp_path: Path) -> None:
    run = run_harness(tmp_path, 'def sync_to_crm(user):\n    return {"tier": user["tier"]}\n')
    assert run.returncode == 1
    assert run.stdout == ""
    assert "Traceback" in run.stderr and "KeyError: 'tier'" in run.stderr


def test_harness_keeps_mapper_prints_off_stdout(tmp_path: Path) -> None:
    mapper = 'print("hello from the mapper")\n' + textwrap.dedent(V2_MAPPER)
    run = run_harness(tmp_path, mapper)
    assert run.returncode == 0, run.stderr
    assert len(json.loads(run.stdout)) == 3
    assert "hello from the mapper" in run.stderr


def test_harness_rejects_a_non_dict_result(tmp_path: Path) -> None:
    run = run_harness(tmp_path, "def sync_to_crm(user):\n    return [user]\n")
    assert run.returncode == 1
    assert "must return a dict, got list" in run.stderr


def test_harness_bad_input_exits_2(tmp_path: Path) -> None:
    run = run_harness(tmp_path, V2_MAPPER, users={"not": "a list"})
    assert run.returncode == 2
    assert "bad input" in run.stderr


def test_harness_is_standard_library_only() -> None:
    source = (CRM_DIR / "harness.py").read_text()
    imports = {
        line.split()[1].split(".")[0]
        for line in source.splitlines()
        if line.startswith(("import ", "from ")) and not line.startswith("from __future__")
    }
    assert imports <= set(sys.stdlib_module_names) | {"mapper"}
