"""The bubblewrap backend: every namespace, an empty read-only root, a tmpfs workdir.

bwrap is started as the unprivileged uid (when we are root) so the user namespace it
creates maps the sandbox to an unprivileged host uid, not to root; it is already inside
the execution's cgroups and rlimits (see _supervise). Files reach the tmpfs through
`--file FD`, the seccomp program through `--seccomp FD`; no other descriptor is passed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from functools import lru_cache

from bastion.errors import SandboxUnavailable
from bastion.sandbox import _seccomp
from bastion.sandbox._base import (
    ENV_ALLOWLIST,
    WORKDIR,
    Request,
    RunsRequests,
    check_required,
)
from bastion.sandbox._cgroup import CgroupManager, ExecCgroup
from bastion.sandbox._devices import dev_args
from bastion.sandbox._runtime import Runtime, discover
from bastion.sandbox._supervise import decode, supervise
from bastion.sandbox._types import (
    CAPS_DROPPED,
    CGROUP_NS,
    FILESYSTEM,
    IPC_NS,
    MEMORY,
    NETWORK,
    NO_NEW_PRIVS,
    PID_NS,
    PIDS,
    RLIMITS,
    SECCOMP,
    UNPRIVILEGED,
    USER_NS,
    UTS_NS,
    WALL_CLOCK,
    ExecResult,
    SandboxLimits,
)
from bastion.sandbox._types import (
    ENV_ALLOWLIST as ENV_LAYER,
)

BWRAP_LAYERS = (FILESYSTEM, NETWORK, PID_NS, IPC_NS, UTS_NS, CGROUP_NS, USER_NS,
                NO_NEW_PRIVS, CAPS_DROPPED, RLIMITS, ENV_LAYER)


def find_bwrap() -> str | None:
    return shutil.which("bwrap", path="/usr/bin:/bin:/usr/local/bin")


@lru_cache(maxsize=4)
def bwrap_supports(bwrap: str, option: str) -> bool:
    """Whether this bwrap knows `option` (--disable-userns is 0.8+, --size 0.5+)."""
    try:
        out = subprocess.run([bwrap, "--help"], capture_output=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return option.encode() in out


def bwrap_argv(bwrap: str, rt: Runtime, req: Request, *, file_fds: dict[str, int],
               seccomp_fd: int | None, sandbox_uid: int = 65534) -> list[str]:
    """The full bwrap command line for one execution (or one warm-pool zygote)."""
    disk = str(req.limits.disk_mb * 1024 * 1024)
    a = [bwrap, "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc",
         "--unshare-uts", "--unshare-cgroup-try", "--uid", str(sandbox_uid),
         "--gid", str(sandbox_uid), "--hostname", "sandbox", "--die-with-parent",
         "--new-session", "--cap-drop", "ALL", "--as-pid-1"]
    if bwrap_supports(bwrap, "--disable-userns"):
        a.append("--disable-userns")
    for path in rt.binds:
        a += ["--ro-bind", path, path]
    for target, link in rt.symlinks:
        a += ["--symlink", target, link]
    if os.path.exists("/etc/ld.so.cache"):
        a += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    a += ["--proc", "/proc", *dev_args(int(disk)),
          "--perms", "0777", "--size", disk, "--tmpfs", WORKDIR,
          "--perms", "01777", "--size", disk, "--tmpfs", "/tmp"]
    made: set[str] = set()
    for name, fd in file_fds.items():
        parent = os.path.dirname(name)
        while parent and parent not in made:
            made.add(parent)
            a += ["--dir", f"{WORKDIR}/{parent}"]
            parent = os.path.dirname(parent)
        a += ["--file", str(fd), f"{WORKDIR}/{name}"]
    a += ["--remount-ro", "/", "--chdir", WORKDIR, "--clearenv"]
    for key, value in ENV_ALLOWLIST.items():
        a += ["--setenv", key, value]
    if seccomp_fd is not None:
        a += ["--seccomp", str(seccomp_fd)]
    return [*a, "--", *req.argv]


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


class BwrapSandbox(RunsRequests):
    """Sandbox backed by bubblewrap; `layers` are the ones probe verified on this host."""

    backend = "bwrap"

    def __init__(self, *, python: str | None = None, require: tuple[str, ...] = (),
                 verified: tuple[str, ...] | None = None, use_seccomp: bool = True) -> None:
        bwrap = find_bwrap()
        if bwrap is None:
            raise SandboxUnavailable("bubblewrap (bwrap) is not installed")
        self.bwrap = bwrap
        self.runtime = discover(python)
        self.cgroups = CgroupManager()
        self.drop_uid = os.geteuid() == 0
        self.use_seccomp = use_seccomp and _seccomp.available()
        self.require = require
        configured = set(BWRAP_LAYERS)
        if self.use_seccomp:
            configured.add(SECCOMP)
        if self.drop_uid or os.geteuid() != 0:
            configured.add(UNPRIVILEGED)
        for ctrl in ("pids", "memory"):
            if ctrl in self.cgroups.hierarchies:
                configured.add(ctrl)
        configured.add(WALL_CLOCK)  # pid namespace: killing bwrap ends the whole tree
        if verified is not None:
            configured &= set(verified)
        self.layers: tuple[str, ...] = tuple(sorted(configured))
        check_required(require, self.layers, self.backend)
        self._closed = False
        self._cleanups: set[asyncio.Future[None]] = set()
        self._spare: ExecCgroup | None = None
        self._making_spare: asyncio.Future[ExecCgroup] | None = None

    def _cgroup(self, limits: SandboxLimits) -> ExecCgroup | None:
        """A fresh, never used cgroup for one execution, with `limits` applied.

        Made ahead of time when possible (mkdir and limit writes, ~0.3 ms, are then off
        the caller's clock): each execution takes the spare, and the next one is made in
        the background once it has finished (not during: the thread would compete with
        the start being timed). A spare is never reused; sweep_stale removes one a crash
        left behind.
        """
        if not ({PIDS, MEMORY} & set(self.layers)):
            return None
        cg, self._spare = self._spare, None
        try:
            if cg is not None:
                cg.set_limits(limits.memory_mb, limits.pids)
            else:
                cg = self.cgroups.create(limits.memory_mb, limits.pids)
        except OSError as e:
            if cg is not None:
                cg.destroy()
            if {PIDS, MEMORY} & set(self.require):
                raise SandboxUnavailable(f"cannot create the execution cgroup: {e}") from e
            return None
        return cg

    def _make_spare(self, limits: SandboxLimits) -> None:
        if self._closed or self._making_spare is not None:
            return
        try:
            task = asyncio.ensure_future(
                asyncio.to_thread(self.cgroups.create, limits.memory_mb, limits.pids))
        except RuntimeError:  # no running loop: the next execution makes its own
            return
        self._making_spare = task

        def done(t: asyncio.Future[ExecCgroup]) -> None:
            self._making_spare = None
            if t.cancelled() or t.exception() is not None:
                return
            if self._closed or self._spare is not None:
                self._destroy_later(t.result())
            else:
                self._spare = t.result()

        task.add_done_callback(done)

    def run_layers(self, cg: ExecCgroup | None) -> list[str]:
        have = set(self.layers)
        for ctrl in (PIDS, MEMORY):
            if cg is None or ctrl not in cg.controllers:
                have.discard(ctrl)
        return sorted(have)

    def _python(self) -> str:
        return self.runtime.python

    async def execute(self, req: Request) -> ExecResult:
        """Run one validated request in a fresh sandbox and clean everything up."""
        cg = self._cgroup(req.limits)
        try:
            layers = self.run_layers(cg)
            check_required(self.require, layers, self.backend)
            fds: dict[str, int] = {}
            try:
                for i, (name, data) in enumerate(req.files.items()):
                    fds[name] = _memfd(f"f{i}", data)
                sfd = _seccomp.program_fd() if self.use_seccomp else None
            except BaseException:
                for fd in fds.values():
                    os.close(fd)
                raise
            passed = tuple(fds.values()) + ((sfd,) if sfd is not None else ())
            argv = bwrap_argv(self.bwrap, self.runtime, req, file_fds=fds, seccomp_fd=sfd)
            out = await supervise(argv, limits=req.limits, cg=cg, stdin=req.stdin,
                                  pass_fds=passed, drop_uid=self.drop_uid)
        finally:
            if cg is not None:
                self._destroy_later(cg)
                self._make_spare(req.limits)
        return ExecResult(out.returncode, decode(out.stdout), decode(out.stderr),
                          out.timed_out, out.killed_reason, round(out.duration_ms, 3), layers)

    def _destroy_later(self, cg: ExecCgroup) -> None:
        """Remove the cgroup off the caller's clock. `collect` has already killed every
        process of the run and seen the cgroup empty; what is left is rmdir (and, after a
        crash of our own code, the kill, which destroy() repeats anyway)."""
        try:
            task = asyncio.ensure_future(asyncio.to_thread(cg.destroy))
        except RuntimeError:  # no running loop: do it now
            cg.destroy()
            return
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def aclose(self) -> None:
        self._closed = True
        if self._making_spare is not None:
            await asyncio.gather(self._making_spare, return_exceptions=True)
        if self._spare is not None:
            self._destroy_later(self._spare)
            self._spare = None
        await asyncio.gather(*self._cleanups, return_exceptions=True)
