"""Test, on this host, which isolation layers actually work. Nothing is assumed.

A layer counts only when a probe execution observed it from the inside (its namespace
inode differs from ours, the fork beyond pids.max failed, the memory hog was OOM-killed,
the sleeper was killed at the deadline...). The result is cached per process: the engine
calls `create_sandbox` often, and the host does not change under us.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from bastion.errors import SandboxError
from bastion.sandbox import _types as L
from bastion.sandbox._base import ENV_ALLOWLIST

_FACTS = r"""
import json, os, resource, socket, time
f = {}
st = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines() if ':' in l)
f['nnp'] = st.get('NoNewPrivs', '').strip()
f['capeff'] = st.get('CapEff', '').strip()
f['seccomp'] = st.get('Seccomp', '').strip()
f['uid'] = os.getuid()
f['ns'] = {n: os.readlink('/proc/self/ns/' + n) for n in ('user', 'pid', 'net', 'ipc', 'uts', 'mnt', 'cgroup') if os.path.exists('/proc/self/ns/' + n)}
f['ifaces'] = [l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:]]
f['env'] = sorted(os.environ)
f['rlimits'] = [resource.getrlimit(r)[0] for r in (resource.RLIMIT_CPU, resource.RLIMIT_FSIZE, resource.RLIMIT_NOFILE, resource.RLIMIT_CORE)]
def writable(p):
    try:
        open(p, 'w').close(); os.unlink(p); return True
    except OSError:
        return False
f['root_writable'] = writable('/probe-root')
f['work_writable'] = writable('/work/probe')
f['hidden'] = HIDDEN
f['seen'] = [p for p in HIDDEN if os.path.exists(p)]
kids, failed = [], 0
for _ in range(24):
    try:
        pid = os.fork()
    except OSError:
        failed += 1
        continue
    if pid == 0:
        time.sleep(2); os._exit(0)
    kids.append(pid)
for k in kids:
    os.kill(k, 9); os.waitpid(k, 0)
f['fork_failed'] = failed
print(json.dumps(f))
"""
_HOG = "b = []\nwhile True:\n    b.append(bytearray(8 << 20))\n"
_SLEEPER = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\ntime.sleep(60)\n"


@dataclass
class ProbeReport:
    """Which layers a backend provided here, and why the others are missing."""

    backend: str | None
    layers: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _hidden_paths() -> list[str]:
    """Host paths the sandbox must not see: homes, our project tree, runtime sockets."""
    paths = ["/root", "/home", "/etc/passwd", "/etc/shadow", "/run", "/var/run", "/sys/fs/cgroup"]
    cwd = os.getcwd()
    if cwd not in ("/", "/usr"):
        paths.append(cwd)
    return paths


def _host_ns() -> dict[str, str]:
    out = {}
    for n in ("user", "pid", "net", "ipc", "uts", "mnt", "cgroup"):
        try:
            out[n] = os.readlink(f"/proc/self/ns/{n}")
        except OSError:
            pass
    return out


async def _probe_backend(sb: Any, unprivileged: bool) -> ProbeReport:
    rep = ProbeReport(sb.backend)
    code = _FACTS.replace("HIDDEN", json.dumps(_hidden_paths()))
    res = await sb.run(code, timeout=15, memory_mb=128, pids=8)
    try:
        facts: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        rep.details["error"] = f"probe script failed: exit {res.exit_code}: {res.stderr[-500:]}"
        rep.missing = list(L.ALL_LAYERS)
        return rep
    host = _host_ns()
    ok: dict[str, bool] = {}
    for name, layer in (("user", L.USER_NS), ("pid", L.PID_NS), ("ipc", L.IPC_NS),
                        ("uts", L.UTS_NS), ("cgroup", L.CGROUP_NS)):
        ok[layer] = name in facts["ns"] and facts["ns"][name] != host.get(name)
    ok[L.NETWORK] = facts["ns"].get("net") != host.get("net") and facts["ifaces"] == ["lo"]
    ok[L.FILESYSTEM] = (facts["ns"].get("mnt") != host.get("mnt") and not facts["root_writable"]
                        and facts["work_writable"] and not facts["seen"])
    if facts["seen"]:
        rep.details[L.FILESYSTEM] = "host paths visible: " + ", ".join(facts["seen"])
    ok[L.NO_NEW_PRIVS] = facts["nnp"] == "1"
    ok[L.CAPS_DROPPED] = int(facts["capeff"] or "1", 16) == 0
    ok[L.SECCOMP] = facts["seccomp"] == "2"
    ok[L.UNPRIVILEGED] = unprivileged
    ok[L.ENV_ALLOWLIST] = set(facts["env"]) <= set(ENV_ALLOWLIST)
    ok[L.RLIMITS] = facts["rlimits"][3] == 0 and facts["rlimits"][2] <= 4096
    ok[L.PIDS] = L.PIDS in res.layers and facts["fork_failed"] > 0
    if not ok[L.PIDS]:
        rep.details[L.PIDS] = "no pids cgroup, or fork beyond pids.max did not fail"
    hog = await sb.run(_HOG, timeout=15, memory_mb=48, pids=8)
    ok[L.MEMORY] = L.MEMORY in hog.layers and hog.killed_reason == "memory"
    if not ok[L.MEMORY]:
        rep.details[L.MEMORY] = f"memory hog ended with {hog.killed_reason or hog.exit_code}"
    sleeper = await sb.run(_SLEEPER, timeout=0.5, memory_mb=64, pids=8)
    ok[L.WALL_CLOCK] = sleeper.timed_out and sleeper.duration_ms < 5000
    rep.layers = [layer for layer in L.ALL_LAYERS if ok.get(layer)]
    rep.missing = [layer for layer in L.ALL_LAYERS if not ok.get(layer)]
    from bastion.sandbox._launch import launcher

    # Not a layer (every way applies the same ones), but the cold-start cost: see _launch.
    rep.details["launcher"] = launcher()
    return rep


async def _probe_async(backend: str, python: str | None) -> ProbeReport:
    from bastion.sandbox._bwrap import BwrapSandbox, find_bwrap
    from bastion.sandbox._fallback import FallbackSandbox

    if backend == "bwrap" and find_bwrap() is None:
        return ProbeReport("bwrap", [], list(L.ALL_LAYERS), {"error": "bwrap not installed"})
    try:
        sb = (BwrapSandbox(python=python) if backend == "bwrap"
              else FallbackSandbox(python=python))
    except SandboxError as e:
        return ProbeReport(backend, [], list(L.ALL_LAYERS), {"error": str(e)})
    try:
        return await _probe_backend(sb, L.UNPRIVILEGED in sb.layers)
    except (SandboxError, OSError) as e:
        return ProbeReport(backend, [], list(L.ALL_LAYERS), {"error": f"{type(e).__name__}: {e}"})
    finally:
        await sb.aclose()


_cache: dict[tuple[str, str | None], ProbeReport] = {}
_lock = threading.Lock()


def probe(backend: str = "bwrap", python: str | None = None, *, refresh: bool = False) -> ProbeReport:
    """Probe one backend ("bwrap" or "fallback"). Safe to call inside a running event loop."""
    if backend not in ("bwrap", "fallback"):
        raise SandboxError(f"unknown sandbox backend {backend!r}; use 'bwrap' or 'fallback'")
    key = (backend, python)
    with _lock:
        if key in _cache and not refresh:
            return _cache[key]
        box: list[ProbeReport] = []
        # A private loop in a thread: probe() is sync and may be called from async code.
        t = threading.Thread(target=lambda: box.append(asyncio.run(_probe_async(backend, python))))
        t.start()
        t.join()
        if not box:
            raise SandboxError("sandbox probe crashed")
        _cache[key] = box[0]
        return box[0]
