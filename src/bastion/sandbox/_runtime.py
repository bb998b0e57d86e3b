"""Find the interpreter the sandbox runs and the few host paths it needs, read-only.

The sandbox's root is empty; only the interpreter binary, its standard library, its
extension modules and the system's shared-library directories are bound into it. Asking
the interpreter itself (once, cached) keeps this correct for Debian's python3, a pyenv
build or a venv's base interpreter without hard-coding a layout.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from dataclasses import dataclass

from bastion.errors import SandboxUnavailable

_QUERY = (
    "import json,os,sys,sysconfig as s;"
    "v=s.get_config_var;p=s.get_paths();"
    "lib=os.path.join(v('LIBDIR') or '',v('INSTSONAME') or '');"
    "print(json.dumps({'exe':os.path.realpath(sys.executable),'stdlib':p['stdlib'],"
    "'platstdlib':p['platstdlib'],'dynload':v('DESTSHARED') or '',"
    "'libpython':lib if os.path.isfile(lib) else ''}))"
)
_SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
_SYSTEM_LIBDIRS = ("/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64",
                   "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu")


@dataclass(frozen=True)
class Runtime:
    """Paths to bind read-only (at the same place) and symlinks to recreate inside."""

    python: str  # real path of the interpreter, as the sandbox sees it too
    binds: tuple[str, ...]
    symlinks: tuple[tuple[str, str], ...]  # (target, link path)


def default_python() -> str:
    """A system python3 rather than our venv's: the sandbox must not see the project."""
    found = shutil.which("python3", path="/usr/bin:/bin:/usr/local/bin")
    if found is None:
        raise SandboxUnavailable("no python3 found in /usr/bin, /bin or /usr/local/bin")
    return found


@functools.lru_cache(maxsize=8)
def discover(python: str | None = None) -> Runtime:
    """Ask `python` where its runtime lives; SandboxUnavailable if it cannot answer."""
    exe = python or default_python()
    try:
        out = subprocess.run(
            [exe, "-I", "-S", "-c", _QUERY], capture_output=True, timeout=20, env={}, check=True
        ).stdout
        info: dict[str, str] = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        raise SandboxUnavailable(f"cannot inspect interpreter {exe}: {e}") from e
    binds: list[str] = []

    def add(path: str) -> None:
        if path and os.path.exists(path):
            real = os.path.realpath(path)
            if not any(real == b or real.startswith(b + "/") for b in binds):
                binds.append(real)

    add(info["exe"])
    for d in _SYSTEM_LIBDIRS:  # before libpython, which usually lives in one: one mount less
        add(d)
    for key in ("stdlib", "platstdlib", "dynload", "libpython"):
        add(info[key])
    symlinks: list[tuple[str, str]] = []
    for link in _SYSTEM_LINKS:
        if os.path.islink(link):
            symlinks.append((os.readlink(link), link))
    real_exe = info["exe"]
    for name in ("python3", "python"):
        alias = os.path.join(os.path.dirname(real_exe), name)
        if alias != real_exe:
            symlinks.append((real_exe, alias))
    if os.path.dirname(real_exe) != "/usr/bin":
        symlinks.append((real_exe, "/usr/bin/python3"))
    return Runtime(python=real_exe, binds=tuple(binds), symlinks=tuple(symlinks))
