"""Start one sandboxed process tree, feed it, cap its output, enforce the wall clock.

Shared by both backends. The child joins the execution's cgroups and takes its rlimits
*before* it execs the sandbox launcher (bwrap or unshare), so nothing it ever forks is
outside the limits; then it drops to the unprivileged uid (how, and why without a Python
`preexec_fn`: see _launch). Whatever happens (normal exit, timeout, output flood, crash
of our own code), the cgroup is killed and removed in `finally`, so no process of a run
outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import resource
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from bastion.errors import SandboxError
from bastion.sandbox._cgroup import ExecCgroup
from bastion.sandbox._launch import (
    LAUNCH_FAILED,
    exec_chain,
    launcher,
    make_preexec,
    vfork_spawn,
)
from bastion.sandbox._process import AsyncioChild, Child, PidChild
from bastion.sandbox._types import SandboxLimits

_DISK_MARKERS = (b"[Errno 28]", b"[Errno 27]", b"No space left on device", b"File too large")


@dataclass
class Outcome:
    """Raw result of one supervised process tree, before layer bookkeeping."""

    returncode: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool
    killed_reason: str | None
    duration_ms: float


def rlimits_for(limits: SandboxLimits) -> list[tuple[int, int]]:
    """CPU, address space, file size, open files, core dumps off. No NPROC: see _cgroup."""
    cpu = limits.cpu_seconds or math.ceil(limits.timeout) + 1
    disk = limits.disk_mb * 1024 * 1024
    address_space = max(limits.memory_mb * 4, 1024) * 1024 * 1024  # cgroup is the real cap
    return [
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_AS, address_space),
        (resource.RLIMIT_FSIZE, disk),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_CORE, 0),
    ]


class Capture:
    """One output stream of a run, read straight from our end of its pipe.

    Not an asyncio StreamReader: the warm pool must be able to take everything already
    written *without* waiting for EOF, because EOF only comes once the sandbox's launcher
    has exited, i.e. after the namespaces are torn down (see `drain`).
    """

    _CHUNK = 65536
    _BURST = 16  # reads per wake-up: a writer that never stops cannot starve the loop

    def __init__(self, fd: int, cap: int, on_overflow: Callable[[], None]) -> None:
        self.fd, self.cap, self.on_overflow = fd, cap, on_overflow
        self.buf = bytearray()
        self.loop = asyncio.get_running_loop()
        self.eof: asyncio.Future[bytes] = self.loop.create_future()
        os.set_blocking(fd, False)
        self.loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        self.drain(self._BURST)

    def drain(self, max_reads: int | None = None) -> None:
        """Read what the pipe holds now (up to `max_reads` chunks); EOF closes it."""
        n = 0
        while not self.eof.done() and (max_reads is None or n < max_reads):
            n += 1
            try:
                chunk = os.read(self.fd, self._CHUNK)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.close()
                return
            room = self.cap - len(self.buf)
            if room > 0:
                self.buf += chunk[:room]
            if len(chunk) > room:
                self.on_overflow()  # over the cap: the run is being killed; keep nothing more
                if max_reads is None:
                    return

    def close(self) -> None:
        if self.eof.done():
            return
        self.loop.remove_reader(self.fd)
        os.close(self.fd)
        self.eof.set_result(bytes(self.buf))

    def take(self) -> bytes:
        """What was read so far; stops reading (the early-return path)."""
        self.close()
        return bytes(self.buf)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return []


def _kill_tree(proc: Child, cg: ExecCgroup | None) -> None:
    """Kill the sandbox's init first (its pid namespace dies with it and the launcher
    reaps it, leaving no orphan zombie for the host's init), then whatever is left."""
    for child in _children(proc.pid):
        try:
            os.kill(child, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + 0.25
    while time.monotonic() < deadline:
        try:
            if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                break
        except ChildProcessError:
            break
        time.sleep(0.002)
    if cg is not None and cg.dirs:
        cg.kill_all()
    try:  # the launcher's session, in case there was no cgroup to kill
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class Launched:
    """A started launcher and our read ends of its stdout and stderr pipes."""

    proc: Child
    out_fd: int
    err_fd: int

    def close_pipes(self) -> None:
        """For a launcher whose output is never collected (an unused warm-pool entry)."""
        for fd in (self.out_fd, self.err_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


async def spawn(argv: list[str], *, limits: SandboxLimits, cg: ExecCgroup | None,
                pass_fds: tuple[int, ...] = (), drop_uid: bool = True,
                env: dict[str, str] | None = None, cwd: str = "/",
                stdin_pipe: bool = True) -> Launched:
    """Start a sandbox launcher already inside `cg` and under `limits`' rlimits.

    Through the vfork launcher, else the constant exec chain (see _launch): either way no
    Python runs in the child and this process is not copied.
    """
    rlimits = rlimits_for(limits)
    env = env if env is not None else {"PATH": "/usr/bin:/bin"}
    if launcher() != "vfork":
        return await _spawn_from_python(argv, env=env, cwd=cwd, pass_fds=pass_fds, cg=cg,
                                        rlimits=rlimits, drop_uid=drop_uid,
                                        stdin_pipe=stdin_pipe)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    in_r, in_w = (os.pipe2(os.O_CLOEXEC) if stdin_pipe
                  else (os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), -1))
    try:
        pid = vfork_spawn(argv, env=env, cwd=cwd, stdio=(in_r, out_w, err_w),
                          pass_fds=pass_fds, cg=cg, rlimits=rlimits, drop_uid=drop_uid)
    except OSError as e:
        for fd in (out_r, err_r, in_w):
            if fd >= 0:
                os.close(fd)
        raise SandboxError(f"cannot start the sandbox: {e.strerror or e}") from e
    finally:
        for fd in (*pass_fds, out_w, err_w, in_r):
            os.close(fd)
    assert pid is not None
    return Launched(PidChild(pid, in_w if stdin_pipe else None), out_r, err_r)


async def _spawn_from_python(argv: list[str], *, env: dict[str, str], cwd: str,
                             pass_fds: tuple[int, ...], cg: ExecCgroup | None,
                             rlimits: list[tuple[int, int]], drop_uid: bool,
                             stdin_pipe: bool) -> Launched:
    """Without the vfork launcher: asyncio starts the exec chain (or a preexec_fn)."""
    chain = exec_chain(argv, cg, rlimits, drop_uid)
    preexec = make_preexec(cg, rlimits, drop_uid) if chain is None else None
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        proc = await asyncio.create_subprocess_exec(
            *(chain or argv),
            stdin=asyncio.subprocess.PIPE if stdin_pipe else asyncio.subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            env=env,
            cwd=cwd,
            pass_fds=pass_fds,
            start_new_session=True,
            preexec_fn=preexec,
        )
    except BaseException:
        os.close(out_r)
        os.close(err_r)
        raise
    finally:
        for fd in (*pass_fds, out_w, err_w):
            os.close(fd)
    return Launched(AsyncioChild(proc), out_r, err_r)


def signal_all(cg: ExecCgroup | None) -> None:
    """Send SIGKILL to every process of the run once, without waiting for them to exit."""
    if cg is None:
        return
    for pid in cg.pids(first_only=True):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


async def _early_exit(status: asyncio.StreamReader) -> int:
    """The zygote's exit code, once it has reported it (after closing stdout and stderr)."""
    line = await status.readline()
    if line.strip().isdigit() and len(line) <= 5:
        return int(line)
    # Died without reporting, or junk (the pipe is the zygote's alone; be strict anyway):
    # never trust it, wait for the launcher's exit and its real status instead.
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def collect(launched: Launched, *, limits: SandboxLimits,
                  cg: ExecCgroup | None, stdin: bytes | None, t0: float,
                  status: asyncio.StreamReader | None = None) -> Outcome:
    """Feed stdin, read capped output, enforce the wall clock, then kill what is left.

    With `status` (warm pool), a reported exit code ends the run: the zygote reports only
    after flushing and closing its stdout and stderr, so all it wrote is already in our
    pipes. Everything of the run is sent SIGKILL, the pipes are drained without waiting
    for EOF (which comes only after the namespace teardown) and the caller reaps in the
    background, so the teardown is not on the caller's clock.
    """
    proc = launched.proc
    overflow = asyncio.Event()
    timed_out = False
    caps = [Capture(launched.out_fd, limits.output_bytes, overflow.set),
            Capture(launched.err_fd, limits.output_bytes, overflow.set)]
    readers = [c.eof for c in caps]
    # What the pipe takes is written now: a parked zygote gets its request at once.
    feeder = proc.feed(stdin)
    waiter = asyncio.ensure_future(proc.wait())
    flood = asyncio.ensure_future(overflow.wait())
    early = asyncio.ensure_future(_early_exit(status)) if status is not None else None
    try:
        remaining = limits.timeout - (time.monotonic() - t0)
        done, _ = await asyncio.wait({waiter, flood} | ({early} if early else set()),
                                     timeout=max(remaining, 0),
                                     return_when=asyncio.FIRST_COMPLETED)
        if not done:
            timed_out = True
        duration = (time.monotonic() - t0) * 1000
        if early is not None and early in done and not overflow.is_set():
            signal_all(cg)
            for c in caps:
                c.drain()
            outs = [c.take() for c in caps]
            if not overflow.is_set():
                code = early.result()
                return Outcome(code, outs[0], outs[1], False,
                               kill_reason(cg, code, outs[1], timed_out=False,
                                           overflow=False), duration)
        # The main process is gone (or must go): nothing else of the run may survive it.
        # Fast path, no thread hop: the launcher exited (so its pid namespace is gone)
        # and the cgroup is verifiably empty.
        if not (proc.returncode is not None and cg is not None and cg.dirs
                and not cg.pids()):
            await asyncio.to_thread(_kill_tree, proc, cg)
        returncode = await proc.wait()
        outs = list(await asyncio.wait_for(asyncio.gather(*readers), timeout=5))
    finally:
        feeder.cancel()
        for task in (flood, waiter, *([early] if early else [])):
            task.cancel()
        for c in caps:
            c.close()
        if proc.returncode is None and early is None:
            await asyncio.to_thread(_kill_tree, proc, cg)
    reason = kill_reason(cg, returncode, outs[1], timed_out=timed_out,
                         overflow=overflow.is_set())
    code: int | None = None if timed_out or overflow.is_set() else returncode
    return Outcome(code, outs[0], outs[1], timed_out, reason, duration)


def kill_reason(cg: ExecCgroup | None, returncode: int | None, stderr: bytes, *,
                timed_out: bool, overflow: bool) -> str | None:
    """Which limit ended the run, if one did. Output, memory (the cgroup's OOM count),
    timeout and pids (pids.events) are measured; disk is read off the error the code got
    (ENOSPC from the tmpfs, EFBIG from RLIMIT_FSIZE: Python ignores SIGXFSZ)."""
    if overflow:
        return "output"
    if cg is not None and cg.oom_killed():
        return "memory"
    if timed_out:
        return "timeout"
    if returncode != 0 and cg is not None and cg.pids_exhausted():
        return "pids"
    if returncode != 0 and any(m in stderr[-4096:] for m in _DISK_MARKERS):
        return "disk"
    return None


async def supervise(argv: list[str], *, limits: SandboxLimits, cg: ExecCgroup | None,
                    stdin: bytes | None, pass_fds: tuple[int, ...] = (),
                    drop_uid: bool = True, env: dict[str, str] | None = None,
                    cwd: str = "/") -> Outcome:
    """Run `argv` (a sandbox launcher) to completion or until a limit stops it."""
    t0 = time.monotonic()
    launched = await spawn(argv, limits=limits, cg=cg, pass_fds=pass_fds, drop_uid=drop_uid,
                           env=env, cwd=cwd, stdin_pipe=bool(stdin))
    out = await collect(launched, limits=limits, cg=cg, stdin=stdin, t0=t0)
    if out.returncode == 126 and out.stderr.strip() == LAUNCH_FAILED:
        # The chain stopped before the launcher: no code ran, and its limits were not in
        # force. An error, not a result (as the preexec function's exception was).
        raise SandboxError(LAUNCH_FAILED.decode())
    return out


def decode(data: bytes) -> str:
    """Bytes from hostile code to text that is safe to log and JSON-encode."""
    return data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
