"""The warm pool: same contract and layers as a cold sandbox, one execution per sandbox."""

from __future__ import annotations

import asyncio
import os

import pytest

from bastion.sandbox import Sandbox


async def test_warm_runs_and_isolates(warm: Sandbox) -> None:
    await asyncio.sleep(0.5)  # let the pool start
    r = await warm.run("open('/tmp/leak', 'w').write('1')\nimport sys\nprint(sys.stdin.read())",
                       stdin="in")
    assert r.exit_code == 0 and r.stdout == "in\n", r.stderr
    assert {"network", "pids", "memory", "filesystem", "seccomp"} <= set(r.layers)
    await asyncio.sleep(0.3)
    r = await warm.run("import os; print(os.listdir('/tmp'), os.listdir('.'))",
                       files={"a.txt": "x"})
    assert r.stdout == "[] ['main.py', 'a.txt']\n" or r.stdout == "[] ['a.txt', 'main.py']\n"


async def test_warm_errors_exit_codes_and_limits(warm: Sandbox) -> None:
    await asyncio.sleep(0.5)
    r = await warm.run("import sys; print('x'); sys.exit(4)")
    assert (r.exit_code, r.stdout) == (4, "x\n")
    r = await warm.run("raise KeyError('k')")
    assert r.exit_code == 1 and "KeyError" in r.stderr and "_zygote" not in r.stderr
    r = await warm.run("while True: pass", timeout=0.5)
    assert r.killed_reason == "timeout"
    r = await warm.run("b = []\nwhile True:\n    b.append(bytearray(8 << 20))", memory_mb=64)
    assert r.killed_reason == "memory"
    await asyncio.sleep(0.3)
    r = await warm.run("open('/tmp/f', 'wb').write(b'x' * (70 << 20))")  # 64 MiB disk
    assert (r.exit_code, r.killed_reason) == (1, "disk"), r
    await asyncio.sleep(0.3)
    r = await warm.run("import os\nfor _ in range(64):\n    os.fork()", pids=8)
    assert r.killed_reason == "pids", r


async def test_warm_argv_and_cold_fallback(warm: Sandbox) -> None:
    results = await asyncio.gather(*(warm.run("print(1)") for _ in range(5)))  # > pool size
    assert all(r.stdout == "1\n" for r in results)
    r = await warm.run(argv=["python3", "-c", "print(2)"])
    assert r.stdout == "2\n"


async def test_warm_early_return_keeps_all_output(warm: Sandbox) -> None:
    """The pool returns on the zygote's status without waiting for EOF: whatever the
    program (and the children it waited for) wrote must still be there, in full."""
    await asyncio.sleep(0.5)
    r = await warm.run("import sys\nsys.stdout.write('a' * 300_000)\nprint('e', file=sys.stderr)")
    assert (r.exit_code, len(r.stdout), r.stderr) == (0, 300_000, "e\n")
    await asyncio.sleep(0.3)
    r = await warm.run("import subprocess, sys\n"
                       "subprocess.run([sys.executable, '-c', 'print(\"child\")'])\n"
                       "print('parent')")
    assert (r.exit_code, r.stdout) == (0, "child\nparent\n"), r.stderr


async def test_warm_daemon_holding_stdout_does_not_delay_or_survive(warm: Sandbox) -> None:
    await asyncio.sleep(0.5)
    code = ("import os, time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    time.sleep(30)\n"
            "print('done')\n")
    r = await warm.run(code, timeout=5)
    assert (r.exit_code, r.stdout, r.timed_out) == (0, "done\n", False)
    assert r.duration_ms < 2500, r.duration_ms


async def test_no_descriptor_leaks_cold_or_warm() -> None:
    """Every pipe, pidfd and memfd of a run (and of unclaimed pool entries) is closed."""
    from bastion.sandbox import create_sandbox
    from bastion.sandbox._bwrap import find_bwrap

    if find_bwrap() is None:
        pytest.skip("bubblewrap is not installed")

    def fds() -> set[str]:
        return set(os.listdir("/proc/self/fd"))

    warmup = create_sandbox(warm_pool=False)  # process-wide caches (probe, runtime)
    await warmup.run("pass")
    await warmup.aclose()
    for warm_pool in (False, True):
        before = fds()
        box = create_sandbox(warm_pool=warm_pool, pool_size=2)
        for stdin in (None, "data", "x" * 200_000):
            r = await box.run("import sys; print(len(sys.stdin.read()))", stdin=stdin)
            assert r.exit_code == 0, r.stderr
        await asyncio.sleep(0.5)  # refilled entries are parked, never claimed
        await box.aclose()
        await asyncio.sleep(0.1)
        assert fds() - before == set(), f"leaked descriptors (warm_pool={warm_pool})"
