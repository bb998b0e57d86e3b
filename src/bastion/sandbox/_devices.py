"""The sandbox's /dev as one bind mount instead of bubblewrap's `--dev` (six of them).

bubblewrap's `--dev` builds /dev from a tmpfs, a devpts instance and one bind mount per
device node; each bind mount makes bwrap re-read the mount table, which here costs about
0.7 ms of every cold start. When we are root we can instead make, once per process, a
directory holding the same five nodes (null, zero, full, random, urandom) and the usual
/proc/self/fd symlinks, and bind that whole directory: one mount. A size-capped tmpfs
goes on /dev/shm. What the sandbox loses against `--dev`: /dev/tty (it has no controlling
terminal anyway, `--new-session`) and a private devpts (no pseudo-terminals).

The directory is root's, mode 0755, and so are the nodes' names: code running as the
sandbox uid cannot add, remove or replace anything in it. It lives in a fresh
`mkdtemp` directory, is checked by opening its nodes (a filesystem mounted `nodev` would
refuse them; then `--dev` is used) and is removed when the process exits.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import stat
import tempfile

# name -> (major, minor): the character devices of bwrap's --dev, but for tty
_NODES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8),
          "urandom": (1, 9)}
_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
          "stderr": "/proc/self/fd/2"}


def _safe_parent(path: str) -> bool:
    """Only root may rename or replace what is in `path` (a TMPDIR another user could
    write to would let them swap our directory for theirs between two runs)."""
    st = os.stat(path)
    return st.st_uid == 0 and (not st.st_mode & 0o022 or bool(st.st_mode & stat.S_ISVTX))


def _make() -> str:
    parent = tempfile.gettempdir()
    if not _safe_parent(parent):
        raise OSError(f"{parent} is writable by others without the sticky bit")
    d = tempfile.mkdtemp(prefix="bastion-dev-", dir=parent)
    try:
        for name, (major, minor) in _NODES.items():
            path = os.path.join(d, name)
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
            os.chmod(path, 0o666)  # mknod applies the umask
        for name, target in _LINKS.items():
            os.symlink(target, os.path.join(d, name))
        os.mkdir(os.path.join(d, "shm"), 0o755)  # a tmpfs is mounted here, inside only
        os.chmod(d, 0o755)  # bwrap runs as the sandbox uid and must reach it
        with open(os.path.join(d, "null"), "wb", buffering=0) as f:  # EACCES if nodev
            f.write(b"x")
        with open(os.path.join(d, "urandom"), "rb", buffering=0) as f:
            if len(f.read(8)) != 8:
                raise OSError("urandom node gave no bytes")
    except BaseException:
        shutil.rmtree(d, ignore_errors=True)
        raise
    atexit.register(shutil.rmtree, d, True)
    return d


@functools.lru_cache(maxsize=1)
def device_dir() -> str | None:
    """The prepared /dev directory, or None (not root, or nodes unusable here)."""
    if os.geteuid() != 0:
        return None
    try:
        return _make()
    except OSError:
        return None


def dev_args(shm_bytes: int) -> list[str]:
    """bwrap arguments that give the sandbox its /dev."""
    d = device_dir()
    if d is None:
        return ["--dev", "/dev"]
    return ["--dev-bind", d, "/dev", "--perms", "01777", "--size", str(shm_bytes),
            "--tmpfs", "/dev/shm"]
