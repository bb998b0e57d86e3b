"""The fallback backend, for hosts without bubblewrap: unshare + cgroups + rlimits + setpriv.

It gives pid/net/ipc/uts namespaces (as root, or in a user namespace otherwise), the same
cgroups and rlimits as bwrap, an unprivileged uid with no capabilities and NoNewPrivs. It
does NOT give a private filesystem view (the host tree stays readable to the uid) nor a
seccomp filter, and its `layers` say so; with the default `require` it is refused.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from bastion.errors import SandboxUnavailable
from bastion.sandbox._base import ENV_ALLOWLIST, Request, RunsRequests, check_required
from bastion.sandbox._cgroup import CgroupManager, ExecCgroup
from bastion.sandbox._runtime import discover
from bastion.sandbox._launch import SANDBOX_UID
from bastion.sandbox._supervise import decode, supervise
from bastion.sandbox._types import (
    CAPS_DROPPED, ENV_ALLOWLIST as ENV_LAYER, IPC_NS, MEMORY, NETWORK, NO_NEW_PRIVS, PID_NS,
    PIDS, RLIMITS, UNPRIVILEGED, USER_NS, UTS_NS, WALL_CLOCK, ExecResult,
)


class FallbackSandbox(RunsRequests):
    """Namespaces via util-linux `unshare`, uid/caps via `setpriv`; no filesystem layer."""

    backend = "fallback"

    def __init__(self, *, python: str | None = None, require: tuple[str, ...] = (),
                 verified: tuple[str, ...] | None = None) -> None:
        self.unshare = shutil.which("unshare", path="/usr/bin:/bin")
        self.setpriv = shutil.which("setpriv", path="/usr/bin:/bin")
        if self.unshare is None or self.setpriv is None:
            raise SandboxUnavailable("the fallback backend needs util-linux unshare and setpriv")
        self.runtime = discover(python)
        self.cgroups = CgroupManager()
        self.root = os.geteuid() == 0
        self.require = require
        configured = {NETWORK, PID_NS, IPC_NS, UTS_NS, NO_NEW_PRIVS, CAPS_DROPPED, RLIMITS,
                      ENV_LAYER, UNPRIVILEGED, WALL_CLOCK}
        if not self.root:
            configured.add(USER_NS)
        configured |= {c for c in (PIDS, MEMORY) if c in self.cgroups.hierarchies}
        if verified is not None:
            configured &= set(verified)
        self.layers: tuple[str, ...] = tuple(sorted(configured))
        check_required(require, self.layers, self.backend)
        self._closed = False

    def _argv(self, req: Request, workdir: str) -> list[str]:
        assert self.unshare is not None and self.setpriv is not None
        a = [self.unshare, "--fork", "--pid", "--mount-proc", "--net", "--ipc", "--uts",
             "--kill-child"]
        if not self.root:
            a += ["--user", "--map-root-user"]
        a += ["--", self.setpriv, "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all"]
        if self.root:
            a += ["--reuid", str(SANDBOX_UID), "--regid", str(SANDBOX_UID), "--clear-groups"]
        argv = [self.runtime.python if x == "python3" else x for x in req.argv]
        return [*a, "--", *argv]

    def _python(self) -> str:
        return self.runtime.python

    async def execute(self, req: Request) -> ExecResult:
        limits = req.limits
        cg: ExecCgroup | None = None
        if {PIDS, MEMORY} & set(self.layers):
            try:
                cg = self.cgroups.create(limits.memory_mb, limits.pids)
            except OSError as e:
                if {PIDS, MEMORY} & set(self.require):
                    raise SandboxUnavailable(f"cannot create the execution cgroup: {e}") from e
        workdir = tempfile.mkdtemp(prefix="bastion-sbx-")
        try:
            layers = sorted(set(self.layers) - {c for c in (PIDS, MEMORY)
                                                if cg is None or c not in cg.controllers})
            check_required(self.require, layers, self.backend)
            for name, data in req.files.items():
                path = os.path.join(workdir, name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(data)
            if self.root:
                for dirpath, _, names in os.walk(workdir):
                    os.chown(dirpath, SANDBOX_UID, SANDBOX_UID)
                    for n in names:
                        os.chown(os.path.join(dirpath, n), SANDBOX_UID, SANDBOX_UID)
            os.chmod(workdir, 0o700)
            env = {**ENV_ALLOWLIST, "HOME": workdir, "PWD": workdir}
            out = await supervise(self._argv(req, workdir), limits=req.limits, cg=cg,
                                  stdin=req.stdin, drop_uid=False, env=env, cwd=workdir)
        finally:
            if cg is not None:
                cg.destroy()
            shutil.rmtree(workdir, ignore_errors=True)
        return ExecResult(out.returncode, decode(out.stdout), decode(out.stderr),
                          out.timed_out, out.killed_reason, round(out.duration_ms, 3), layers)

    async def aclose(self) -> None:
        self._closed = True
