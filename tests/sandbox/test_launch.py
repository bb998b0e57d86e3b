"""Both ways of starting a launcher (the vfork C extension and the exec chain it falls
back to) keep every guarantee of the preexec function they replaced.

Seen from the host, on the launcher process itself: the exact rlimits (soft and hard), the
unprivileged uid/gid with no supplementary groups, every cgroup of the run, death with the
supervisor, default signal dispositions, its own session, only stdio and the passed
descriptors; a failed step runs nothing; and no argument can become shell code.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bastion.errors import SandboxError
from bastion.sandbox import _launch
from bastion.sandbox._cgroup import CgroupManager, ExecCgroup
from bastion.sandbox._launch import SANDBOX_UID, exec_chain, launcher
from bastion.sandbox._supervise import rlimits_for, spawn, supervise
from bastion.sandbox._types import SandboxLimits


@pytest.fixture(params=["vfork", "exec-chain"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test through each launch path this host has."""
    if request.param == "vfork" and launcher() != "vfork":
        pytest.skip("the C launcher is not built here (see test_vfork_launcher_is_built)")
    if request.param == "exec-chain":
        if exec_chain([], None, [], False) is None:
            pytest.skip("no /bin/sh or setpriv: the preexec path is used")
        monkeypatch.setattr(_launch, "_vfork", None)
    assert launcher() == request.param
    return str(request.param)


def test_vfork_launcher_is_built() -> None:
    """With a C compiler at install time the fast launcher must be there: a build that
    failed silently would only show as slower cold starts."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler on this host: the exec chain is the launcher")
    assert launcher() == "vfork", "bastion.sandbox._spawn did not build (pip install -e .)"

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


async def test_launcher_runs_with_exact_limits_uid_and_cgroups(path: str) -> None:
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
        assert os.getsid(pid) == pid  # its own session: killpg reaches what it starts
        ignored = int(st["SigIgn"], 16)
        # SIGPIPE and SIGXFSZ, which Python ignores, above all; the exec chain restores
        # only those (subprocess's restore_signals), the C launcher every signal.
        must_be_default = ((1 << (signal.SIGPIPE - 1)) | (1 << (signal.SIGXFSZ - 1))
                           if path == "exec-chain" else ~0)
        assert ignored & must_be_default == 0, f"ignored signals leaked: {ignored:#x}"
        assert int(st["SigBlk"], 16) == 0
        assert cg.pids() == {pid}
        assert all(pid in {int(x) for x in Path(f).read_text().split()}
                   for f in cg.procs_files)
    finally:
        cg.destroy()
        if launched is not None:
            launched.close_pipes()
            await launched.proc.wait()


async def test_failed_join_runs_nothing_and_raises(tmp_path: Path, path: str) -> None:
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
from bastion.sandbox import _launch
from bastion.sandbox._supervise import spawn
if sys.argv[1] == "exec-chain":
    _launch._vfork = None
from bastion.sandbox._types import SandboxLimits
async def main():
    launched = await spawn(["/bin/sleep", "30"], limits=SandboxLimits(timeout=30), cg=None,
                           stdin_pipe=False, drop_uid=os.geteuid() == 0)
    await asyncio.sleep(0.5)  # the chain has reached the launcher by now
    print(launched.proc.pid, flush=True)
    os._exit(0)  # the supervisor dies without cleaning up
asyncio.run(main())
"""


async def test_launcher_dies_with_the_supervisor(path: str) -> None:
    out = subprocess.run([sys.executable, "-c", _ORPHAN, path], capture_output=True,
                         timeout=30, check=True).stdout
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


async def test_only_stdio_and_passed_fds_reach_the_launcher(path: str) -> None:
    tmp = os.open(os.devnull, os.O_RDONLY)
    leaked = os.dup2(tmp, 200, inheritable=True)  # as a careless library would leave it
    passed = os.dup2(tmp, 201, inheritable=False)  # close-on-exec, but asked for
    os.close(tmp)
    try:
        out = await supervise(["/bin/ls", "/proc/self/fd"], limits=SandboxLimits(timeout=10),
                              cg=None, stdin=None, pass_fds=(passed,), drop_uid=False)
    finally:
        os.close(leaked)
    fds = sorted(int(x) for x in out.stdout.split())
    # stdio, the directory ls opened to list them (the lowest free number), the passed one
    assert fds == [0, 1, 2, 3, passed], fds


async def test_failed_exec_is_an_error_naming_the_step(path: str) -> None:
    if path == "exec-chain":
        pytest.skip("the chain reports a missing launcher as exit code 127")
    with pytest.raises(SandboxError, match="cannot execute the launcher"):
        await supervise(["/nonexistent/launcher"], limits=SandboxLimits(timeout=10),
                        cg=None, stdin=None, drop_uid=False)


async def test_stdin_reaches_the_launcher_in_full(path: str) -> None:
    data = os.urandom(1 << 20)  # more than a pipe holds: written as the reader drains it
    out = await supervise(["/usr/bin/sha256sum"], limits=SandboxLimits(timeout=20), cg=None,
                          stdin=data, drop_uid=False)
    assert out.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()


async def test_a_whole_sandbox_runs_through_each_path(path: str) -> None:
    """End to end, cold and warm: the same result and layers whichever way it started."""
    from bastion.sandbox import create_sandbox
    from bastion.sandbox._bwrap import find_bwrap

    if find_bwrap() is None:
        pytest.skip("bubblewrap is not installed")
    if os.geteuid() != 0:
        pytest.skip("the default require (pids, memory) needs root's cgroups")
    for warm_pool in (False, True):
        box = create_sandbox(warm_pool=warm_pool, pool_size=1)
        try:
            await asyncio.sleep(0.3)
            r = await box.run("import os, sys; print(os.getuid(), sys.stdin.read())",
                              stdin="in")
            assert (r.exit_code, r.stdout.split()) == (0, ["65534", "in"]), r.stderr
            assert {"network", "filesystem", "pids", "memory", "seccomp"} <= set(r.layers)
            r = await box.run("import time; time.sleep(30)", timeout=0.5)
            assert r.timed_out and r.killed_reason == "timeout"
        finally:
            await box.aclose()
