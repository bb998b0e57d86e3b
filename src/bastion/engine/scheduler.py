"""The event-driven scheduler: ready set, concurrency limit, retries, isolation, invalidation.

A node starts once all its dependencies succeeded; a failure skips only its descendants.
Every transition is appended to the Store and then applied to the in-memory projection, so
what a resumed run rebuilds is what this run saw. Events written by other processes (a
human's approval, a cancel) are picked up by polling the log.

Writing the log is the main cost per node, so events are batched without weakening what the
log promises: `commit` makes events durable before it returns (group commit: every task that
commits in the same loop tick shares one transaction), `defer` queues events that may be lost
in a crash without consequence (a node start, a result that is followed at once by the
node's success), and `emit` writes at once.
"""

from __future__ import annotations

import asyncio
import time
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
from bastion.state.store import Recorded, Store
from bastion.tools import ToolRegistry

POLL_SECONDS = 0.25
_SETTLED = (ev.NodeSucceeded, ev.NodeSkipped, ev.NodeCancelled)


class Scheduler:
    def __init__(self, store: Store, run_id: str, spec: WorkflowSpec, state: RunState) -> None:
        self.store, self.run_id, self.spec, self.state = store, run_id, spec, state
        self._by_id = {n.id: n for n in spec.nodes}
        self._index = {n.id: i for i, n in enumerate(spec.nodes)}
        self._children: dict[str, list[str]] = {n.id: [] for n in spec.nodes}
        for n in spec.nodes:
            for dep in n.depends_on:
                self._children[dep].append(n.id)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._check: set[str] = set(self._by_id)   # nodes whose readiness may have changed
        self._wake = asyncio.Event()
        self._buffer: list[tuple[ev.Event, float]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._flush_scheduled = False
        base_dir = Path(state.base_dir)
        registry = ToolRegistry({k: t.python for k, t in spec.tools.items()},
                                {k for k, t in spec.tools.items() if t.inline}, base_dir)
        gate = Gate(state, registry, commit=self.commit, defer=self.defer)
        self.ctx = RunContext(run_id, spec, state, base_dir, gate, self.emit, state.model_override)

    # -- the log ---------------------------------------------------------------------------
    # Events are applied to the projection when they happen and written in order, with the
    # time they happened; the log and the live state therefore always agree.
    def emit(self, events: Sequence[ev.Event]) -> None:
        """Write now (with everything queued before it)."""
        self.defer(events)
        self._write()

    def defer(self, events: Sequence[ev.Event]) -> None:
        """Queue events for the next write. Safe only for events whose loss in a crash is
        harmless: a node start, a result or success that the next write carries (every
        effect is preceded by a `commit`, so nothing acts on an unwritten success)."""
        now = time.time()
        for event in events:
            self._buffer.append((event, now))
            self._apply(Recorded(self.run_id, 0, now, event))

    async def commit(self, events: Sequence[ev.Event]) -> None:
        """Durable when this returns; commits in the same loop tick share one transaction."""
        self.defer(events)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        await waiter

    def _flush(self) -> None:
        self._flush_scheduled = False
        waiters, self._waiters = self._waiters, []
        try:
            self._write()
        except Exception as exc:  # the store failed: every waiting commit fails with it
            for w in waiters:
                if not w.done():
                    w.set_exception(exc)
            return
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def _write(self) -> None:
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        records = self.store.append(self.run_id, [e for e, _ in batch], [at for _, at in batch])
        if records[0].seq != self.state.last_seq + 1:
            self._catch_up(until=records[0].seq)
        self.state.last_seq = records[-1].seq

    def _apply(self, record: Recorded) -> None:
        self.state.apply(record)
        e = record.event
        if isinstance(e, _SETTLED) or (isinstance(e, ev.NodeFailed) and e.final):
            self._check.update(self._children[e.node])
        elif isinstance(e, ev.ArtifactWritten):
            self._invalidate_consumers(e)

    def _catch_up(self, until: int | None = None) -> None:
        """Apply events other processes appended (approvals, cancel requests)."""
        for record in self.store.events(self.run_id, after_seq=self.state.last_seq):
            if until is not None and record.seq >= until:
                break
            self.state.apply(record)
            if isinstance(record.event, ev.ApprovalDecided):
                self._check.add(record.event.node)
            self._wake.set()

    # -- the loop --------------------------------------------------------------------------
    async def run(self) -> RunState:
        self._recover_interrupted()
        poller = asyncio.create_task(self._poll())
        try:
            while not self.state.cancel_requested:
                self._start_ready()
                if not self._tasks:
                    break
                self._wake.clear()
                await self._wake.wait()
            if self.state.cancel_requested:
                await self._cancel_all()
        finally:
            poller.cancel()
            for task in self._tasks.values():
                task.cancel()
        self._finish()
        return self.state

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            self._write()  # deferred starts become visible to `bastion show` meanwhile
            self._catch_up()

    def _recover_interrupted(self) -> None:
        """Nodes that were running when the process died are run again (same attempt)."""
        for n in self.state.nodes.values():
            if n.status == RUNNING:
                n.status = PENDING
                n.attempts = max(0, n.attempts - 1)

    def _runnable(self, node_id: str) -> bool:
        n = self.state.node(node_id)
        if n.status == PENDING:
            return True
        decision = self.state.approvals.get(node_id)
        return n.status == WAITING and decision is not None and decision.approved is not None

    def _start_ready(self) -> None:
        """Look only at nodes whose dependencies changed; skips cascade, starts respect the limit."""
        while self._check and len(self._tasks) < self.spec.concurrency:
            blocked: set[str] = set()
            for node_id in sorted(self._check, key=self._index.__getitem__):
                self._check.discard(node_id)
                if node_id in self._tasks or not self._runnable(node_id):
                    continue
                node = self._by_id[node_id]
                deps = [self.state.node(d).status for d in node.depends_on]
                if any(s in (FAILED, SKIPPED, CANCELLED) for s in deps):
                    bad = next(d for d, s in zip(node.depends_on, deps) if s in (FAILED, SKIPPED, CANCELLED))
                    self.emit([ev.NodeSkipped(node_id, f"dependency '{bad}' did not succeed")])
                elif all(s == SUCCEEDED for s in deps):
                    if len(self._tasks) < self.spec.concurrency:
                        task = asyncio.create_task(self._run_node(node), name=node_id)
                        task.add_done_callback(lambda _t: self._wake.set())
                        self._tasks[node_id] = task
                    else:
                        blocked.add(node_id)
            self._check |= blocked
            if blocked:
                break

    async def _run_node(self, node: Any) -> None:
        try:
            await self._attempts(node)
        finally:
            if self._tasks.get(node.id) is asyncio.current_task():
                del self._tasks[node.id]

    async def _attempts(self, node: Any) -> None:
        executor = EXECUTORS[node.type]
        retries = getattr(node, "max_retries", 0) if node.type in ("tool", "routine") else 0
        n = self.state.node(node.id)
        attempt = n.attempts if n.status == WAITING and n.attempts else n.attempts + 1  # a decision, not a retry
        while True:
            reads = {d: self.state.artifact_versions.get(d, 1) for d in node.depends_on}
            self.defer([ev.NodeStarted(node.id, attempt, reads)])
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
                await self.commit([ev.NodeFailed(node.id, attempt, message, final)])
                if final:
                    return
                await asyncio.sleep(min(0.1 * 2 ** (attempt - 1), 5.0))
                attempt += 1
                continue
            model = self.ctx.model_for(node.agent) if node.type in ("routine", "adaptive") else None
            self.defer([ev.NodeSucceeded(node.id, attempt, output, model)])
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
        self._check.add(node_id)
        for child in self._children[node_id]:
            if self.state.node(child).status != PENDING:
                self._invalidate(child, f"its dependency '{node_id}' was invalidated")
        self._wake.set()

    # -- the end ---------------------------------------------------------------------------
    async def _cancel_all(self) -> None:
        tasks = dict(self._tasks)
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        self.emit([ev.NodeCancelled(nid, "the run was cancelled") for nid in tasks])
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
