"""What every backend does the same way: validate a request, check required layers.

Kept apart from the launchers so that the fail-closed rule (a required layer that is not
in force means no execution at all) is written once.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass

from bastion.errors import SandboxError, SandboxUnavailable
from bastion.sandbox._types import ALL_LAYERS, ExecResult, SandboxLimits

WORKDIR = "/work"
MAX_FILES = 256

# The only environment the sandboxed code sees; nothing is inherited from the host.
ENV_ALLOWLIST: dict[str, str] = {
    "PATH": "/usr/bin:/bin",
    "HOME": WORKDIR,
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONIOENCODING": "utf-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "PWD": WORKDIR,  # bwrap sets it on --chdir; listed so the allowlist check is exact
}


@dataclass(frozen=True)
class Request:
    """A validated execution request: files to place, the argv to run, bytes for stdin."""

    files: dict[str, bytes]
    argv: list[str]
    stdin: bytes | None
    limits: SandboxLimits
    runs_main: bool = False  # `code` was given without argv: the program is main.py


class RunsRequests:
    """The public `run()` every backend shares: validate the arguments, then `execute`."""

    _closed: bool

    def _python(self) -> str:
        raise NotImplementedError

    async def execute(self, req: Request) -> ExecResult:
        raise NotImplementedError

    async def run(self, code: str | None = None, *, files: dict[str, str] | None = None,
                  argv: list[str] | None = None, stdin: bytes | str | None = None,
                  input_json: object = None, timeout: float = 5.0, memory_mb: int = 256,
                  pids: int = 64) -> ExecResult:
        if self._closed:
            raise SandboxError("sandbox is closed")
        limits = SandboxLimits(timeout=timeout, memory_mb=memory_mb, pids=pids)
        return await self.execute(build_request(code, files, argv, stdin, input_json, limits,
                                                self._python()))


def _check_name(name: str) -> str:
    norm = posixpath.normpath(name)
    if (not name or name.startswith("/") or norm.startswith("..") or "\x00" in name
            or norm in (".", "")):
        raise SandboxError(f"file name must be relative and inside the workdir: {name!r}")
    return norm


def build_request(code: str | None, files: dict[str, str] | None, argv: list[str] | None,
                  stdin: bytes | str | None, input_json: object, limits: SandboxLimits,
                  python: str) -> Request:
    """Turn the public `run()` arguments into a Request, or raise SandboxError."""
    placed: dict[str, bytes] = {}
    for name, text in (files or {}).items():
        placed[_check_name(name)] = text.encode("utf-8")
    if code is not None:
        placed["main.py"] = code.encode("utf-8")
    if len(placed) > MAX_FILES:
        raise SandboxError(f"at most {MAX_FILES} files per execution")
    if sum(len(v) for v in placed.values()) > limits.disk_mb * 1024 * 1024:
        raise SandboxError("files are larger than the sandbox disk limit")
    if argv is None:
        if code is None:
            raise SandboxError("run() needs `code` or `argv`")
        run_argv = [python, "-E", "-s", "main.py"]  # not -I: main.py may import its siblings
    else:
        if not argv or not all(isinstance(a, str) and "\x00" not in a for a in argv):
            raise SandboxError("argv must be a non-empty list of strings")
        run_argv = list(argv)
    if stdin is not None and input_json is not None:
        raise SandboxError("pass either stdin or input_json, not both")
    data: bytes | None
    if input_json is not None:
        try:
            data = json.dumps(input_json).encode("utf-8")
        except (TypeError, ValueError) as e:
            raise SandboxError(f"input_json is not JSON-serialisable: {e}") from e
    elif isinstance(stdin, str):
        data = stdin.encode("utf-8")
    else:
        data = stdin
    return Request(placed, run_argv, data, limits.validated(), runs_main=argv is None)


def check_required(require: tuple[str, ...], have: set[str] | list[str] | tuple[str, ...],
                   backend: str) -> None:
    """Fail closed: refuse when any required layer is not in force."""
    unknown = [r for r in require if r not in ALL_LAYERS]
    if unknown:
        raise SandboxError(f"unknown sandbox layer(s) required: {', '.join(unknown)}; "
                           f"known: {', '.join(ALL_LAYERS)}")
    missing = [r for r in require if r not in have]
    if missing:
        raise SandboxUnavailable(
            f"sandbox backend {backend!r} cannot provide required layer(s): "
            f"{', '.join(missing)}; refusing to run (fail closed)")
