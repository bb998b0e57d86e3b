"""`bastion sandbox ...`: probe this host's isolation layers, run a file in the sandbox.

Mounted by the main CLI with `app.add_typer(sandbox_app, name="sandbox")`. Exit codes:
0 ok, 1 the sandboxed program failed (or was killed), 2 a user error (one line, no
traceback) — including a refused execution because a required layer is missing.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from bastion.errors import BastionError
from bastion.sandbox._factory import create_sandbox
from bastion.sandbox._probe import probe as probe_layers
from bastion.sandbox._types import ALL_LAYERS, DEFAULT_REQUIRE, ExecResult

app = typer.Typer(help="Run code contained and report which isolation layers are in force.",
                  no_args_is_help=True)


def _fail(message: str) -> typer.Exit:
    typer.echo("error: " + " ".join(message.split()), err=True)
    return typer.Exit(2)


@app.command()
def probe(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Test which isolation layers each backend provides on this host."""
    try:
        reports = [probe_layers("bwrap"), probe_layers("fallback")]
    except BastionError as e:
        raise _fail(str(e)) from None
    if json_out:
        typer.echo(json.dumps({"require_default": list(DEFAULT_REQUIRE),
                               "backends": [r.to_dict() for r in reports]}, indent=2))
        return
    table = Table(title="sandbox layers on this host")
    table.add_column("layer")
    for r in reports:
        table.add_column(r.backend or "?")
    for layer in ALL_LAYERS:
        cells = ["yes" if layer in r.layers else "NO" for r in reports]
        table.add_row(layer + (" *" if layer in DEFAULT_REQUIRE else ""), *cells)
    Console().print(table)
    for r in reports:
        for key, why in r.details.items():
            typer.echo(f"{r.backend}: {key}: {why}")
    typer.echo("* required by default")


@app.command()
def run(
    file: Path = typer.Argument(..., help="Python file to run as main.py in the sandbox."),
    timeout: float = typer.Option(5.0, "--timeout", help="Wall-clock limit, seconds."),
    memory: int = typer.Option(256, "--memory", help="Memory limit, MB."),
    pids: int = typer.Option(64, "--pids", help="Process/thread limit."),
    json_out: bool = typer.Option(False, "--json", help="Print the ExecResult as JSON."),
) -> None:
    """Run FILE in a fresh sandbox (exit 1 if the program fails or is killed)."""
    try:
        code = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise _fail(f"cannot read {file}: {e}") from None
    try:
        result = asyncio.run(_run(code, timeout, memory, pids))
    except BastionError as e:
        raise _fail(str(e)) from None
    if json_out:
        typer.echo(json.dumps(result.to_dict()))
    else:
        typer.echo(result.stdout, nl=False)
        typer.echo(result.stderr, nl=False, err=True)
        status = (f"killed: {result.killed_reason}" if result.killed_reason
                  else f"exit {result.exit_code}")
        typer.echo(f"[{status}, {result.duration_ms:.0f} ms; layers: "
                   f"{', '.join(result.layers)}]", err=True)
    if not result.ok:
        raise typer.Exit(1)


async def _run(code: str, timeout: float, memory: int, pids: int) -> ExecResult:
    sb = create_sandbox(warm_pool=False)
    try:
        return await sb.run(code, timeout=timeout, memory_mb=memory, pids=pids)
    finally:
        await sb.aclose()
