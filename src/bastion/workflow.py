"""The Python API: `Workflow.load(path)` then `await workflow.run(inputs=..., store=...)`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bastion.engine import RunResult, result_of, resume_run, start_run
from bastion.spec import LoadedSpec, load_spec
from bastion.state import open_store


class Workflow:
    def __init__(self, loaded: LoadedSpec) -> None:
        self.loaded = loaded

    @classmethod
    def load(cls, path: str | Path) -> "Workflow":
        return cls(load_spec(path))

    @property
    def name(self) -> str:
        return self.loaded.spec.name

    async def run(self, inputs: dict[str, Any] | None = None, store: str | None = None,
                  model: str | None = None, run_id: str | None = None) -> RunResult:
        db = open_store(store)
        try:
            state = await start_run(self.loaded, db, inputs, model=model, run_id=run_id)
            return result_of(state, self.loaded.spec)
        finally:
            db.close()

    async def resume(self, run_id: str, store: str | None = None) -> RunResult:
        db = open_store(store)
        try:
            return result_of(await resume_run(db, run_id), self.loaded.spec)
        finally:
            db.close()
