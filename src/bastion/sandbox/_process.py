"""A started launcher process, whichever way it was started: wait, kill, feed stdin.

The vfork launcher (`_spawn`) returns a bare pid, the pure-Python paths an asyncio
Process; `collect` and the warm pool only need the few operations of `Child`. A pid is
watched through a pidfd (one readable event when it exits, no thread), or, on kernels
without pidfd_open, by a thread blocked in waitpid for that pid alone. Only that pid is
ever reaped, so asyncio's own child watcher and other subprocesses are unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Protocol


class Child(Protocol):
    pid: int

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def kill(self) -> None: ...

    def feed(self, data: bytes | None) -> asyncio.Future[None]:
        """Write `data` to stdin (what the pipe takes goes now, synchronously), then close
        it; the future is done when all is written or the reader has gone."""
        ...


class PidChild:
    """A child we started ourselves (vfork launcher) and reap ourselves."""

    def __init__(self, pid: int, stdin_fd: int | None) -> None:
        self.pid = pid
        self._stdin = stdin_fd
        self._code: int | None = None
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = self._loop.create_future()
        self._pidfd: int | None = None
        try:
            self._pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            task = asyncio.ensure_future(asyncio.to_thread(os.waitpid, pid, 0))
            task.add_done_callback(self._thread_reaped)
        else:
            self._loop.add_reader(self._pidfd, self._reap)

    @property
    def returncode(self) -> int | None:
        return self._code

    def _done(self, status: int) -> None:
        self._code = os.waitstatus_to_exitcode(status)
        if self._stdin is not None:  # never fed (a warm-pool entry that was not claimed)
            os.close(self._stdin)
            self._stdin = None
        if not self._exited.done():
            self._exited.set_result(self._code)

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere: the status is lost, say "killed"
            pid, status = self.pid, signal.SIGKILL
        if pid == 0:
            return
        assert self._pidfd is not None
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = None
        self._done(status)

    def _thread_reaped(self, task: asyncio.Future[tuple[int, int]]) -> None:
        try:
            _, status = task.result()
        except ChildProcessError:
            status = signal.SIGKILL
        self._done(status)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def kill(self) -> None:
        if self._code is None:
            os.kill(self.pid, signal.SIGKILL)

    def feed(self, data: bytes | None) -> asyncio.Future[None]:
        done: asyncio.Future[None] = self._loop.create_future()
        fd, self._stdin = self._stdin, None
        if fd is None:
            done.set_result(None)
            return done
        view = memoryview(data or b"")
        closed = False

        def close(_: object = None) -> None:
            nonlocal closed
            if not closed:  # once: the number may be reused as soon as it is closed
                closed = True
                self._loop.remove_writer(fd)
                with contextlib.suppress(OSError):
                    os.close(fd)

        def write() -> None:
            nonlocal view
            try:
                while view:
                    view = view[os.write(fd, view):]
            except BlockingIOError:
                return  # the pipe is full: wait for the next writable event
            except OSError:
                pass  # EPIPE: the reader is gone; what it did not take is moot
            close()
            if not done.done():
                done.set_result(None)

        done.add_done_callback(close)  # also when the caller cancels it
        os.set_blocking(fd, False)
        write()
        if not done.done():
            self._loop.add_writer(fd, write)
        return done


class AsyncioChild:
    """An asyncio subprocess (the pure-Python launch paths) behind the same interface."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pid = proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    async def wait(self) -> int:
        return await self.proc.wait()

    def kill(self) -> None:
        self.proc.kill()

    def feed(self, data: bytes | None) -> asyncio.Future[None]:
        stdin = self.proc.stdin
        if stdin is not None and data:
            # The transport writes what the pipe takes right now.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                stdin.write(data)

        async def finish() -> None:
            if stdin is None:
                return
            try:
                await stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    stdin.close()

        return asyncio.ensure_future(finish())
