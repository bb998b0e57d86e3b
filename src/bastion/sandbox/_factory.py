"""`create_sandbox`: pick a backend that this host can really provide, or refuse.

The probe decides (not configuration, not hope): the bwrap backend when its probe passes
the required layers, else the fallback backend when *its* probe does, else
SandboxUnavailable. There is no third option that runs code unsandboxed.
"""

from __future__ import annotations

from bastion.errors import SandboxError, SandboxUnavailable
from bastion.sandbox._base import check_required
from bastion.sandbox._probe import ProbeReport, probe
from bastion.sandbox._types import ALL_LAYERS, DEFAULT_REQUIRE, Sandbox


def _validate_require(require: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    req = tuple(require)
    unknown = [r for r in req if r not in ALL_LAYERS]
    if unknown:
        raise SandboxError(f"unknown sandbox layer(s) in require: {', '.join(unknown)}; "
                           f"known: {', '.join(ALL_LAYERS)}")
    return req


def create_sandbox(warm_pool: bool = False,
                   require: tuple[str, ...] | list[str] = DEFAULT_REQUIRE, *,
                   backend: str = "auto", python: str | None = None,
                   pool_size: int = 2) -> Sandbox:
    """Return a Sandbox whose verified layers include every one in `require`.

    backend: "auto" (bwrap, else fallback), "bwrap" or "fallback".
    warm_pool: keep `pool_size` sandboxes started ahead (bwrap only) so a short script
    skips interpreter start-up. Raises SandboxUnavailable when no backend qualifies.
    """
    req = _validate_require(require)
    if backend not in ("auto", "bwrap", "fallback"):
        raise SandboxError(f"unknown sandbox backend {backend!r}; use auto, bwrap or fallback")
    candidates = ["bwrap", "fallback"] if backend == "auto" else [backend]
    reasons: list[str] = []
    for name in candidates:
        report: ProbeReport = probe(name, python)
        try:
            check_required(req, report.layers, name)
        except SandboxUnavailable as e:
            detail = report.details.get("error") or "; ".join(
                f"{k}: {v}" for k, v in report.details.items())
            reasons.append(f"{e}" + (f" ({detail})" if detail else ""))
            continue
        verified = tuple(report.layers)
        if name == "bwrap":
            from bastion.sandbox._bwrap import BwrapSandbox

            if warm_pool:
                from bastion.sandbox._pool import WarmPoolSandbox

                return WarmPoolSandbox(python=python, require=req, verified=verified,
                                       size=pool_size)
            return BwrapSandbox(python=python, require=req, verified=verified)
        from bastion.sandbox._fallback import FallbackSandbox

        return FallbackSandbox(python=python, require=req, verified=verified)
    raise SandboxUnavailable("no sandbox backend provides the required layers: "
                             + " | ".join(reasons))
