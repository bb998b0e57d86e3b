"""Limits: wall clock (every descendant), pids, memory, output, disk — checked on the host."""

from __future__ import annotations

import time
import uuid

import psutil

from bastion.sandbox import Sandbox


def _marked(marker: str) -> list[int]:
    """Host processes whose command line carries `marker` (forks keep their argv)."""
    return [p.pid for p in psutil.process_iter(["cmdline"])
            if marker in (p.info["cmdline"] or [])]


async def test_timeout_kills_double_forked_daemon(sb: Sandbox) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    code = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n"
            "    if os.fork() == 0:\n        time.sleep(60)\n    os._exit(0)\ntime.sleep(60)")
    r = await sb.run(files={"d.py": code}, argv=["python3", "d.py", marker], timeout=1)
    assert r.timed_out and r.killed_reason == "timeout" and r.exit_code is None
    assert r.duration_ms < 3000
    time.sleep(0.2)
    assert _marked(marker) == []


async def test_daemon_does_not_outlive_normal_exit(sb: Sandbox) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    code = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\nprint('bye')"
    r = await sb.run(files={"d.py": code}, argv=["python3", "d.py", marker], timeout=5)
    assert r.exit_code == 0 and r.stdout == "bye\n"
    time.sleep(0.2)
    assert _marked(marker) == []


async def test_fork_bomb_is_capped(sb: Sandbox) -> None:
    r = await sb.run("import os\nn = 0\nfor _ in range(200):\n    try:\n        os.fork() or "
                     "__import__('time').sleep(5)\n        n += 1\n    except OSError:\n"
                     "        break\nprint(n)", timeout=2, pids=16)
    # Forks stop failing at pids.max (the launcher and python count too).
    assert r.exit_code == 0 and int(r.stdout) < 16, r


async def test_memory_limit(sb: Sandbox) -> None:
    r = await sb.run("b = []\nwhile True:\n    b.append(bytearray(8 << 20))", memory_mb=64,
                     timeout=10)
    assert r.killed_reason == "memory", r


async def test_cpu_spin_times_out(sb: Sandbox) -> None:
    r = await sb.run("while True: pass", timeout=0.5)
    assert r.timed_out and r.killed_reason == "timeout"


async def test_output_flood_is_capped_and_decoded(sb: Sandbox) -> None:
    r = await sb.run("import sys\nwhile True: sys.stdout.buffer.write(b'\\x00\\xff' * 65536)")
    assert r.killed_reason == "output"
    assert len(r.stdout) <= 1 << 20 and "\x00" not in r.stdout


async def test_disk_is_a_capped_tmpfs(sb: Sandbox) -> None:
    r = await sb.run("f = open('big', 'wb')\nwhile True: f.write(b'x' * (1 << 20))", timeout=10)
    assert r.killed_reason == "disk" and r.exit_code == 1, r.stderr


async def test_no_leftovers_between_runs(sb: Sandbox) -> None:
    await sb.run("open('/work/secret', 'w').write('1'); open('/tmp/secret', 'w').write('1')")
    r = await sb.run("import os; print(os.listdir('/work'), os.listdir('/tmp'))")
    assert r.stdout == "['main.py'] []\n"
