"""Shared test helpers: write workflows and tool modules into a temp folder, run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BASTION = [sys.executable, "-m", "bastion.cli"]

# The workflow of issue 2's "minimal shape": it must keep working exactly as written.
MINIMAL = """
name: example
version: "1"
inputs:
  crm_base_url: {type: string}
  amount: {type: number, default: 10}
tools:
  append_line:
    python: "my_pkg.effects:append_line"
agents:
  analyst:
    persona: "Systems Analyst"
    model: scripted
nodes:
  - id: fetch
    type: tool
    tool: append_line
    args: {path: "/tmp/out.txt", line: "{{ inputs.amount }}"}
  - id: summarise
    type: routine
    agent: analyst
    depends_on: [fetch]
    action: "Summarise {{ nodes.fetch.output }}"
    output: {type: object, properties: {summary: {type: string}}, required: [summary]}
    max_retries: 2
    timeout: 30
  - id: sign_off
    type: approval
    depends_on: [summarise]
    message: "Publish the summary?"
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `bastion ...` in a fresh process, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([*BASTION, *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/bastion.db"
