"""The `bastion` command. User mistakes print one line and exit 2, never a traceback.

Exit codes: 0 succeeded, 1 failed (or cancelled), 2 usage or user error, 3 waiting for a human.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from bastion import views
from bastion.engine import load_run, result_of, resume_run, start_run
from bastion.errors import BastionError, SpecError, UserError
from bastion.spec import load_spec
from bastion.state import events as ev
from bastion.state import open_store

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Bastion: run LLM agent workflows safely — sandboxed code, one gate, a durable log.")
STORE = typer.Option(None, "--store", help="Store URL (default $BASTION_STORE or sqlite:///./.bastion/bastion.db)")
JSON = typer.Option(False, "--json", help="Print one JSON object instead of tables.")
EXIT = {"succeeded": 0, "failed": 1, "cancelled": 1, "waiting": 3, "running": 1}


def _guard(fn: Callable[[], int]) -> None:
    """Run a command body; map Bastion errors to one line and an exit code."""
    try:
        code = fn()
    except SpecError as exc:
        for line in exc.problems:
            typer.echo(line, err=True)
        raise typer.Exit(2) from None
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except BastionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("interrupted; `bastion resume RUN` continues the run", err=True)
        raise typer.Exit(130) from None
    raise typer.Exit(code)


@app.command()
def validate(file: Path = typer.Argument(..., help="workflow.yaml")) -> None:
    """Check a workflow file; print FILE:LINE:COL: message per problem."""
    def body() -> int:
        spec = load_spec(file).spec
        kinds: dict[str, int] = {}
        for node in spec.nodes:
            kinds[node.type] = kinds.get(node.type, 0) + 1
        summary = ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))
        typer.echo(f"{file}: valid — workflow '{spec.name}' v{spec.version}, {len(spec.nodes)} nodes ({summary}), "
                   f"{len(spec.agents)} agents, {len(spec.tools)} tools")
        return 0
    _guard(body)


def _parse_inputs(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--input {pair!r}: write --input NAME=VALUE")
        out[key] = value
    return out


def _report(store: Any, run_id: str, as_json: bool) -> int:
    """Print a run (JSON or tables); return the exit code its status maps to."""
    state, spec = load_run(store, run_id)
    result = result_of(state, spec)
    if as_json:
        typer.echo(result.to_json())
    else:
        views.print_result(result, state)
    return EXIT.get(result.status, 1)


@app.command()
def run(file: Path = typer.Argument(..., help="workflow.yaml"),
        input: list[str] = typer.Option([], "--input", "-i", help="NAME=VALUE, repeatable"),
        store: Optional[str] = STORE,
        model: Optional[str] = typer.Option(None, "--model", help="Use this model for every agent, e.g. scripted"),
        as_json: bool = JSON) -> None:
    """Run a workflow. Exit 0 succeeded, 1 failed, 3 waiting for a human."""
    def body() -> int:
        loaded = load_spec(file)
        inputs = _parse_inputs(input)
        db = open_store(store)
        run_id = uuid.uuid4().hex[:12]
        asyncio.run(views.with_progress(start_run(loaded, db, inputs, model=model, run_id=run_id),
                                        db, run_id, loaded.spec, enabled=not as_json))
        return _report(db, run_id, as_json)
    _guard(body)


@app.command()
def resume(run_id: str, store: Optional[str] = STORE, as_json: bool = JSON) -> None:
    """Continue a run after a crash or a human decision; recorded effects are not repeated."""
    def body() -> int:
        db = open_store(store)
        _, spec = load_run(db, run_id)
        asyncio.run(views.with_progress(resume_run(db, run_id), db, run_id, spec, enabled=not as_json))
        return _report(db, run_id, as_json)
    _guard(body)


@app.command()
def runs(store: Optional[str] = STORE, as_json: bool = JSON) -> None:
    """List runs, newest first."""
    def body() -> int:
        rows = open_store(store).runs()
        if as_json:
            typer.echo(json.dumps({"runs": [r.__dict__ for r in rows]}))
        else:
            views.print_runs(rows)
        return 0
    _guard(body)


@app.command()
def show(run_id: str, store: Optional[str] = STORE, as_json: bool = JSON) -> None:
    """Show one run: its nodes, their outputs and approvals."""
    def body() -> int:
        _report(open_store(store), run_id, as_json)
        return 0
    _guard(body)


@app.command()
def approvals(store: Optional[str] = STORE, as_json: bool = JSON) -> None:
    """List approvals waiting for a human."""
    def body() -> int:
        db = open_store(store)
        pending = []
        for summary in db.runs(limit=1000):
            if summary.status not in ("waiting", "running"):
                continue
            state, _ = load_run(db, summary.run_id)
            pending += [{"run_id": summary.run_id, "workflow": summary.workflow, "node": a.node,
                         "message": a.message, "requested_at": a.requested_at}
                        for a in state.approvals.values() if a.approved is None]
        if as_json:
            typer.echo(json.dumps({"approvals": pending}))
        else:
            views.print_approvals(pending)
        return 0
    _guard(body)


def _decide(run_id: str, node: str, approved: bool, by: Optional[str], reason: str, store: Optional[str]) -> int:
    db = open_store(store)
    state, _ = load_run(db, run_id)
    request = state.approvals.get(node)
    if request is None:
        waiting = [a.node for a in state.approvals.values() if a.approved is None]
        raise UserError(f"run {run_id} has no approval request for node {node!r}"
                        + (f"; waiting: {', '.join(waiting)}" if waiting else "; nothing is waiting"))
    if request.approved is not None:
        raise UserError(f"node {node!r} of run {run_id} was already "
                        f"{'approved' if request.approved else 'denied'} by {request.by}")
    who = by or getpass.getuser()
    db.append(run_id, [ev.ApprovalDecided(node, approved, who, reason)])
    typer.echo(f"{'approved' if approved else 'denied'} {run_id}/{node} as {who}; "
               f"`bastion resume {run_id}` continues the run")
    return 0


@app.command()
def approve(run_id: str, node: str, by: Optional[str] = typer.Option(None, "--by"),
            reason: str = typer.Option("", "--reason"), store: Optional[str] = STORE) -> None:
    """Approve a waiting node."""
    _guard(lambda: _decide(run_id, node, True, by, reason, store))


@app.command()
def deny(run_id: str, node: str, by: Optional[str] = typer.Option(None, "--by"),
         reason: str = typer.Option("", "--reason"), store: Optional[str] = STORE) -> None:
    """Deny a waiting node (it fails; its descendants are skipped)."""
    _guard(lambda: _decide(run_id, node, False, by, reason, store))


@app.command()
def cancel(run_id: str, store: Optional[str] = STORE) -> None:
    """Cancel a run: a running process stops it; a waiting run is closed now."""
    def body() -> int:
        db = open_store(store)
        state, _ = load_run(db, run_id)
        if state.status in ("succeeded", "failed", "cancelled"):
            raise UserError(f"run {run_id} already {state.status}")
        batch: list[ev.Event] = [ev.RunCancelRequested()]
        if state.status == "waiting":
            batch.append(ev.RunFinished("cancelled"))
        db.append(run_id, batch)
        typer.echo(f"cancel requested for {run_id}")
        return 0
    _guard(body)


@app.command()
def demo(store: Optional[str] = STORE, as_json: bool = JSON) -> None:
    """Run the CRM integration example end to end against a local staging API."""
    from bastion.demo import run_demo

    _guard(lambda: run_demo(store, as_json))


def _mount_sandbox() -> None:
    try:
        from bastion.sandbox.cli import app as sandbox_app
    except ImportError:
        return
    app.add_typer(sandbox_app, name="sandbox", help="Probe and use the sandbox for generated code.")


_mount_sandbox()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
