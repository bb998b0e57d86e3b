"""Per-execution cgroups for the pids and memory limits, on cgroup v1 or v2.

Why cgroups: Bastion often runs as root, and RLIMIT_NPROC does not apply to root, so a
fork bomb is only stopped by a pids controller. The cgroup is also how the wall-clock limit
kills *every* descendant, double-forked and setsid'd ones included: we kill what the
cgroup holds, not a process tree we would have to walk.

Each controller is looked up independently (hybrid hosts bind pids/memory to v1 while v2
is mounted without controllers). New cgroups are created under the cgroup this process is
in, so limits placed on Bastion itself still apply to its sandboxes.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

_PREFIX = "bastion-sbx-"


@dataclass(frozen=True)
class Hierarchy:
    """Where one controller lives: its mount point and our cgroup inside it."""

    version: int  # 1 or 2
    mount: Path
    own: str  # our cgroup path relative to the mount, e.g. "/process_api/abc"

    def parent_dir(self) -> Path:
        return self.mount / self.own.lstrip("/")


def _mounts() -> list[tuple[str, str, set[str]]]:
    out: list[tuple[str, str, set[str]]] = []
    try:
        text = Path("/proc/self/mounts").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] in ("cgroup", "cgroup2"):
            out.append((parts[2], parts[1].replace("\\040", " "), set(parts[3].split(","))))
    return out


def _own_paths() -> dict[str, str]:
    """Map controller name (or "" for v2) to our cgroup path, from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    try:
        text = Path("/proc/self/cgroup").read_text()
    except OSError:
        return paths
    for line in text.splitlines():
        _, ctrls, path = line.split(":", 2)
        for c in ctrls.split(",") if ctrls else [""]:
            paths[c] = path
    return paths


def find_hierarchy(controller: str) -> Hierarchy | None:
    """Find the hierarchy holding `controller`: a v1 mount first, else v2 if enabled."""
    own = _own_paths()
    mounts = _mounts()
    for kind, mnt, opts in mounts:
        if kind == "cgroup" and controller in opts:
            return Hierarchy(1, Path(mnt), own.get(controller, "/"))
    for kind, mnt, _ in mounts:
        if kind == "cgroup2":
            try:
                ctrls = (Path(mnt) / "cgroup.controllers").read_text().split()
            except OSError:
                continue
            if controller in ctrls:
                return Hierarchy(2, Path(mnt), own.get("", "/"))
    return None


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read_counter(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == key:
                return int(parts[1])
    except (OSError, ValueError):
        pass
    return 0


@dataclass
class ExecCgroup:
    """The cgroup(s) of one execution; the child joins them itself (see join_files)."""

    dirs: dict[str, Path] = field(default_factory=dict)  # controller -> directory
    versions: dict[str, int] = field(default_factory=dict)
    applied: tuple[int, int] | None = None  # (memory_mb, pids) last written

    @property
    def procs_files(self) -> list[str]:
        seen: list[str] = []
        for d in self.dirs.values():
            p = str(d / "cgroup.procs")
            if p not in seen:
                seen.append(p)
        return seen

    @property
    def join_files(self) -> list[tuple[str, bool]]:
        """(file, write_pid) pairs through which a freshly forked, single-threaded child
        joins every hierarchy of the run.

        On v1 the child writes "0" (itself) to `tasks`: moving one thread skips the global
        threadgroup lock that a `cgroup.procs` write takes, whose RCU grace period was
        the costliest step of a cold start (~10 ms here). With one thread, that thread is
        the whole process, and everything it forks inherits the cgroup. v2 has no such
        file for domain cgroups: there the pid goes to `cgroup.procs`. (The exec chain of
        _launch writes "0" to either file: for both the kernel reads it as "the writer".)
        """
        out: list[tuple[str, bool]] = []
        for ctrl, d in self.dirs.items():
            entry = ((str(d / "tasks"), False) if self.versions[ctrl] == 1
                     else (str(d / "cgroup.procs"), True))
            if entry not in out:
                out.append(entry)
        return out

    @property
    def controllers(self) -> set[str]:
        return set(self.dirs)

    def pids(self, first_only: bool = False) -> set[int]:
        """Processes in the run's cgroups. Every process joins all of them at once (one
        launcher writes each procs file), so `first_only` reads one file: the fast path."""
        found: set[int] = set()
        files = self.procs_files
        for f in files[:1] if first_only else files:
            try:
                found.update(int(x) for x in Path(f).read_text().split())
            except (OSError, ValueError):
                pass
        return found

    def set_limits(self, memory_mb: int, pids: int) -> None:
        """(Re)apply limits; the warm pool calls this again when a sandbox is claimed
        (a no-op when the claim asks for the limits the sandbox was parked with)."""
        if self.applied == (memory_mb, pids):
            return
        self.applied = None  # unknown until every write below has succeeded
        if "pids" in self.dirs:
            _write(self.dirs["pids"] / "pids.max", str(pids))
        if "memory" in self.dirs:
            d, nbytes = self.dirs["memory"], memory_mb * 1024 * 1024
            if self.versions["memory"] == 1:
                # v1 keeps limit <= memsw.limit at every step: lowering writes the limit
                # first, raising (a spare made for smaller limits) writes memsw first.
                files = [d / "memory.limit_in_bytes"]
                if (d / "memory.memsw.limit_in_bytes").exists():
                    files.append(d / "memory.memsw.limit_in_bytes")
                try:
                    _write(files[0], str(nbytes))
                except OSError:
                    files.reverse()
                    _write(files[0], str(nbytes))
                for f in files[1:]:
                    _write(f, str(nbytes))
            else:
                _write(d / "memory.max", str(nbytes))
                if (d / "memory.swap.max").exists():
                    _write(d / "memory.swap.max", "0")
        self.applied = (memory_mb, pids)

    def oom_killed(self) -> bool:
        d = self.dirs.get("memory")
        if d is None:
            return False
        if self.versions["memory"] == 1:
            return _read_counter(d / "memory.oom_control", "oom_kill") > 0
        return _read_counter(d / "memory.events", "oom_kill") > 0

    def pids_exhausted(self) -> bool:
        d = self.dirs.get("pids")
        if d is None:
            return False
        return _read_counter(d / "pids.events", "max") > 0

    def kill_all(self, deadline: float = 2.0) -> bool:
        """SIGKILL everything in the cgroup until it is empty; True when it is."""
        end = time.monotonic() + deadline
        v2 = next((d for c, d in self.dirs.items() if self.versions[c] == 2), None)
        if v2 is not None and (v2 / "cgroup.kill").exists():
            try:
                _write(v2 / "cgroup.kill", "1")
            except OSError:
                pass
        freezer = self.dirs.get("freezer")
        while True:
            found = self.pids()
            if not found:
                return True
            if freezer is not None:  # a frozen fork bomb cannot replace what we kill
                try:
                    _write(freezer / "freezer.state", "FROZEN")
                except OSError:
                    pass
            for pid in found:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if freezer is not None:
                try:
                    _write(freezer / "freezer.state", "THAWED")
                except OSError:
                    pass
            if time.monotonic() > end:
                return False
            time.sleep(0.002)

    def destroy(self) -> None:
        """Kill what is left and remove the directories (best effort, never raises)."""
        self.kill_all()
        for d in self.dirs.values():
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.005)
        self.dirs.clear()


class CgroupManager:
    """Creates per-execution cgroups for the controllers this host offers us."""

    def __init__(self, controllers: tuple[str, ...] = ("pids", "memory", "freezer")) -> None:
        self.hierarchies: dict[str, Hierarchy] = {}
        for c in controllers:
            h = find_hierarchy(c)
            if h is not None:
                self.hierarchies[c] = h

    def create(self, memory_mb: int, pids: int) -> ExecCgroup:
        """Make the cgroups; controllers that fail are simply absent from the result."""
        name = _PREFIX + uuid.uuid4().hex[:12]
        cg = ExecCgroup()
        made: dict[Path, Path] = {}  # v2 shares one directory across controllers
        for ctrl, h in self.hierarchies.items():
            d = made.get(h.mount)
            try:
                if d is None:
                    d = self._mkdir(h, name, ctrl)
                    made[h.mount] = d
                elif h.version == 2:
                    self._enable_v2(h, ctrl)
            except OSError:
                continue
            cg.dirs[ctrl] = d
            cg.versions[ctrl] = h.version
        try:
            cg.set_limits(memory_mb, pids)
        except OSError:
            cg.destroy()
            raise
        return cg

    def _mkdir(self, h: Hierarchy, name: str, ctrl: str) -> Path:
        if h.version == 2:
            self._enable_v2(h, ctrl)
        d = h.parent_dir() / name
        d.mkdir(mode=0o755)
        return d

    @staticmethod
    def _enable_v2(h: Hierarchy, ctrl: str) -> None:
        sub = h.parent_dir() / "cgroup.subtree_control"
        if ctrl not in sub.read_text().split():
            _write(sub, f"+{ctrl}")


def sweep_stale(min_age: float = 300.0) -> None:
    """Remove empty leftovers of crashed runs; young ones may be about to be joined."""
    for ctrl in ("pids", "memory", "freezer"):
        h = find_hierarchy(ctrl)
        if h is None:
            continue
        try:
            entries = list(h.parent_dir().glob(_PREFIX + "*"))
        except OSError:
            continue
        for d in entries:
            try:
                if time.time() - d.stat().st_mtime < min_age:
                    continue
                if not (d / "cgroup.procs").read_text().strip():
                    d.rmdir()
            except OSError:
                pass
