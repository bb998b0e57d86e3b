"""How a sandbox launcher is started inside its cgroups, under its rlimits, as `nobody`.

Three ways, fastest first; `launcher()` says which one this host uses:

- `vfork`: the C extension `_spawn` (built with the package when a compiler is there)
  does every step below in a vfork() child with raw system calls, then execs the launcher
  (bwrap or unshare) directly: one exec per start.
- `exec-chain`: without the extension. A Python `preexec_fn` (or subprocess's `user=`,
  `group=`, `extra_groups=`) makes CPython's _posixsubprocess use a full fork() of the
  supervisor, which copies its page tables (4-6 ms for a typical Bastion process) on every
  cold start; without them it uses vfork(). So the child execs two small constant
  programs instead, in this order, before the launcher:
  1. `/bin/sh -c _JOIN_AND_LIMIT`: writes "0" (= the writer) to each cgroup file given as
     an argument, then sets each rlimit (soft = hard) with the `ulimit` builtin, then
     execs the rest. The script is a constant: paths, flags and numbers are positional
     arguments, never interpolated, so nothing the caller passes can become shell code.
     Any failure exits 126 with `LAUNCH_FAILED` on stderr *before* anything else runs.
  2. `setpriv`: drops to the unprivileged uid/gid with no supplementary groups (when we
     are root) and sets PR_SET_PDEATHSIG=SIGKILL after that change (a uid change clears
     it), so the launcher dies with the supervisor.
- `preexec`: the same steps in a Python function run in the child (hosts without /bin/sh
  or setpriv).

Whichever way, the cgroup join and the rlimits are in force before the uid drop, and all
three before the launcher and the user code start.
"""

from __future__ import annotations

import ctypes
import os
import resource
import shutil
import signal
from collections.abc import Callable
from functools import lru_cache

from bastion.sandbox._cgroup import ExecCgroup

try:
    from bastion.sandbox import _spawn as _vfork
except ImportError:  # built without a C compiler: the exec chain is used instead
    _vfork = None  # type: ignore[assignment]

SANDBOX_UID = 65534  # nobody: what the code runs as on the host when we start as root
LAUNCH_FAILED = b"bastion-launcher: cannot join the cgroup or set the rlimits"
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)

# `ulimit` flag and unit of each rlimit we set. The units are those of POSIX (-f: 512-byte
# blocks) and of dash, bash and busybox sh alike (-v: KiB); -c is only ever 0.
_ULIMIT = {
    resource.RLIMIT_CPU: ("-t", 1),
    resource.RLIMIT_AS: ("-v", 1024),
    resource.RLIMIT_FSIZE: ("-f", 512),
    resource.RLIMIT_NOFILE: ("-n", 1),
    resource.RLIMIT_CORE: ("-c", 512),
}

# $0 = "sh"; then cgroup files up to "--", then (flag, value) pairs up to "--", then argv.
_JOIN_AND_LIMIT = (
    'fail() { printf "%s\\n" "$0" >&2; exit 126; }; '
    'while [ "$1" != -- ]; do { printf 0 > "$1"; } 2>/dev/null || fail; shift; done; shift; '
    'while [ "$1" != -- ]; do ulimit "$1" "$2" 2>/dev/null || fail; shift 2; done; shift; '
    'exec "$@"'
)


@lru_cache(maxsize=1)
def _tools() -> tuple[str, str] | None:
    setpriv = shutil.which("setpriv", path="/usr/bin:/bin")
    if setpriv is None or not os.access("/bin/sh", os.X_OK):
        return None
    return "/bin/sh", setpriv


def launcher() -> str:
    """Which way launchers are started on this host: vfork, exec-chain or preexec."""
    if _vfork is not None:
        return "vfork"
    return "exec-chain" if _tools() is not None else "preexec"


def vfork_spawn(argv: list[str], *, env: dict[str, str], cwd: str, stdio: tuple[int, int, int],
                pass_fds: tuple[int, ...], cg: ExecCgroup | None,
                rlimits: list[tuple[int, int]], drop_uid: bool) -> int | None:
    """Start `argv` through the C launcher and return its pid; None without the extension.

    Raises OSError naming the step that failed (nothing was executed then)."""
    if _vfork is None:
        return None
    joins = [os.fsencode(path) for path, _ in cg.join_files] if cg is not None else []
    uid = SANDBOX_UID if drop_uid else -1
    pid: int = _vfork.spawn([os.fsencode(a) for a in argv],
                            [os.fsencode(f"{k}={v}") for k, v in env.items()],
                            os.fsencode(cwd), stdio, list(pass_fds), joins, rlimits, uid, uid)
    return pid


def exec_chain(argv: list[str], cg: ExecCgroup | None, rlimits: list[tuple[int, int]],
               drop_uid: bool) -> list[str] | None:
    """`argv` prefixed with the constant launcher chain; None if this host lacks the tools
    (the caller then uses `make_preexec`)."""
    tools = _tools()
    if tools is None:
        return None
    sh, setpriv = tools
    limits: list[str] = []
    for res, value in rlimits:
        flag, unit = _ULIMIT[res]
        limits += [flag, str(value // unit)]  # rounding down only ever tightens a limit
    joins = [path for path, _ in cg.join_files] if cg is not None else []
    priv = [setpriv]
    if drop_uid:
        priv += [f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups"]
    priv += ["--pdeathsig=KILL", "--"]
    # $0 carries the failure message: it is our constant, not a caller's string.
    return [sh, "-c", _JOIN_AND_LIMIT, LAUNCH_FAILED.decode(), *joins, "--", *limits, "--",
            *priv, *argv]


def make_preexec(cg: ExecCgroup | None, rlimits: list[tuple[int, int]],
                 drop_uid: bool) -> Callable[[], None]:
    """The slow path (forces fork()): the same steps, run in the child before exec.

    Everything it needs is computed here, in the parent, so the child only does syscalls.
    """
    joins = cg.join_files if cg is not None else []

    def preexec() -> None:
        pid = str(os.getpid()).encode()
        for path, write_pid in joins:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, pid if write_pid else b"0")
            finally:
                os.close(fd)
        for res, value in rlimits:
            resource.setrlimit(res, (value, value))
        if drop_uid:
            os.setgroups([])
            os.setresgid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
            os.setresuid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
        # After the uid change (which clears it): die if the supervisor dies.
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return preexec
