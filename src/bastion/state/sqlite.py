"""SQLite event log: the embedded default. WAL mode, one transaction per append.

A committed append survives SIGKILL of the process (WAL + synchronous=NORMAL loses nothing
on a process crash; only an OS crash can drop the last transactions).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Sequence

from bastion.errors import StoreError, UnknownRunError, UserError
from bastion.state.events import Event, RunFinished, RunStarted, RunWaiting, RunResumed, decode
from bastion.state.store import Recorded, RunSummary

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL,
  created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS events (
  run_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, at REAL NOT NULL,
  data TEXT NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID;
"""

_STATUS_OF = {RunStarted: "running", RunResumed: "running", RunWaiting: "waiting"}


def _path_of(url: str) -> str:
    rest = url[len("sqlite://"):]
    if rest in ("", "/", "/:memory:"):
        return ":memory:"
    if not rest.startswith("/"):
        raise UserError(f"store URL {url!r}: write sqlite:///relative.db or sqlite:////abs/path.db")
    return rest[1:]


# One connection per database file and process, kept open: closing the last connection of
# a WAL database checkpoints it (a millisecond per command or run), and every Store on the
# same file shares one lock, so they serialise within the process as they do across them.
_OPEN: dict[str, tuple[sqlite3.Connection, threading.Lock]] = {}
_OPEN_LOCK = threading.Lock()


def _connect(url: str, path: str) -> tuple[sqlite3.Connection, threading.Lock]:
    key = path if path == ":memory:" else os.path.realpath(path)
    with _OPEN_LOCK:
        if path != ":memory:" and key in _OPEN:
            return _OPEN[key]
        fresh = path == ":memory:" or not os.path.exists(path)
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            # a brand-new file holds nothing yet: create it without fsyncs, then be durable
            db.execute("PRAGMA synchronous=OFF" if fresh else "PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript("BEGIN;" + _SCHEMA + "COMMIT;")
            db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:
            raise UserError(f"store {url!r} is not a usable SQLite database: {exc}") from None
        pair = (db, threading.Lock())
        if path != ":memory:":
            _OPEN[key] = pair
        return pair


class SQLiteStore:
    """Store backend on one SQLite file; safe for several processes (approve while waiting)."""

    def __init__(self, url: str) -> None:
        self.url = url
        path = _path_of(url)
        if path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"store {url!r}: cannot create its folder: {exc}") from None
        self._db, self._lock = _connect(url, path)

    def create_run(self, run_id: str, workflow: str, first: Event) -> Recorded:
        now = time.time()
        with self._tx():
            self._db.execute("INSERT INTO runs VALUES (?,?,?,?,?)", (run_id, workflow, "running", now, now))
            return self._insert(run_id, [first], now)[0]

    def append(self, run_id: str, events: Sequence[Event],
               times: Sequence[float] | None = None) -> list[Recorded]:
        if not events:
            return []
        with self._tx():
            return self._insert(run_id, events, time.time(), times)

    def _insert(self, run_id: str, events: Sequence[Event], now: float,
                times: Sequence[float] | None = None) -> list[Recorded]:
        # the primary key makes "last seq of this run" an index lookup; the runs row is
        # touched only when the run's status changes
        row = self._db.execute("SELECT seq FROM events WHERE run_id=? ORDER BY seq DESC LIMIT 1",
                               (run_id,)).fetchone()
        if row is None and not self._has_run(run_id):
            raise UnknownRunError(f"run {run_id!r} is not in the store {self.url}")
        first = (row[0] if row else 0) + 1
        stamps = times if times is not None and len(times) == len(events) else [now] * len(events)
        out = [Recorded(run_id, first + i, at, event) for i, (event, at) in enumerate(zip(events, stamps))]
        self._db.executemany("INSERT INTO events VALUES (?,?,?,?,?)",
                             [(run_id, r.seq, r.event.kind, r.at, r.event.to_json()) for r in out])
        status = None
        for event in events:
            status = event.status if isinstance(event, RunFinished) else _STATUS_OF.get(type(event), status)
        if status is not None:
            self._db.execute("UPDATE runs SET updated_at=?, status=? WHERE run_id=?", (now, status, run_id))
        return out

    def _has_run(self, run_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)).fetchone() is not None

    def _tx(self) -> "_Transaction":
        return _Transaction(self._db, self._lock)

    def events(self, run_id: str, after_seq: int = 0) -> list[Recorded]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, kind, at, data FROM events WHERE run_id=? AND seq>? ORDER BY seq",
                (run_id, after_seq)).fetchall()
        return [Recorded(run_id, seq, at, decode(kind, data)) for seq, kind, at, data in rows]

    def has_run(self, run_id: str) -> bool:
        with self._lock:
            return self._has_run(run_id)

    def runs(self, limit: int = 100) -> list[RunSummary]:
        with self._lock:
            rows = self._db.execute(
                "SELECT run_id, workflow, status, created_at, updated_at FROM runs "
                "ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
        return [RunSummary(*row) for row in rows]

    def close(self) -> None:
        """The connection stays open for the next Store on this file (see `_connect`)."""


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, so concurrent writers (approve, cancel) serialise cleanly."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self._db, self._lock = db, lock

    def __enter__(self) -> None:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._lock.release()
            raise StoreError(f"cannot write the event log: {exc}") from None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self._lock.release()
