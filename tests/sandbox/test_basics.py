"""The API contract: code, files, argv, stdin, input_json, results, fail-closed require."""

from __future__ import annotations

import json

import pytest

from bastion.errors import SandboxError, SandboxUnavailable
from bastion.sandbox import DEFAULT_REQUIRE, ExecResult, Sandbox, create_sandbox

from .conftest import needs_bwrap


async def test_code_runs_and_reports_layers(sb: Sandbox) -> None:
    r = await sb.run("print('hi')")
    assert isinstance(r, ExecResult)
    assert (r.exit_code, r.stdout, r.timed_out, r.killed_reason) == (0, "hi\n", False, None)
    assert set(DEFAULT_REQUIRE) <= set(r.layers)
    assert r.duration_ms > 0
    json.dumps(r.to_dict())


async def test_files_argv_stdin_and_json(sb: Sandbox) -> None:
    r = await sb.run("import sys, lib\nprint(lib.X, sys.stdin.read())",
                     files={"lib.py": "X = 41", "data/in.txt": "q"}, stdin="abc")
    assert r.stdout == "41 abc\n", r.stderr
    r = await sb.run("import json, sys\nprint(json.load(sys.stdin)['a'] + 1)",
                     input_json={"a": 1})
    assert r.stdout == "2\n"
    r = await sb.run(files={"t.py": "import sys; print(sys.argv[1:])"},
                     argv=["python3", "t.py", "x", "y"])
    assert r.stdout == "['x', 'y']\n"


async def test_exit_code_and_traceback(sb: Sandbox) -> None:
    r = await sb.run("import sys; sys.exit(3)")
    assert r.exit_code == 3 and r.killed_reason is None
    r = await sb.run("raise ValueError('boom')")
    assert r.exit_code == 1 and "ValueError: boom" in r.stderr


async def test_bad_requests_are_errors(sb: Sandbox) -> None:
    with pytest.raises(SandboxError):
        await sb.run("pass", files={"../escape.py": "x"})
    with pytest.raises(SandboxError):
        await sb.run("pass", files={"/etc/x": "x"})
    with pytest.raises(SandboxError):
        await sb.run()
    with pytest.raises(SandboxError):
        await sb.run("pass", timeout=0)


@needs_bwrap
def test_require_unknown_layer_is_an_error() -> None:
    with pytest.raises(SandboxError):
        create_sandbox(require=("teleportation",))


@needs_bwrap
def test_fallback_refused_when_filesystem_required() -> None:
    """The fallback backend cannot hide the host tree: with the default require it is refused."""
    with pytest.raises(SandboxUnavailable):
        create_sandbox(backend="fallback")


async def test_fallback_reports_what_it_lacks() -> None:
    from bastion.sandbox import probe

    report = probe("fallback")
    if report.details.get("error"):
        pytest.skip(report.details["error"])
    assert "filesystem" in report.missing and "seccomp" in report.missing
    box = create_sandbox(backend="fallback", require=("network", "pids"))
    try:
        r = await box.run("import os; print(os.getuid())", timeout=10)
        assert r.exit_code == 0 and "filesystem" not in r.layers and "pids" in r.layers
    finally:
        await box.aclose()


async def test_closed_sandbox_refuses(sb: Sandbox) -> None:
    await sb.aclose()
    with pytest.raises(SandboxError):
        await sb.run("pass")
