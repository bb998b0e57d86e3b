"""The launcher joins the run's cgroups before it execs, and what it forks stays there.

The child joins through v1's `tasks` file (one thread, no global lock) rather than
`cgroup.procs`; this checks, on the host, that the whole process and its descendants
really are in every hierarchy of the run, and that the limits written there bind them.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from bastion.sandbox._cgroup import CgroupManager
from bastion.sandbox._runtime import discover
from bastion.sandbox._supervise import spawn
from bastion.sandbox._types import SandboxLimits

_CODE = ("import os, sys, time\n"
         "kids = 0\n"
         "for _ in range(6):\n"
         "    try:\n"
         "        if os.fork() == 0:\n"
         "            time.sleep(30)\n"
         "            os._exit(0)\n"
         "        kids += 1\n"
         "    except OSError:\n"
         "        pass\n"
         "print(kids, flush=True)\n"
         "time.sleep(30)\n")


def _cgroup_of(pid: int) -> dict[str, str]:
    out: dict[str, str] = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(","):
                out[c] = path
    return out


async def test_launcher_and_descendants_are_in_every_hierarchy() -> None:
    mgr = CgroupManager()
    if not {"pids", "memory"} <= set(mgr.hierarchies):
        pytest.skip("no pids/memory cgroup here")
    cg = mgr.create(memory_mb=128, pids=4)  # launcher + 3 children at most
    launched = None
    try:
        launched = await spawn([discover().python, "-I", "-c", _CODE],
                               limits=SandboxLimits(timeout=30), cg=cg, stdin_pipe=False)
        line = b""
        while not line.endswith(b"\n"):
            chunk = await asyncio.to_thread(os.read, launched.out_fd, 64)
            assert chunk, "the launcher died"
            line += chunk
        assert int(line) == 3, "the pids limit did not bind the launcher's children"
        members = cg.pids()
        assert launched.proc.pid in members and len(members) == 4
        for pid in members:
            where = _cgroup_of(pid)
            for ctrl, d in cg.dirs.items():
                assert where[ctrl].endswith("/" + d.name), (pid, ctrl, where[ctrl])
    finally:
        cg.destroy()
        if launched is not None:
            launched.close_pipes()
            await launched.proc.wait()
