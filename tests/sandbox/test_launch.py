"""The exec chain that replaced the preexec function keeps every one of its guarantees.

Seen from the host, on the launcher process itself: the exact rlimits (soft and hard), the
unprivileged uid/gid with no supplementary groups, every cgroup of the run, death with the
supervisor; a failed join runs nothing; and no argument can become shell code.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bastion.errors import SandboxError
from bastion.sandbox._cgroup import CgroupManager, ExecCgroup
from bastion.sandbox._launch import SANDBOX_UID, exec_chain
from bastion.sandbox._supervise import rlimits_for, spawn, supervise
from bastion.sandbox._types import SandboxLimits

pytestmark = pytest.mark.skipif(exec_chain([], None, [], False) is None,
                                reason="no /bin/sh or setpriv: the preexec path is used")

_LIMIT_NAMES = {"Max cpu time": 0, "Max address space": 1, "Max file size": 2,
                "Max open files": 3, "Max core file size": 4}


def _limits_of(pid: int) -> dict[int, tuple[int, int]]:
    out: dict[int, tuple[int, int]] = {}
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        for name, i in _LIMIT_NAMES.items():
            if line.startswith(name):
                soft, hard = line[len(name):].split()[:2]
                out[i] = (int(soft), int(hard))
    return out


def _status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: v.strip() for k, _, v in (ln.partition(":") for ln in text.splitlines())}


async def test_launcher_runs_with_exact_limits_uid_and_cgroups() -> None:
    mgr = CgroupManager()
    if not {"pids", "memory"} <= set(mgr.hierarchies) or os.geteuid() != 0:
        pytest.skip("needs root and pids/memory cgroups")
    limits = SandboxLimits(timeout=7, memory_mb=96, disk_mb=3, open_files=37)
    cg = mgr.create(limits.memory_mb, limits.pids)
    launched = None
    try:
        launched = await spawn(["/bin/sleep", "30"], limits=limits, cg=cg, stdin_pipe=False,
                               drop_uid=True)
        pid = launched.proc.pid
        for _ in range(500):  # until the chain has exec'd the launcher
            if Path(f"/proc/{pid}/exe").resolve().name == "sleep":
                break
            await asyncio.sleep(0.01)
        want = {i: (v, v) for i, (_, v) in enumerate(rlimits_for(limits))}
        assert _limits_of(pid) == want
        st = _status(pid)
        assert st["Uid"].split() == [str(SANDBOX_UID)] * 4
        assert st["Gid"].split() == [str(SANDBOX_UID)] * 4
        assert st["Groups"] == ""
        assert cg.pids() == {pid}
        assert all(pid in {int(x) for x in Path(f).read_text().split()}
                   for f in cg.procs_files)
    finally:
        cg.destroy()
        if launched is not None:
            launched.close_pipes()
            await launched.proc.wait()


async def test_failed_join_runs_nothing_and_raises(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    cg = ExecCgroup(dirs={"pids": tmp_path / "missing"}, versions={"pids": 1})
    with pytest.raises(SandboxError, match="cannot join"):
        await supervise([sys.executable, "-c", f"open({str(marker)!r}, 'w')"],
                        limits=SandboxLimits(timeout=10), cg=cg, stdin=None, drop_uid=False)
    assert not marker.exists()


def test_arguments_are_never_shell_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = [f"$(touch {marker})", f"`touch {marker}`", f"; touch {marker}", "--", "$0"]
    argv = exec_chain(["/bin/echo", *evil], None, [], False)
    assert argv is not None
    out = subprocess.run(argv, capture_output=True, timeout=10, check=True).stdout
    assert out.decode().rstrip("\n") == " ".join(evil)
    assert not marker.exists()


_ORPHAN = """
import asyncio, os, sys
from bastion.sandbox._supervise import spawn
from bastion.sandbox._types import SandboxLimits
async def main():
    launched = await spawn(["/bin/sleep", "30"], limits=SandboxLimits(timeout=30), cg=None,
                           stdin_pipe=False, drop_uid=os.geteuid() == 0)
    await asyncio.sleep(0.5)  # the chain has reached the launcher by now
    print(launched.proc.pid, flush=True)
    os._exit(0)  # the supervisor dies without cleaning up
asyncio.run(main())
"""


async def test_launcher_dies_with_the_supervisor() -> None:
    out = subprocess.run([sys.executable, "-c", _ORPHAN], capture_output=True, timeout=30,
                         check=True).stdout
    pid = int(out)
    for _ in range(200):
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return
        except FileNotFoundError:
            return
        await asyncio.sleep(0.01)
    os.kill(pid, 9)
    pytest.fail("the launcher outlived its supervisor")
