"""Plain data shared by every sandbox backend: limits in, results out, the layer names.

Kept separate from the backends so the engine (and the red-team suite) can import the
result type and the protocol without pulling in bubblewrap or cgroup code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol, runtime_checkable

# Layer names. A layer is listed in ExecResult.layers only if it was in force for that
# execution; `probe()` reports which of them this host can provide at all.
NETWORK = "network"  # own network namespace: no interface but loopback
PIDS = "pids"  # cgroup pids limit (fork bombs); RLIMIT_NPROC does nothing for root
MEMORY = "memory"  # cgroup memory limit (OOM kill inside the sandbox only)
FILESYSTEM = "filesystem"  # own mount namespace, runtime read-only, tmpfs workdir only
PID_NS = "pid-namespace"  # own pid namespace: cannot see or signal host processes
IPC_NS = "ipc-namespace"
UTS_NS = "uts-namespace"
CGROUP_NS = "cgroup-namespace"
USER_NS = "user-namespace"
UNPRIVILEGED = "unprivileged-uid"  # the code's uid on the host is not root
NO_NEW_PRIVS = "no-new-privs"
CAPS_DROPPED = "capabilities-dropped"
SECCOMP = "seccomp"
RLIMITS = "rlimits"  # CPU, address space, file size, open files, core=0
ENV_ALLOWLIST = "env-allowlist"
WALL_CLOCK = "wall-clock-kill"  # the timeout kills every descendant (whole cgroup)

ALL_LAYERS: tuple[str, ...] = (
    NETWORK, PIDS, MEMORY, FILESYSTEM, PID_NS, IPC_NS, UTS_NS, CGROUP_NS, USER_NS,
    UNPRIVILEGED, NO_NEW_PRIVS, CAPS_DROPPED, SECCOMP, RLIMITS, ENV_ALLOWLIST, WALL_CLOCK,
)
DEFAULT_REQUIRE: tuple[str, ...] = (NETWORK, PIDS, MEMORY, FILESYSTEM)

KILL_REASONS = ("timeout", "memory", "pids", "output", "disk")


@dataclass(frozen=True)
class SandboxLimits:
    """Per-execution limits. Defaults suit a short generated script."""

    timeout: float = 5.0  # wall clock, seconds
    memory_mb: int = 256  # cgroup memory limit
    pids: int = 64  # cgroup pids limit (tasks, threads included)
    disk_mb: int = 64  # tmpfs size of the workdir (and RLIMIT_FSIZE)
    output_bytes: int = 1 << 20  # per stream; more kills the run ("output")
    open_files: int = 256
    cpu_seconds: int | None = None  # RLIMIT_CPU; default: ceil(timeout) + 1

    def validated(self) -> SandboxLimits:
        """Reject nonsense before any process starts (callers pass user input here)."""
        from bastion.errors import SandboxError

        if not (0 < self.timeout <= 3600):
            raise SandboxError(f"timeout must be in (0, 3600] seconds, got {self.timeout}")
        if not (16 <= self.memory_mb <= 1 << 20):
            raise SandboxError(f"memory_mb must be >= 16, got {self.memory_mb}")
        if not (4 <= self.pids <= 1 << 16):
            raise SandboxError(f"pids must be >= 4, got {self.pids}")
        if not (1 <= self.disk_mb <= 1 << 16):
            raise SandboxError(f"disk_mb must be >= 1, got {self.disk_mb}")
        if self.output_bytes < 1024:
            raise SandboxError("output_bytes must be >= 1024")
        return self


@dataclass
class ExecResult:
    """What one execution did. `layers` lists the isolation actually in force for it."""

    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool
    killed_reason: str | None
    duration_ms: float
    layers: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.killed_reason is None

    def to_dict(self) -> dict[str, object]:
        """JSON-safe: strings are already decoded with replacement, no bytes remain."""
        return asdict(self)


@runtime_checkable
class Sandbox(Protocol):
    """Runs untrusted code under limits. The engine depends on this, never on a backend."""

    backend: str
    layers: tuple[str, ...]

    async def run(
        self,
        code: str | None = None,
        *,
        files: dict[str, str] | None = None,
        argv: list[str] | None = None,
        stdin: bytes | str | None = None,
        input_json: object = None,
        timeout: float = 5.0,
        memory_mb: int = 256,
        pids: int = 64,
    ) -> ExecResult: ...

    async def aclose(self) -> None: ...
