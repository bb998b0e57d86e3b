"""Terminal views for the CLI (rich): a live progress table and result summaries."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from typing import Any, Awaitable, TypeVar

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from bastion.engine.runner import RunResult
from bastion.state.projection import RunState

T = TypeVar("T")
_STYLE = {"succeeded": "green", "failed": "red", "skipped": "yellow", "waiting": "magenta",
          "running": "cyan", "cancelled": "red", "pending": "dim"}
console = Console(highlight=False)


async def with_progress(work: Awaitable[T], store: Any, run_id: str, spec: Any, enabled: bool) -> T:
    """Await `work`, showing a live node table when stdout is a terminal."""
    if not (enabled and sys.stdout.isatty()):
        return await work
    task = asyncio.ensure_future(work)
    state = RunState(run_id)
    with Live(console=console, refresh_per_second=8, transient=True) as live:
        while not task.done():
            for record in store.events(run_id, after_seq=state.last_seq):  # only what is new
                state.apply(record)
            live.update(_progress_table(state, spec))
            await asyncio.wait([task], timeout=0.15)
    return task.result()


def _progress_table(state: RunState, spec: Any) -> Table:
    table = Table(title=f"run {state.run_id} — {state.workflow}")
    for col in ("node", "type", "status", "attempts"):
        table.add_column(col)
    for node in spec.nodes:
        n = state.node(node.id)
        table.add_row(node.id, node.type, f"[{_STYLE.get(n.status, '')}]{n.status}", str(n.attempts))
    return table


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%H:%M:%S") if ts else "-"


def _preview(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def print_result(result: RunResult, state: RunState) -> None:
    table = Table(title=f"run {result.run_id} — {result.workflow}")
    for col in ("node", "status", "attempts", "started", "finished", "output / error"):
        table.add_column(col, overflow="fold")
    for node_id, n in result.nodes.items():
        shown = escape(n.error if n.error else _preview(n.output))
        if n.model == "scripted":
            shown = "[dim](scripted)[/dim] " + shown
        table.add_row(node_id, f"[{_STYLE.get(n.status, '')}]{n.status}", str(n.attempts),
                      _when(n.started_at), _when(n.finished_at), shown)
    console.print(table)
    for approval in state.approvals.values():
        if approval.approved is None:
            console.print(f"[magenta]waiting[/]: {approval.node}: {escape(approval.message)}\n"
                          f"  bastion approve {result.run_id} {approval.node} --by NAME   "
                          f"(or deny), then bastion resume {result.run_id}")
        else:
            verdict = "approved" if approval.approved else "denied"
            console.print(f"{approval.node}: {verdict} by {approval.by}"
                          + (f" ({escape(approval.reason)})" if approval.reason else ""))
    console.print(f"run {result.run_id} [{_STYLE.get(result.status, '')}]{result.status}[/]")


def print_runs(rows: list[Any]) -> None:
    table = Table(title="runs")
    for col in ("run", "workflow", "status", "created", "updated"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.run_id, r.workflow, f"[{_STYLE.get(r.status, '')}]{r.status}", _when(r.created_at),
                      _when(r.updated_at))
    console.print(table if rows else "no runs yet")


def print_approvals(pending: list[dict[str, Any]]) -> None:
    if not pending:
        console.print("no approvals waiting")
        return
    table = Table(title="approvals waiting")
    for col in ("run", "workflow", "node", "message"):
        table.add_column(col, overflow="fold")
    for p in pending:
        table.add_row(p["run_id"], p["workflow"], p["node"], escape(p["message"]))
    console.print(table)
