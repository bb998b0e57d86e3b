"""`bastion demo`: the CRM integration builder end to end, offline, in one command.

It starts the staging CRM (v2 contract) on a free 127.0.0.1 port, runs
examples/crm_integration/workflow.yaml with the scripted model, approves the sign-off as
`demo` (recorded as such in the log), resumes, and prints what happened.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from bastion.engine import load_run, result_of, resume_run, start_run
from bastion.errors import UserError
from bastion.spec import load_spec
from bastion.state import events as ev
from bastion.state import open_store

console = Console(highlight=False)


def example_dir() -> Path:
    root = Path(__file__).resolve().parents[2]
    folder = root / "examples" / "crm_integration"
    if not (folder / "workflow.yaml").is_file():
        raise UserError(f"the demo needs the repository checkout: {folder}/workflow.yaml is missing")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return folder


def run_demo(store_url: str | None, as_json: bool) -> int:
    folder = example_dir()
    from examples.crm_integration.staging_crm import create_app, serve

    loaded = load_spec(folder / "workflow.yaml")
    store = open_store(store_url)
    run_id = "demo-" + uuid.uuid4().hex[:8]
    out_dir = Path(".bastion") / "demo" / run_id
    with serve(create_app(schema_version="v2")) as base_url:
        if not as_json:
            console.print(f"[bold]staging CRM[/] (contract v2: customer_tier required) at {base_url}")
        inputs = {"crm_base_url": base_url, "out_dir": str(out_dir)}
        state = asyncio.run(start_run(loaded, store, inputs, run_id=run_id))
        if state.status == "waiting":
            for node in [a.node for a in state.approvals.values() if a.approved is None]:
                store.append(run_id, [ev.ApprovalDecided(node, True, "demo", "approved by `bastion demo`")])
            state = asyncio.run(resume_run(store, run_id))
    state, spec = load_run(store, run_id)
    result = result_of(state, spec)
    if as_json:
        print(result.to_json())
    else:
        _narrate(store, run_id, result.status, out_dir)
    return 0 if result.status == "succeeded" else 1


def _narrate(store: Any, run_id: str, status: str, out_dir: Path) -> None:
    """Tell the story of the run from its event log."""
    console.print(f"\n[bold]run {run_id}[/] — what the event log recorded:")
    for record in store.events(run_id):
        e = record.event
        line = _describe(e)  # user text inside is escaped there
        if line:
            console.print("  " + line)
    colour = "green" if status == "succeeded" else "red"
    console.print(f"\nrun {run_id} [{colour}]{status}[/]; published to {out_dir}/")
    if out_dir.is_dir():
        for path in sorted(out_dir.iterdir()):
            console.print(f"  {path}")
    console.print(f"see it again: bastion show {run_id}    every event: bastion show {run_id} --json")


def _describe(e: ev.Event) -> str | None:
    if isinstance(e, ev.NodeSucceeded):
        tag = " [dim](scripted model)[/]" if e.model == "scripted" else ""
        return f"[green]✓[/] {e.node}{tag}"
    if isinstance(e, ev.NodeFailed):
        return f"[red]✗[/] {e.node} attempt {e.attempt}: {escape(e.error)}"
    if isinstance(e, ev.SandboxExecuted):
        layers = ", ".join(e.result.get("layers", []))
        return f"  sandbox ran the mapper: exit {e.result.get('exit_code')} (layers: {layers})"
    if isinstance(e, ev.ToolCallFinished) and isinstance(e.result, dict) and "status" in e.result:
        body = e.result.get("body")
        return f"  POST /users → {e.result['status']}" + (f" {escape(json.dumps(body)[:120])}" if body else "")
    if isinstance(e, ev.ArtifactWritten):
        return f"[cyan]↻[/] {e.by} rewrote {e.artifact} → version {e.version}: {escape(e.rationale[:140])}"
    if isinstance(e, ev.NodeInvalidated):
        return f"[yellow]⟲[/] {e.node} invalidated: {escape(e.reason)}"
    if isinstance(e, ev.ApprovalRequested):
        return f"[magenta]?[/] {e.node}: {escape(e.message)}"
    if isinstance(e, ev.ApprovalDecided):
        return f"[magenta]{'approved' if e.approved else 'denied'}[/] {e.node} by {e.by}"
    return None
