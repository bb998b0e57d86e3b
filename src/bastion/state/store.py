"""The Store protocol: an append-only, per-run event log, plus a run index for listing.

Backends: SQLite (embedded default, sqlite.py). Engine code talks only to this protocol.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol, Sequence

from bastion.errors import UserError
from bastion.state.events import Event

DEFAULT_STORE = "sqlite:///./.bastion/bastion.db"


@dataclass(frozen=True)
class Recorded:
    """An event as stored: its run, position in the run's log and time (unix seconds)."""

    run_id: str
    seq: int
    at: float
    event: Event


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    workflow: str
    status: str
    created_at: float
    updated_at: float


class Store(Protocol):
    url: str

    def create_run(self, run_id: str, workflow: str, first: Event) -> Recorded: ...

    def append(self, run_id: str, events: Sequence[Event],
               times: Sequence[float] | None = None) -> list[Recorded]:
        """Append in order; `times` (unix seconds, one per event) default to now."""
        ...

    def events(self, run_id: str, after_seq: int = 0) -> list[Recorded]: ...

    def has_run(self, run_id: str) -> bool: ...

    def runs(self, limit: int = 100) -> list[RunSummary]: ...

    def close(self) -> None: ...


def store_url(explicit: str | None = None) -> str:
    return explicit or os.environ.get("BASTION_STORE") or DEFAULT_STORE


def open_store(url: str | None = None) -> Store:
    """Open the store a URL names; an unknown scheme is a UserError saying what works."""
    url = store_url(url)
    if url.startswith("sqlite://"):
        from bastion.state.sqlite import SQLiteStore

        return SQLiteStore(url)
    raise UserError(f"store URL {url!r} is not supported; use sqlite:///path/to/bastion.db")
