"""Host-side witnesses for the red-team suite: canaries, loopback listeners, /proc scans.

They observe the host directly (inotify on canary inodes, sockets the test owns, the
host's /proc), so a test cannot be fooled by a payload that lies about what it did.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import selectors
import signal
import socket
import struct
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

PROC_SLACK = int(os.environ.get("BASTION_REDTEAM_PROC_SLACK", "40"))


def make_token() -> str:
    # 14 chars: fits comm (15) untruncated, so psutil and /proc agree on it.
    return "brt" + secrets.token_hex(6)[:11]


_HOST_INIT = Path("/proc/1/cmdline").read_bytes().decode("latin-1")

PRELUDE = '''\
import os as _os, sys as _sys
def _brt_mark():
    # Tag this process (and, via fork, its children) so the host can find survivors.
    try:
        with open('/proc/self/comm', 'w') as _f:
            _f.write(TOKEN)
        return
    except Exception:
        pass
    try:
        import ctypes as _c
        _c.CDLL(None).prctl(15, TOKEN.encode(), 0, 0, 0)
    except Exception:
        pass
def _brt_guard():
    # Second safety net for destructive payloads: refuse unless we are clearly in our
    # own pid namespace (few processes visible, low pid, /proc/1 is not the host init).
    try:
        _n = [p for p in _os.listdir('/proc') if p.isdigit()]
        _init = open('/proc/1/cmdline', 'rb').read().decode('latin-1')
    except Exception as _e:
        _n, _init = None, None
    if _n is None or len(_n) > 30 or _os.getpid() > 30 or _init == HOST_INIT:
        print('GUARD_ABORT', _os.getpid(), None if _n is None else len(_n), flush=True)
        _os._exit(97)
'''


def payload(body: str, token: str, **consts: object) -> str:
    """Build a payload: prelude, constants as Python literals, tag the process, body."""
    head = [f"TOKEN = {token!r}", f"HOST_INIT = {_HOST_INIT!r}"]
    head += [f"{k} = {v!r}" for k, v in consts.items()]
    return PRELUDE + "\n".join(head) + "\n_brt_mark()\n" + textwrap.dedent(body)


# ---------------------------------------------------------------- canaries (inotify)

_IN_ACCESS, _IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE = 0x1, 0x2, 0x4, 0x8
_IN_OPEN, _IN_DELETE_SELF, _IN_MOVE_SELF = 0x20, 0x400, 0x800
_MASK = _IN_ACCESS | _IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_OPEN
_MASK |= _IN_DELETE_SELF | _IN_MOVE_SELF
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass
class Canary:
    path: Path
    content: str
    stat: tuple[int, ...]


def _stat_key(p: Path) -> tuple[int, ...]:
    st = os.stat(p)
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode, st.st_uid)


class CanarySet:
    """Files outside the sandbox. Any open/read/write of them, by anyone, is recorded.

    We never open them ourselves after arming (stat only), so every inotify event is
    someone else's doing: with random names, in practice the sandboxed code's.
    """

    def __init__(self, token: str) -> None:
        self.token = token
        self.items: list[Canary] = []
        self.fd = -1
        self.wds: dict[int, Path] = {}
        self.events: list[tuple[Path, int]] = []

    def add(self, path: Path) -> None:
        content = f"canary-{self.token}-{secrets.token_hex(10)}\n"
        path.write_text(content)
        os.chmod(path, 0o644)
        self.items.append(Canary(path, content, ()))

    def arm(self) -> None:
        self.fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        for c in self.items:
            wd = _libc.inotify_add_watch(self.fd, str(c.path).encode(), _MASK)
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {c.path}")
            self.wds[wd] = c.path
            c.stat = _stat_key(c.path)

    @property
    def paths(self) -> list[str]:
        return [str(c.path) for c in self.items]

    @property
    def contents(self) -> list[str]:
        return [c.content.strip() for c in self.items]

    def drain(self) -> list[tuple[Path, int]]:
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            off = 0
            while off + 16 <= len(buf):
                wd, mask, _cookie, ln = struct.unpack_from("iIII", buf, off)
                off += 16 + ln
                self.events.append((self.wds.get(wd, Path("?")), mask))
        return self.events

    def assert_untouched(self, *outputs: str) -> None:
        time.sleep(0.05)  # let inotify deliver events from the just-finished run
        ev = self.drain()
        assert not ev, f"canary opened/accessed/changed from outside: {ev}"
        for c in self.items:
            assert c.path.exists(), f"canary {c.path} deleted"
            assert _stat_key(c.path) == c.stat, f"canary {c.path} changed (stat)"
            leaked = any(c.content.strip() in o for o in outputs)
            assert not leaked, f"canary {c.path} content leaked into the output"

    def cleanup(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        for c in self.items:
            try:
                c.path.unlink()
            except OSError:
                pass


# ---------------------------------------------------------------- loopback listeners


@dataclass
class Hit:
    kind: str
    peer: object
    data: bytes = b""


class HostListeners:
    """TCP/UDP on 127.0.0.1 and ::1, plus abstract and path unix sockets; all must stay silent."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.sel = selectors.DefaultSelector()
        self.socks: list[socket.socket] = []
        self.port: dict[str, int] = {}
        self.abstract = "\0bastion-redteam-" + secrets.token_hex(6)
        self.unix_path = f"/tmp/bastion-redteam-{secrets.token_hex(6)}.sock"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _add(self, name: str, family: int, kind: int, addr: object) -> None:
        s = socket.socket(family, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)  # type: ignore[arg-type]
        except OSError:
            s.close()
            return  # e.g. no IPv6 on this host
        if kind == socket.SOCK_STREAM:
            s.listen(64)
        s.setblocking(False)
        if family in (socket.AF_INET, socket.AF_INET6):
            self.port[name] = s.getsockname()[1]
        self.socks.append(s)
        self.sel.register(s, selectors.EVENT_READ, (name, kind))

    def start(self) -> None:
        self._add("tcp4", socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 0))
        self._add("tcp6", socket.AF_INET6, socket.SOCK_STREAM, ("::1", 0))
        self._add("udp4", socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 0))
        self._add("udp6", socket.AF_INET6, socket.SOCK_DGRAM, ("::1", 0))
        self._add("abstract", socket.AF_UNIX, socket.SOCK_STREAM, self.abstract)
        self._add("unix", socket.AF_UNIX, socket.SOCK_STREAM, self.unix_path)
        self._thread = threading.Thread(target=self._loop, name="redteam-listeners", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for key, _ in self.sel.select(0.05):
                name, kind = key.data
                s = key.fileobj
                try:
                    if kind == socket.SOCK_STREAM:
                        conn, peer = s.accept()  # type: ignore[union-attr]
                        conn.settimeout(0.2)
                        try:
                            data = conn.recv(4096)
                        except OSError:
                            data = b""
                        conn.close()
                        self.hits.append(Hit(name, peer, data))
                    else:
                        data, peer = s.recvfrom(65536)  # type: ignore[union-attr]
                        self.hits.append(Hit(name, peer, data))
                except (BlockingIOError, InterruptedError):
                    pass

    def assert_silent(self) -> None:
        time.sleep(0.1)
        assert not self.hits, f"host loopback listener was reached from the sandbox: {self.hits}"

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(2)
        for s in self.socks:
            s.close()
        try:
            os.unlink(self.unix_path)
        except OSError:
            pass


# ---------------------------------------------------------------- processes


def tagged_pids(token: str) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/comm", "rb") as f:
                if f.read().strip() == token.encode():
                    out.append(int(name))
        except OSError:
            pass
    return out


def _rss_kb(pid: int) -> int:
    """Proportional set size: summing it over processes does not double-count COW pages."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclass
class ProcWatch:
    """Before/after view of the host's processes, plus a sampler for peaks during a run."""

    token: str
    base_pids: set[int] = field(default_factory=set)
    base_children: set[int] = field(default_factory=set)
    max_tagged: int = 0
    max_rss_kb: int = 0
    host_uids: set[int] = field(default_factory=set)  # real uids of tagged processes
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def baseline(self) -> None:
        self.base_pids = set(psutil.pids())
        self.base_children = {p.pid for p in psutil.Process().children(recursive=True)}

    def start_sampling(self, interval: float = 0.02) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                pids = tagged_pids(self.token)
                self.max_tagged = max(self.max_tagged, len(pids))
                self.max_rss_kb = max(self.max_rss_kb, sum(_rss_kb(p) for p in pids))
                for p in pids:
                    try:
                        self.host_uids.add(os.stat(f"/proc/{p}").st_uid)
                    except OSError:
                        pass
                self._stop.wait(interval)

        self._thread = threading.Thread(target=loop, name="redteam-sampler", daemon=True)
        self._thread.start()

    def stop_sampling(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(2)

    def new_children(self) -> list[psutil.Process]:
        kids = psutil.Process().children(recursive=True)
        return [k for k in kids if k.pid not in self.base_children and _alive(k)]

    def assert_clean(self, settle: float = 3.0, children: bool = True) -> None:
        """No tagged process, no new descendant of ours; host count back near baseline."""
        deadline = time.monotonic() + settle
        while True:
            tagged = tagged_pids(self.token)
            kids = self.new_children() if children else []
            count = len(psutil.pids())
            ok = not tagged and not kids and count <= len(self.base_pids) + PROC_SLACK
            if ok or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert not tagged, f"processes of the run survived it: {_describe(tagged)}"
        assert not kids, f"new descendants of the supervisor survived: {_describe([k.pid for k in kids])}"
        assert count <= len(self.base_pids) + PROC_SLACK, (
            f"host process count {count} did not return to baseline {len(self.base_pids)} "
            f"(+{PROC_SLACK} slack for a shared machine)"
        )

    def kill_leftovers(self) -> None:
        for _ in range(3):
            pids = tagged_pids(self.token)
            if not pids:
                return
            for p in pids:
                try:
                    with open(f"/proc/{p}/comm", "rb") as f:  # re-check right before kill
                        if f.read().strip() != self.token.encode():
                            continue
                    os.kill(p, signal.SIGKILL)
                except OSError as e:
                    if e.errno not in (errno.ESRCH, errno.ENOENT):
                        raise
            time.sleep(0.1)


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _describe(pids: list[int]) -> list[str]:
    out = []
    for pid in pids[:10]:
        try:
            p = psutil.Process(pid)
            out.append(f"{pid} ppid={p.ppid()} {p.status()} {' '.join(p.cmdline())[:80]}")
        except psutil.Error:
            out.append(f"{pid} (gone)")
    return out
