"""The event-driven scheduler: ready set, concurrency limit, retries, isolation, invalidation.

A node starts once all its dependencies succeeded; a failure skips only its descendants.
Every transition is appended to the Store first and then applied to the in-memory
projection, so what a resumed run rebuilds is what this run saw. Events written by other
processes (a human's approval, a cancel) are picked up by polling the log.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Sequence

from bastion.engine.context import NodeWaiting, RunContext
from bastion.engine.executors import EXECUTORS
from bastion.errors import BastionError, NodeTimeout
from bastion.governance import Gate
from bastion.spec.models import WorkflowSpec
from bastion.state import events as ev
from bastion.state.projection import (CANCELLED, FAILED, PENDING, RUNNING, SKIPPED, SUCCEEDED,
                                      WAITING, RunState)
from bastion.state.store import Store
from bastion.tools import ToolRegistry

POLL_SECONDS = 0.25


class Scheduler:
    def __init__(self, store: Store, run_id: str, spec: WorkflowSpec, state: RunState) -> None:
        self.store, self.run_id, self.spec, self.state = store, run_id, spec, state
        self._by_id = {n.id: n for n in spec.nodes}
        self._children: dict[str, list[str]] = {n.id: [] for n in spec.nodes}
        for n in spec.nodes:
            for dep in n.depends_on:
                self._children[dep].append(n.id)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        base_dir = Path(state.base_dir)
        registry = ToolRegistry({k: t.python for k, t in spec.tools.items()}, base_dir)
        self.ctx = RunContext(run_id, spec, state, base_dir, Gate(state, registry, self.emit), self.emit,
                              state.model_override)

    # -- the log ---------------------------------------------------------------------------
    def emit(self, events: Sequence[ev.Event]) -> None:
        records = self.store.append(self.run_id, events)
        if records and records[0].seq != self.state.last_seq + 1:
            self._catch_up(until=records[0].seq)
        for record in records:
            self.state.apply(record)
            if isinstance(record.event, ev.ArtifactWritten):
                self._invalidate_consumers(record.event)

    def _catch_up(self, until: int | None = None) -> None:
        """Apply events other processes appended (approvals, cancel requests)."""
        for record in self.store.events(self.run_id, after_seq=self.state.last_seq):
            if until is not None and record.seq >= until:
                break
            self.state.apply(record)
            self._wake.set()

    # -- the loop --------------------------------------------------------------------------
    async def run(self) -> RunState:
        self._recover_interrupted()
        poller = asyncio.create_task(self._poll())
        try:
            while True:
                if self.state.cancel_requested:
                    await self._cancel_all()
                    break
                self._start_ready()
                if not self._tasks:
                    break
                self._wake.clear()
                waiter = asyncio.create_task(self._wake.wait())
                await asyncio.wait([waiter, *self._tasks.values()], return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                for node_id, task in list(self._tasks.items()):
                    if task.done():
                        del self._tasks[node_id]
        finally:
            poller.cancel()
            for task in self._tasks.values():
                task.cancel()
        self._finish()
        return self.state

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            self._catch_up()

    def _recover_interrupted(self) -> None:
        """Nodes that were running when the process died are run again (same attempt)."""
        for node_id, n in self.state.nodes.items():
            if n.status == RUNNING:
                n.status = PENDING
                n.attempts = max(0, n.attempts - 1)

    def _start_ready(self) -> None:
        progressed = True
        while progressed:
            progressed = False
            for node in self.spec.nodes:
                n = self.state.node(node.id)
                runnable = n.status == PENDING or (
                    n.status == WAITING and (a := self.state.approvals.get(node.id)) is not None
                    and a.approved is not None)
                if not runnable or node.id in self._tasks:
                    continue
                deps = [self.state.node(d).status for d in node.depends_on]
                if any(s in (FAILED, SKIPPED, CANCELLED) for s in deps):
                    bad = next(d for d in node.depends_on if self.state.node(d).status in (FAILED, SKIPPED, CANCELLED))
                    self.emit([ev.NodeSkipped(node.id, f"dependency '{bad}' did not succeed")])
                    progressed = True
                elif all(s == SUCCEEDED for s in deps) and len(self._tasks) < self.spec.concurrency:
                    self._tasks[node.id] = asyncio.create_task(self._run_node(node), name=node.id)

    async def _run_node(self, node: Any) -> None:
        executor = EXECUTORS[node.type]
        retries = getattr(node, "max_retries", 0) if node.type in ("tool", "routine") else 0
        n = self.state.node(node.id)
        attempt = n.attempts if n.status == WAITING and n.attempts else n.attempts + 1  # a decision, not a retry
        while True:
            reads = {d: self.state.artifact_versions.get(d, 1) for d in node.depends_on}
            self.emit([ev.NodeStarted(node.id, attempt, reads)])
            try:
                if node.timeout:
                    try:
                        output = await asyncio.wait_for(executor(self.ctx, node, attempt), node.timeout)
                    except asyncio.TimeoutError:
                        raise NodeTimeout(f"timed out after {node.timeout:g}s") from None
                else:
                    output = await executor(self.ctx, node, attempt)
            except NodeWaiting:
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure of one node stays in its branch
                message = str(exc) if isinstance(exc, BastionError) else f"{type(exc).__name__}: {exc}"
                final = attempt > retries
                self.emit([ev.NodeFailed(node.id, attempt, message, final)])
                if final:
                    return
                await asyncio.sleep(min(0.1 * 2 ** (attempt - 1), 5.0))
                attempt += 1
                continue
            model = self.ctx.model_for(node.agent) if node.type in ("routine", "adaptive") else None
            self.emit([ev.NodeSucceeded(node.id, attempt, output, model)])
            return

    # -- invalidation (DESIGN rule 3) --------------------------------------------------------
    def _invalidate_consumers(self, written: ev.ArtifactWritten) -> None:
        stale = [nid for nid in self._children.get(written.artifact, [])
                 if nid != written.by and self.state.node(nid).status in (RUNNING, SUCCEEDED, FAILED)
                 and self.state.node(nid).reads.get(written.artifact, 0) < written.version]
        for nid in stale:
            self._invalidate(nid, f"read version {self.state.node(nid).reads.get(written.artifact)} of "
                                  f"'{written.artifact}'; version {written.version} was written by '{written.by}'")

    def _invalidate(self, node_id: str, reason: str) -> None:
        task = self._tasks.pop(node_id, None)
        if task is not None:
            task.cancel()
        self.emit([ev.NodeInvalidated(node_id, reason)])
        for child in self._children[node_id]:
            if self.state.node(child).status not in (PENDING,):
                self._invalidate(child, f"its dependency '{node_id}' was invalidated")
        self._wake.set()

    # -- the end ---------------------------------------------------------------------------
    async def _cancel_all(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self.emit([ev.NodeCancelled(nid, "the run was cancelled") for nid in self._tasks])
        self._tasks.clear()

    def _finish(self) -> None:
        statuses = {nid: self.state.node(nid).status for nid in self._by_id}
        if self.state.cancel_requested:
            self.emit([ev.RunFinished("cancelled")])
        elif any(s == WAITING for s in statuses.values()):
            self.emit([ev.RunWaiting([nid for nid, s in statuses.items() if s == WAITING])])
        elif all(s == SUCCEEDED for s in statuses.values()):
            self.emit([ev.RunFinished("succeeded")])
        else:
            self.emit([ev.RunFinished("failed")])
