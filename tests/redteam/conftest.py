"""Shared machinery of the red-team suite: host-side witnesses and the safety preflight.

Every red-team test judges containment from the HOST, not from what the sandboxed code
says about itself: canary files watched with inotify (any open by anyone fails the test),
listeners on the host's loopback that must receive nothing, a scan of the host's /proc for
processes of the run that survived it, a fake secret in the supervisor's environment.

Payload processes are tagged: the prelude writes a per-test token into /proc/self/comm
(inherited by fork), so the host can find them by name even after they double-fork,
setsid and get re-parented away from the test process.

We run as root on a shared machine. Destructive payloads (bombs, `kill -9 -1`, ptrace)
must only run after the session `preflight` has shown, with harmless probes, that the
sandbox has its own pid namespace and a pids limit in force. Test code requests the
`destructive_ok` fixture, which fails the test loudly (never skips, never runs the
payload) when the preflight did not pass. Payloads also carry their own in-sandbox guard.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from ._harness import HERE, close_guarded, import_api, open_sandbox
from ._witness import CanarySet, HostListeners, ProcWatch, make_token, payload


# ---------------------------------------------------------------- preflight (session)


@dataclass
class Preflight:
    ok: bool
    problems: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


_PROBE_PIDNS = """
import os, json
pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
try:
    init_cmd = open('/proc/1/cmdline', 'rb').read().decode('latin-1')
except OSError as e:
    init_cmd = 'ERR ' + type(e).__name__
host_visible = []
for p in HOST_PIDS:
    try:
        os.kill(p, 0)
        host_visible.append(p)
    except ProcessLookupError:
        pass
    except PermissionError:
        host_visible.append(p)
print(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "pids": pids,
                  "init_cmd": init_cmd, "host_visible": host_visible}))
"""

# Harmless: sleeping children that exit on their own after a few seconds even if the
# limit is absent; asks for far more than the limit, stops at the first failure.
_PROBE_PIDS = """
import os, time, json
kids, err = [], None
for i in range(WANT):
    try:
        pid = os.fork()
    except OSError as e:
        err = type(e).__name__ + ':' + str(e.errno)
        break
    if pid == 0:
        time.sleep(2.5)
        os._exit(0)
    kids.append(pid)
print(json.dumps({"forked": len(kids), "err": err}), flush=True)
for k in kids:
    try:
        os.kill(k, 9)
    except OSError:
        pass
for k in kids:
    try:
        os.waitpid(k, 0)
    except OSError:
        pass
"""


async def _run_preflight() -> Preflight:
    pf = Preflight(ok=True)
    create_sandbox, unavailable = import_api()
    try:
        sb = create_sandbox(warm_pool=False)
    except unavailable as exc:
        return Preflight(ok=False, problems=[f"sandbox unavailable: {exc}"])
    host_init = Path("/proc/1/cmdline").read_bytes().decode("latin-1")
    try:
        # Probe 1: own pid namespace. The host's pids (ours, our parent, a sample of
        # others) must not be signalable; only a handful of processes are visible.
        sample = [os.getpid(), os.getppid()] + [p for p in psutil.pids() if p > 300][:20]
        token = make_token()
        res = await asyncio.wait_for(
            sb.run(code=payload(_PROBE_PIDNS, token, HOST_PIDS=sample), timeout=5.0), 25
        )
        pf.details["pidns_layers"] = list(res.layers)
        try:
            info = json.loads(res.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return Preflight(False, [f"pid-ns probe gave no answer: {res!r}"[:2000]])
        pf.details["pidns"] = info
        if info["pid"] > 20:
            pf.problems.append(f"sandboxed code sees itself as pid {info['pid']} (host pid?)")
        if len(info["pids"]) > 20:
            pf.problems.append(f"sandbox sees {len(info['pids'])} processes in /proc")
        if info["init_cmd"] == host_init:
            pf.problems.append("sandbox's /proc/1 is the host's init")
        # A coincidental low pid may exist inside; host pids we sampled are > 300.
        leaked = [p for p in info["host_visible"] if p > 300]
        if leaked:
            pf.problems.append(f"host pids signalable from inside: {leaked}")
        if "pid-namespace" not in res.layers:
            pf.problems.append(f"layers lack 'pid-namespace': {res.layers}")

        # Probe 2: pids limit. Ask for 3x the limit; must stop near the limit.
        limit = 16
        res = await asyncio.wait_for(
            sb.run(code=payload(_PROBE_PIDS, token, WANT=limit * 3), timeout=8.0, pids=limit),
            30,
        )
        pf.details["pids_layers"] = list(res.layers)
        try:
            info = json.loads(res.stdout.strip().splitlines()[0])
        except (ValueError, IndexError):
            return Preflight(False, [f"pids probe gave no answer: {res!r}"[:2000]])
        pf.details["pids"] = info
        if info["forked"] >= limit or info["err"] is None:
            pf.problems.append(f"pids limit {limit} not enforced: {info}")
        if "pids" not in res.layers:
            pf.problems.append(f"layers lack 'pids': {res.layers}")
    except Exception as exc:  # anything odd: destructive tests must not run
        pf.problems.append(f"preflight crashed: {type(exc).__name__}: {exc}")
    finally:
        try:
            await sb.aclose()
        except Exception as exc:
            pf.problems.append(f"aclose failed: {exc}")
    pf.ok = not pf.problems
    return pf


@pytest.fixture(scope="session")
def preflight() -> Preflight:
    """Run the harmless probes once, on a private event loop in a thread."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["pf"] = asyncio.run(_run_preflight())
        except BaseException as exc:  # noqa: BLE001 - recorded, turned into a failure
            box["pf"] = Preflight(False, [f"preflight error: {type(exc).__name__}: {exc}"])

    t = threading.Thread(target=target, name="redteam-preflight")
    t.start()
    t.join(120)
    return box.get("pf") or Preflight(False, ["preflight did not finish in 120s"])


@pytest.fixture
def destructive_ok(preflight: Preflight) -> Preflight:
    if not preflight.ok:
        pytest.fail(
            "REFUSING to run a destructive payload: preflight did not show an own pid "
            "namespace and a pids limit: " + "; ".join(preflight.problems),
            pytrace=False,
        )
    return preflight


# ---------------------------------------------------------------- per-test witnesses


@pytest.fixture
def token() -> str:
    return make_token()


@pytest.fixture
async def sandbox() -> AsyncIterator[Any]:
    sb = open_sandbox(warm_pool=False)
    try:
        yield sb
    finally:
        await close_guarded(sb)


@pytest.fixture
def canaries(tmp_path: Path, token: str) -> Iterator[CanarySet]:
    cs = CanarySet(token)
    try:
        cs.add(tmp_path / f"canary-{token}.txt")
        cs.add(HERE / f".canary-{token}.txt")  # inside the repo (ignored by .gitignore)
        root = Path("/root")
        if root.is_dir() and os.access(root, os.W_OK):
            cs.add(root / f".bastion-redteam-canary-{token}")
        cs.arm()
        yield cs
    finally:
        cs.cleanup()


@pytest.fixture
def listeners() -> Iterator[HostListeners]:
    hl = HostListeners()
    hl.start()
    try:
        yield hl
    finally:
        hl.stop()


@pytest.fixture
def procwatch(token: str) -> Iterator[ProcWatch]:
    pw = ProcWatch(token)
    pw.baseline()
    try:
        yield pw
    finally:
        pw.stop_sampling()
        pw.kill_leftovers()  # never leave a tagged process behind, pass or fail
