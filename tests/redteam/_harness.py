"""Helpers the red-team tests import: opening a sandbox, a guarded run, common host checks.

The fake secrets are put into the supervisor's environment when this module is imported
(conftest imports it at collection), i.e. before any sandbox or warm-pool zygote starts.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import pytest

SECRET = "canary-xyz-" + secrets.token_hex(8)
SECRET_KEY = "sk-redteam-" + secrets.token_hex(12)
os.environ["BASTION_TEST_SECRET"] = SECRET
os.environ["BASTION_TEST_API_KEY"] = SECRET_KEY
HOST_SECRETS = (SECRET, SECRET_KEY)

HERE = Path(__file__).resolve().parent
REPO_DIR = HERE.parents[1]

# A sandbox that does not honour its own timeout must fail the test, not hang the suite.
OUTER_GRACE_S = 20.0


def import_api() -> tuple[Any, Any]:
    try:
        from bastion.errors import SandboxUnavailable
        from bastion.sandbox import create_sandbox
    except ImportError as exc:  # the room has not landed: a red-team suite cannot pass
        pytest.fail(f"bastion.sandbox.create_sandbox is not importable: {exc}", pytrace=False)
    return create_sandbox, SandboxUnavailable


def open_sandbox(warm_pool: bool = False) -> Any:
    """create_sandbox, but a refusal on a host that has bubblewrap is a failure, not a skip."""
    create_sandbox, unavailable = import_api()
    try:
        return create_sandbox(warm_pool=warm_pool)
    except (ImportError, NotImplementedError, TypeError) as exc:
        if not warm_pool:
            raise
        pytest.skip(f"warm pool not implemented yet: {type(exc).__name__}: {exc}")
    except unavailable as exc:
        if shutil.which("bwrap") is not None:
            pytest.fail(f"sandbox refused on a host that has bubblewrap: {exc}", pytrace=False)
        pytest.skip(f"no sandbox on this host (fail-closed refusal): {exc}")


async def run_guarded(sb: Any, code: str, **kw: Any) -> Any:
    """sb.run(code=...) with an outer wall clock."""
    timeout = float(kw.get("timeout", 5.0))
    try:
        return await asyncio.wait_for(sb.run(code=code, **kw), timeout + OUTER_GRACE_S)
    except asyncio.TimeoutError:
        pytest.fail(f"sandbox.run did not return within timeout={timeout}s + {OUTER_GRACE_S}s")


async def warm_up(sb: Any, warm: bool) -> None:
    """Let a warm pool fill, so the next run really is served by a pre-started zygote."""
    if warm:
        await assert_still_works(sb)
        await asyncio.sleep(1.0)


async def close_guarded(sb: Any) -> None:
    """sb.aclose() must return promptly; a hang means something of the sandbox is stuck."""
    try:
        await asyncio.wait_for(sb.aclose(), 15)
    except asyncio.TimeoutError:
        pytest.fail("sandbox.aclose() did not return within 15 s", pytrace=False)


def out(res: Any) -> str:
    return f"{res.stdout}\n{res.stderr}"


def assert_no_secrets(res: Any) -> None:
    text = out(res)
    leaked = any(s in text for s in HOST_SECRETS)  # a bool: pytest must not quote secrets
    assert not leaked, "a host environment secret leaked into the sandbox's output"


def assert_supervisor_ok() -> None:
    """The supervisor (this process) is alive, not traced, not stopped."""
    status = Path("/proc/self/status").read_text()
    fields = dict(ln.split(":", 1) for ln in status.splitlines() if ":" in ln)
    assert fields["TracerPid"].strip() == "0", "supervisor is being ptraced"
    assert fields["State"].split()[0] in ("R", "S"), f"supervisor state {fields['State']}"


async def assert_still_works(sb: Any) -> None:
    """After a hostile run the same sandbox object still runs a trivial script."""
    res = await run_guarded(sb, "print('still-alive')", timeout=5.0)
    assert res.exit_code == 0 and "still-alive" in res.stdout, f"sandbox wedged: {res!r}"[:1500]


def host_checks(res: Any, canaries: Any, listeners: Any, procwatch: Any, *,
                settle: float = 3.0, children: bool = True) -> None:
    """The standard containment verdict, judged on the host."""
    assert_supervisor_ok()
    assert_no_secrets(res)
    canaries.assert_untouched(res.stdout, res.stderr)
    listeners.assert_silent()
    procwatch.assert_clean(settle=settle, children=children)
