"""The sandbox room: run generated code contained, and say which layers were in force.

Public API (the engine and the CLI use only these names):

    sb = create_sandbox(warm_pool=False, require=("network", "pids", "memory", "filesystem"))
    result = await sb.run(code="print(1)", timeout=5)   # -> ExecResult
    await sb.aclose()
    report = probe()                                     # which layers work on this host
"""

from __future__ import annotations

from bastion.sandbox._factory import create_sandbox
from bastion.sandbox._probe import ProbeReport, probe
from bastion.sandbox._types import (
    ALL_LAYERS,
    DEFAULT_REQUIRE,
    ExecResult,
    Sandbox,
    SandboxLimits,
)

__all__ = [
    "ALL_LAYERS",
    "DEFAULT_REQUIRE",
    "ExecResult",
    "ProbeReport",
    "Sandbox",
    "SandboxLimits",
    "create_sandbox",
    "probe",
]
