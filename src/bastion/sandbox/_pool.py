"""The warm pool: bwrap sandboxes started ahead of time, each serving one execution.

A pool entry is a complete sandbox (namespaces, tmpfs, seccomp, cgroup, uid drop) whose
interpreter has already started and is parked in the zygote (see _zygote). Claiming one
costs a cgroup limit write and a pipe write, not a process start. Entries are never
reused: after its execution the entry's cgroup is killed and removed like a cold run's,
and a replacement is started in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from bastion.errors import SandboxError
from bastion.sandbox._base import Request, RunsRequests, check_required
from bastion.sandbox._bwrap import BwrapSandbox, bwrap_argv
from bastion.sandbox._cgroup import ExecCgroup
from bastion.sandbox._supervise import Launched, collect, decode, rlimits_for, spawn
from bastion.sandbox._types import ExecResult, SandboxLimits

_ZYGOTE = Path(__file__).with_name("_zygote.py").read_text()
# The parked sandbox's cgroup limits are a default request's (so claiming one with the
# defaults writes nothing); its rlimits are generous, the child lowers them when claimed.
_DEFAULT = SandboxLimits()
_PARKED = SandboxLimits(timeout=3600, memory_mb=_DEFAULT.memory_mb, pids=_DEFAULT.pids + 1)


@dataclass
class _Entry:
    launched: Launched
    cg: ExecCgroup | None
    layers: list[str]
    status: asyncio.StreamReader  # the zygote reports readiness, then its exit code here
    claimed: bool = False  # collect() owns (and closes) the output pipes once claimed


async def _status_reader(fd: int) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                 os.fdopen(fd, "rb", buffering=0))
    return reader


class WarmPoolSandbox(RunsRequests):
    """A Sandbox that answers from pre-started bwrap sandboxes, falling back to cold ones."""

    backend = "bwrap-warm"

    def __init__(self, *, python: str | None = None, require: tuple[str, ...] = (),
                 verified: tuple[str, ...] | None = None, size: int = 2) -> None:
        self.cold = BwrapSandbox(python=python, require=require, verified=verified)
        self.layers = self.cold.layers
        self.require = require
        self.size = max(1, size)
        self._ready: list[_Entry] = []
        self._starting = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        with contextlib.suppress(RuntimeError):  # no running loop: fill on first run()
            asyncio.get_running_loop()
            self._refill()

    def _refill(self) -> None:
        while not self._closed and len(self._ready) + self._starting < self.size:
            self._starting += 1
            task = asyncio.ensure_future(self._start_one())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _start_one(self) -> None:
        cg: ExecCgroup | None = None
        try:
            cg = self.cold._cgroup(_PARKED)
            status_r, status_w = os.pipe()
            status = await _status_reader(status_r)
            req = Request({}, [self.cold.runtime.python, "-I", "-c", _ZYGOTE, str(status_w)],
                          None, _PARKED)
            from bastion.sandbox import _seccomp

            sfd = _seccomp.program_fd() if self.cold.use_seccomp else None
            argv = bwrap_argv(self.cold.bwrap, self.cold.runtime, req, file_fds={},
                              seccomp_fd=sfd)
            spawning = asyncio.ensure_future(spawn(
                argv, limits=_PARKED, cg=cg,
                pass_fds=(status_w,) + ((sfd,) if sfd is not None else ()),
                drop_uid=self.cold.drop_uid))
            try:
                # Never cancel a spawn half-way: asyncio then kills the child but can wait
                # for it forever (aclose hung). Let it finish, then reap it like any entry.
                launched = await asyncio.shield(spawning)
            except asyncio.CancelledError:
                launched = await spawning
                await self._reap(_Entry(launched, cg, [], status))
                cg = None
                raise
            entry = _Entry(launched, cg, self.cold.run_layers(cg), status)
            cg = None  # from here on the entry owns it
            try:
                ready = await asyncio.wait_for(status.readline(), timeout=30)
                if ready != b"ready\n" or self._closed:
                    raise SandboxError("warm sandbox did not start")
            except BaseException:
                await self._reap(entry)
                raise
            self._ready.append(entry)
        except (OSError, SandboxError, asyncio.TimeoutError):
            pass  # run() falls back to a cold sandbox; the next refill tries again
        finally:
            self._starting -= 1
            if cg is not None:
                await asyncio.to_thread(cg.destroy)

    def _python(self) -> str:
        return self.cold.runtime.python

    async def execute(self, req: Request) -> ExecResult:
        entry = self._claim()
        try:
            if entry is None:
                return await self.cold.execute(req)
            return await self._execute(entry, req, in_process=req.runs_main)
        finally:
            # Refill after, not during, the execution: starting a sandbox forks this
            # process and competes for CPU with the run being timed.
            self._refill()

    @staticmethod
    async def _reap(entry: _Entry) -> None:
        if not entry.claimed:
            entry.launched.close_pipes()
        if entry.cg is not None:
            await asyncio.to_thread(entry.cg.destroy)
        with contextlib.suppress(ProcessLookupError):
            entry.launched.proc.kill()
        await entry.launched.proc.wait()

    def _claim(self) -> _Entry | None:
        while self._ready:
            entry = self._ready.pop(0)
            if entry.launched.proc.returncode is None:
                return entry
            entry.launched.close_pipes()
            if entry.cg is not None:
                entry.cg.destroy()
        return None

    async def _execute(self, entry: _Entry, req: Request, in_process: bool) -> ExecResult:
        t0 = time.monotonic()
        try:
            check_required(self.require, entry.layers, self.backend)
            if entry.cg is not None:
                # +1: the zygote waiting for the code's process, as bwrap's launcher
                # is the +1 of a cold run; the code gets the same budget either way.
                entry.cg.set_limits(req.limits.memory_mb, req.limits.pids + 1)
            body = json.dumps({
                "files": {k: v.decode("utf-8") for k, v in req.files.items()},
                "stdin": req.stdin.decode("latin-1") if req.stdin is not None else None,
                "rlimits": rlimits_for(req.limits),
                "argv": None if in_process else req.argv,
            }).encode()
            entry.claimed = True
            out = await collect(entry.launched, limits=req.limits, cg=entry.cg,
                                stdin=len(body).to_bytes(8, "big") + body, t0=t0,
                                status=entry.status)
        finally:
            # Every process already got SIGKILL; reaping and rmdir need not delay the caller.
            task = asyncio.ensure_future(self._reap(entry))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return ExecResult(out.returncode, decode(out.stdout), decode(out.stderr),
                          out.timed_out, out.killed_reason, round(out.duration_ms, 3),
                          entry.layers)

    async def aclose(self) -> None:
        self._closed = True
        for task in list(self._tasks):  # reaps finish; refills are abandoned
            if task.get_coro().__name__ == "_start_one":  # type: ignore[union-attr]
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for entry in self._ready:
            await self._reap(entry)
        self._ready.clear()
        await self.cold.aclose()
