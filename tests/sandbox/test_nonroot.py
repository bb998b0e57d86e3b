"""The sandbox on a host where Bastion runs as a normal user, not root.

We are root here, so the test runs Bastion itself as uid 65534 (setpriv), with the
system's python3 and this checkout on its path. Without root there is no cgroup to make
(nothing was delegated to that user), so the pids and memory layers are missing: probe
must say so, the default `require` must refuse, and a workflow that explicitly requires
less still runs with every other layer in force.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from bastion.sandbox._bwrap import find_bwrap

SRC = Path(__file__).resolve().parents[2] / "src"
SITE = sysconfig.get_paths()["purelib"]
SYSTEM_PYTHON = "/usr/bin/python3"

_SCRIPT = """
import asyncio, json, os, sys
sys.path[:0] = [SRC, SITE]
from bastion.errors import SandboxUnavailable
from bastion.sandbox import create_sandbox, probe

out = {"euid": os.geteuid()}
rep = probe("bwrap")
out["missing"] = rep.missing
try:
    create_sandbox(warm_pool=False)
    out["default"] = "ran"
except SandboxUnavailable as e:
    out["default"] = str(e)

async def run():
    sb = create_sandbox(warm_pool=False, require=("network", "filesystem"))
    r = await sb.run("import os; print(os.getuid(), os.getgid())")
    await sb.aclose()
    return r

r = asyncio.run(run())
out["run"] = {"exit": r.exit_code, "stdout": r.stdout, "layers": r.layers}
print(json.dumps(out))
"""


def _runnable_as_nobody() -> str | None:
    """Why this host cannot run the test, or None."""
    if os.geteuid() != 0:
        return "needs root to become another user (on a non-root host the suite itself is this test)"
    if find_bwrap() is None or shutil.which("setpriv") is None:
        return "needs bubblewrap and setpriv"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"no {SYSTEM_PYTHON}"
    want = f"{sys.version_info[0]}.{sys.version_info[1]}"
    got = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True).stdout.strip()
    if got != want:
        return f"{SYSTEM_PYTHON} is {got}, the installed packages are for {want}"
    return None


def test_a_normal_user_gets_every_layer_but_cgroups_and_the_default_refuses() -> None:
    why = _runnable_as_nobody()
    if why:
        pytest.skip(why)
    script = _SCRIPT.replace("SRC", repr(str(SRC))).replace("SITE", repr(SITE))
    proc = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", SYSTEM_PYTHON, "-c",
         script], capture_output=True, text=True, timeout=120, cwd="/",
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8"})
    if proc.returncode != 0 and "Permission denied" in proc.stderr and "import" in proc.stderr:
        pytest.skip("this checkout or its packages are not readable by uid 65534")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["euid"] == 65534
    assert {"pids", "memory"} <= set(out["missing"])
    assert not {"network", "filesystem", "seccomp", "pid-namespace"} & set(out["missing"])
    assert "pids" in out["default"] and "refusing" in out["default"], out["default"]
    assert out["run"]["exit"] == 0
    assert out["run"]["stdout"].split() == ["65534", "65534"]
    layers = set(out["run"]["layers"])
    assert {"network", "filesystem", "seccomp", "unprivileged-uid"} <= layers
    assert not {"pids", "memory"} & layers, "a layer not in force was reported"
