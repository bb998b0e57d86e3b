"""Red team: resource exhaustion and process escape — bombs, spins, daemons, kill -9 -1.

Every payload here is also bounded on its own (a deadline, a maximum size), so that even a
broken sandbox cannot take the shared host down; the bombs additionally require the
session preflight (`destructive_ok`) and carry an in-sandbox guard (`_brt_guard`).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psutil
import pytest

from ._harness import (
    close_guarded,
    REPO_DIR,
    assert_still_works,
    assert_supervisor_ok,
    host_checks,
    open_sandbox,
    out,
    run_guarded,
    warm_up,
)
from ._witness import payload

pytestmark = pytest.mark.redteam

FORK_BOMB = """
import os, time
_brt_guard()
DEADLINE = time.time() + LIFETIME
print('BOMB', flush=True)
depth, n = 0, 0
while time.time() < DEADLINE:
    if depth >= DEPTH or n >= BREADTH:
        time.sleep(0.05)
        continue
    try:
        pid = os.fork()
    except OSError:
        time.sleep(0.005)
        continue
    if pid == 0:
        depth, n = depth + 1, 0
    else:
        n += 1
os._exit(0)
"""


async def test_fork_bomb_is_capped_by_pids_limit(sandbox, destructive_ok, token, canaries,
                                                 listeners, procwatch):
    limit = 32
    procwatch.start_sampling()
    t0 = time.monotonic()
    # Bounded: at most 8 children per process, depth 4 (~4.7k) and self-exit after 10 s.
    res = await run_guarded(sandbox, payload(FORK_BOMB, token, LIFETIME=10, DEPTH=4, BREADTH=8),
                            timeout=3.0, pids=limit)
    wall = time.monotonic() - t0
    procwatch.stop_sampling()
    assert "GUARD_ABORT" not in res.stdout, "in-sandbox guard refused: no own pid namespace"
    assert procwatch.max_tagged >= 2, "witness saw no bomb processes; the test proved nothing"
    assert procwatch.max_tagged <= limit, (
        f"host saw {procwatch.max_tagged} bomb processes at once, pids limit was {limit}")
    assert res.timed_out or res.killed_reason in ("pids", "timeout"), repr(res)[:800]
    assert res.killed_reason in ("pids", "timeout")
    assert wall < 3.0 + 5.0, f"run took {wall:.1f}s for a 3 s timeout"
    host_checks(res, canaries, listeners, procwatch)
    await assert_still_works(sandbox)


MEMORY_BOMB = """
import time
_brt_guard()
hold = []
for i in range(STEPS):
    hold.append(b'x' * (CHUNK_MB << 20))  # bytes * n writes every page
    print('ALLOC', (i + 1) * CHUNK_MB, flush=True)
time.sleep(5)
"""


def _max_alloc(text: str) -> int:
    vals = [int(ln.split()[1]) for ln in text.splitlines() if ln.startswith("ALLOC ")]
    return max(vals, default=0)


async def test_memory_bomb_is_capped(sandbox, destructive_ok, token, canaries, listeners,
                                     procwatch):
    mem = 128
    procwatch.start_sampling()
    # Bounded at 3 GiB even if no limit exists (the host has ~24 GiB).
    res = await run_guarded(sandbox, payload(MEMORY_BOMB, token, STEPS=48, CHUNK_MB=32),
                            timeout=5.0, memory_mb=mem)
    procwatch.stop_sampling()
    assert "GUARD_ABORT" not in res.stdout
    got = _max_alloc(res.stdout)
    assert got <= mem, f"payload allocated {got} MiB under a {mem} MiB limit"
    assert procwatch.max_rss_kb <= (mem + 32) * 1024, (
        f"host saw {procwatch.max_rss_kb // 1024} MiB RSS under a {mem} MiB limit")
    assert res.exit_code != 0 or res.killed_reason is not None, repr(res)[:800]
    assert res.killed_reason == "memory" or "MemoryError" in res.stderr, repr(res)[:800]
    host_checks(res, canaries, listeners, procwatch)
    await assert_still_works(sandbox)


SPLIT_MEMORY_BOMB = """
import os, sys, time
_brt_guard()
kids = []
for i in range(KIDS):
    pid = os.fork()
    if pid == 0:
        try:
            blob = b'y' * (CHUNK_MB << 20)
            print('HELD', i, flush=True)
            time.sleep(3)
            print('KEPT', i, flush=True)  # held it for the whole time, alongside the others
        finally:
            os._exit(0)
    kids.append(pid)
for k in kids:
    os.waitpid(k, 0)
print('PARENT_DONE', flush=True)
"""


async def test_memory_bomb_split_across_children_is_capped(sandbox, destructive_ok, token,
                                                           canaries, listeners, procwatch):
    mem, chunk, kids = 128, 48, 8  # 384 MiB in total, each child alone fits
    procwatch.start_sampling()
    res = await run_guarded(sandbox, payload(SPLIT_MEMORY_BOMB, token, KIDS=kids, CHUNK_MB=chunk),
                            timeout=6.0, memory_mb=mem)
    procwatch.stop_sampling()
    assert "GUARD_ABORT" not in res.stdout
    # Not the HELD lines: the OOM killer may pick a child that already printed one, and the
    # next child then gets its memory. Those that kept their chunk to the end held it at once.
    kept = sum(1 for ln in res.stdout.splitlines() if ln.startswith("KEPT "))
    assert kept * chunk <= mem + chunk, (
        f"{kept} children each held {chunk} MiB at once under a {mem} MiB limit")
    assert procwatch.max_rss_kb <= (mem + 32) * 1024, (
        f"host saw {procwatch.max_rss_kb // 1024} MiB RSS summed over the run's processes")
    host_checks(res, canaries, listeners, procwatch)
    await assert_still_works(sandbox)


CPU_SPIN = """
import os, threading
for _ in range(2):
    if os.fork() == 0:
        while True:
            pass
def spin():
    while True:
        pass
for _ in range(3):
    threading.Thread(target=spin, daemon=True).start()
print('SPINNING', flush=True)
while True:
    pass
"""


async def test_cpu_spin_is_killed_at_timeout(sandbox, token, canaries, listeners, procwatch):
    t0 = time.monotonic()
    res = await run_guarded(sandbox, payload(CPU_SPIN, token), timeout=2.0)
    wall = time.monotonic() - t0
    assert res.timed_out and res.killed_reason == "timeout", repr(res)[:800]
    assert wall < 2.0 + 4.0, f"a 2 s timeout took {wall:.1f}s"
    assert res.duration_ms < 6000
    host_checks(res, canaries, listeners, procwatch)


SLEEP_FOREVER = """
import signal, time, os
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1):
    signal.signal(s, signal.SIG_IGN)
if os.fork() == 0:
    time.sleep(10**6)
print('SLEEPING', flush=True)
time.sleep(10**6)
"""


async def test_sleep_forever_ignoring_signals_is_killed(sandbox, token, canaries, listeners,
                                                        procwatch):
    t0 = time.monotonic()
    res = await run_guarded(sandbox, payload(SLEEP_FOREVER, token), timeout=1.5)
    wall = time.monotonic() - t0
    assert res.timed_out and res.killed_reason == "timeout", repr(res)[:800]
    assert wall < 1.5 + 4.0, f"a 1.5 s timeout took {wall:.1f}s"
    host_checks(res, canaries, listeners, procwatch)


DAEMON = """
import os, signal, socket, time
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() != 0:
        os._exit(0)
    for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
        signal.signal(s, signal.SIG_IGN)
    # Let go of the run's pipes so an EOF-based supervisor thinks we are gone.
    fd = os.open('/dev/null', os.O_RDWR)
    for i in (0, 1, 2):
        os.dup2(fd, i)
    time.sleep(DELAY)
    for p in PATHS:
        try:
            with open(p, 'w') as f:
                f.write('daemon-was-here ' + TOKEN)
        except OSError:
            pass
    for fam, addr in ((socket.AF_INET, ('127.0.0.1', P4)), (socket.AF_INET6, ('::1', P6))):
        try:
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.settimeout(0.5)
            s.connect(addr)
            s.sendall(b'daemon ' + TOKEN.encode())
        except OSError:
            pass
    time.sleep(60)
    os._exit(0)
os.waitpid(pid, 0)
print('PARENT_DONE', flush=True)
if HANG:
    time.sleep(10**6)
"""


@pytest.mark.parametrize("hang", [False, True], ids=["parent-exits", "parent-times-out"])
async def test_double_forked_setsid_daemon_does_not_outlive_run(
        sandbox, token, canaries, listeners, procwatch, tmp_path, hang):
    delay = 2.0
    targets = [Path(f"/tmp/bastion-redteam-{token}-daemon"), tmp_path / f"daemon-{token}",
               REPO_DIR / "tests" / "redteam" / f".canary-daemon-{token}"]
    code = payload(DAEMON, token, DELAY=delay, PATHS=[str(p) for p in targets],
                   P4=listeners.port["tcp4"], P6=listeners.port.get("tcp6", 9), HANG=hang)
    t0 = time.monotonic()
    res = await run_guarded(sandbox, code, timeout=2.0 if hang else 5.0)
    assert "PARENT_DONE" in res.stdout, repr(res)[:800]
    # Give a surviving daemon time to act before we look.
    await asyncio.sleep(max(0.0, delay + 1.5 - (time.monotonic() - t0)))
    try:
        for p in targets:
            assert not p.exists(), f"a daemon of the run wrote {p} after the run ended"
        host_checks(res, canaries, listeners, procwatch, settle=1.0)
    finally:
        for p in targets:
            p.unlink(missing_ok=True)


KILL_EVERYTHING = """
import os, signal, json
_brt_guard()
report = {}
for name, pid in (('ppid', os.getppid()), ('init', 1), ('supervisor', SUP)):
    try:
        os.kill(pid, signal.SIGKILL)
        report[name] = 'sent'
    except OSError as e:
        report[name] = type(e).__name__
print(json.dumps(report), flush=True)
try:
    os.kill(-1, signal.SIGKILL)
    print('KILL_ALL_SENT', flush=True)
except OSError as e:
    print('KILL_ALL', type(e).__name__, flush=True)
"""


def _long_lived_host_processes() -> dict[int, float]:
    now = time.time()
    out: dict[int, float] = {}
    for p in psutil.process_iter(["create_time"]):
        ct = p.info["create_time"]
        if ct and now - ct > 30:
            out[p.pid] = ct
    return out


def _dead(before: dict[int, float]) -> list[int]:
    dead = []
    for pid, ct in before.items():
        try:
            if psutil.Process(pid).create_time() != ct:
                dead.append(pid)
        except psutil.NoSuchProcess:
            dead.append(pid)
    return dead


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm-pool"])
async def test_kill_parent_and_kill_minus_one_stay_inside(destructive_ok, token, canaries,
                                                          listeners, procwatch, warm):
    sb = open_sandbox(warm_pool=warm)
    try:
        await warm_up(sb, warm)
        ancestors = [p.pid for p in psutil.Process().parents()]
        before = _long_lived_host_processes()
        import os

        res = await run_guarded(sb, payload(KILL_EVERYTHING, token, SUP=os.getpid()),
                                timeout=4.0)
        assert "GUARD_ABORT" not in res.stdout, "in-sandbox guard refused: no own pid namespace"
        await asyncio.sleep(0.3)
        dead = _dead(before)
        assert not set(dead) & set(ancestors), f"supervisor's ancestors killed: {dead}"
        assert len(dead) <= 2, f"long-lived host processes died during the run: {dead[:20]}"
        assert_supervisor_ok()
        host_checks(res, canaries, listeners, procwatch, children=not warm)
        await assert_still_works(sb)  # a warm pool must recover from its zygote being shot
        await assert_still_works(sb)
        assert "still-alive" not in out(res)
    finally:
        await close_guarded(sb)
