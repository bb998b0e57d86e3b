"""The `sandbox` CLI sub-app: exit codes 0 / 1 / 2 and JSON output."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from bastion.sandbox.cli import app

from .conftest import needs_bwrap

runner = CliRunner()


@needs_bwrap
def test_run_json_and_exit_codes(tmp_path: Path) -> None:
    ok = tmp_path / "ok.py"
    ok.write_text("print('hi')")
    res = runner.invoke(app, ["run", str(ok), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["stdout"] == "hi\n" and "filesystem" in data["layers"]
    bad = tmp_path / "bad.py"
    bad.write_text("raise SystemExit(5)")
    assert runner.invoke(app, ["run", str(bad)]).exit_code == 1
    res = runner.invoke(app, ["run", str(tmp_path / "missing.py")])
    assert res.exit_code == 2 and "Traceback" not in res.output


@needs_bwrap
def test_probe_json() -> None:
    res = runner.invoke(app, ["probe", "--json"])
    assert res.exit_code == 0
    data = json.loads(res.stdout)
    assert {b["backend"] for b in data["backends"]} == {"bwrap", "fallback"}
    bwrap = next(b for b in data["backends"] if b["backend"] == "bwrap")
    assert bwrap["details"]["launcher"] in ("vfork", "exec-chain", "preexec")
