"""Sandbox start-up cost against a bare interpreter, measured in the same run.

Prints p50/p95 over N runs (default 60) of a trivial script for: a bare `python3 -c pass`
subprocess (the baseline), a cold bwrap sandbox (fresh namespaces + cgroup per run) and
the warm pool, then the ratios to the baseline. The issue's targets: cold <= 1.2x,
warm <= 0.3x. Not a test: timings depend on the machine.

    .venv/bin/python bench/sandbox.py [-n 60]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from bastion.sandbox import create_sandbox
from bastion.sandbox._runtime import discover

SCRIPT = "pass"


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


async def _time(fn: Callable[[], Awaitable[object]], n: int, pause: float = 0.0) -> list[float]:
    await fn()  # warm caches (page cache, probe) outside the measurement
    out = []
    for _ in range(n):
        await asyncio.sleep(pause)  # untimed: lets the warm pool refill between runs
        t0 = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def main(n: int) -> None:
    python = discover().python

    async def bare() -> None:
        p = await asyncio.create_subprocess_exec(python, "-c", SCRIPT,
                                                 stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.PIPE)
        await p.communicate()

    cold_sb = create_sandbox(warm_pool=False)
    warm_sb = create_sandbox(warm_pool=True, pool_size=4)

    async def cold() -> None:
        r = await cold_sb.run(SCRIPT)
        assert r.exit_code == 0, r

    async def warm() -> None:
        r = await warm_sb.run(SCRIPT)
        assert r.exit_code == 0, r

    results: dict[str, list[float]] = {}
    results["bare python3 subprocess"] = await _time(bare, n)
    results["cold sandbox (bwrap)"] = await _time(cold, n)
    # A pause between runs, as between real node executions, so the pool is refilled.
    results["warm pool"] = await _time(warm, n, pause=0.1)
    await cold_sb.aclose()
    await warm_sb.aclose()
    base50 = statistics.median(results["bare python3 subprocess"])
    base95 = _pct(results["bare python3 subprocess"], 0.95)
    print(f"{'':28} {'p50 ms':>8} {'p95 ms':>8} {'p50 ratio':>10} {'p95 ratio':>10}  (n={n})")
    for name, xs in results.items():
        p50, p95 = statistics.median(xs), _pct(xs, 0.95)
        print(f"{name:28} {p50:8.1f} {p95:8.1f} {p50 / base50:9.2f}x {p95 / base95:9.2f}x")
    print("targets: cold <= 1.2x, warm <= 0.3x (p50 ratio); published: Firecracker <= 125 ms, "
          "gVisor 81-280 ms, E2B 150-440 ms, Docker ~380 ms")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=60)
    asyncio.run(main(ap.parse_args().n))
