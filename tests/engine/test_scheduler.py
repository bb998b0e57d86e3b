"""The scheduler: parallelism seen in timestamps, failure isolation, limits, retries, timeouts."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path


from bastion import Workflow
from tests.conftest import write

HERE = Path(__file__).parent


def workflow(tmp_path: Path, body: str, concurrency: int = 8) -> Workflow:
    shutil.copy(HERE / "fx_tools.py", tmp_path / "fx_tools.py")
    header = f"""
name: t
concurrency: {concurrency}
tools:
  stamp: {{python: "fx_tools:sleep_and_stamp"}}
  record: {{python: "fx_tools:record"}}
  sleep: {{python: "fx_tools:async_sleep"}}
  fail_times: {{python: "fx_tools:fail_times"}}
  boom: {{python: "fx_tools:boom"}}
  echo: {{python: "fx_tools:echo"}}
  not_json: {{python: "fx_tools:not_json"}}
nodes:
"""
    return Workflow.load(write(tmp_path, "wf.yaml", header + body))


def stamp(node_id: str, path: Path, seconds: float = 0.4, deps: str = "[]") -> str:
    return (f"  - {{id: {node_id}, type: tool, tool: stamp, depends_on: {deps}, "
            f"args: {{path: '{path}', label: {node_id}, seconds: {seconds}}}}}\n")


async def test_independent_nodes_run_in_parallel(tmp_path: Path, store_url: str) -> None:
    log = tmp_path / "stamps"
    body = stamp("a", log) + stamp("b", log) + stamp("c", log) + stamp("d", log, 0.05, "[a, b, c]")
    result = await workflow(tmp_path, body).run(store=store_url)
    assert result.status == "succeeded"
    out = {k: v.output for k, v in result.nodes.items()}
    starts = [out[k]["start"] for k in "abc"]
    ends = [out[k]["end"] for k in "abc"]
    assert max(starts) < min(ends), "a, b and c should overlap in time"
    assert out["d"]["start"] >= max(ends), "d starts only after all its dependencies ended"


async def test_concurrency_limit_is_respected(tmp_path: Path, store_url: str) -> None:
    log = tmp_path / "stamps"
    body = "".join(stamp(f"n{i}", log, 0.2) for i in range(6))
    result = await workflow(tmp_path, body, concurrency=2).run(store=store_url)
    assert result.status == "succeeded"
    spans = [(v.output["start"], v.output["end"]) for v in result.nodes.values()]
    for start, _ in spans:
        running = sum(1 for s, e in spans if s <= start < e)
        assert running <= 2
    assert max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans) == 2


async def test_a_failure_skips_only_its_descendants(tmp_path: Path, store_url: str) -> None:
    log = tmp_path / "stamps"
    body = ("  - {id: bad, type: tool, tool: boom}\n"
            "  - {id: after_bad, type: tool, tool: echo, depends_on: [bad], args: {value: 1}}\n"
            "  - {id: deeper, type: tool, tool: echo, depends_on: [after_bad], args: {value: 1}}\n"
            + stamp("good", log, 0.2) + stamp("after_good", log, 0.05, "[good]"))
    result = await workflow(tmp_path, body).run(store=store_url)
    nodes = result.nodes
    assert result.status == "failed"
    assert nodes["bad"].status == "failed" and "ValueError: kaboom" in nodes["bad"].error
    assert nodes["after_bad"].status == "skipped" and nodes["deeper"].status == "skipped"
    assert nodes["good"].status == "succeeded" and nodes["after_good"].status == "succeeded"


async def test_retries_with_backoff_then_success(tmp_path: Path, store_url: str) -> None:
    counter = tmp_path / "counter"
    body = f"  - {{id: flaky, type: tool, tool: fail_times, max_retries: 2, args: {{counter: '{counter}', times: 2}}}}\n"
    result = await workflow(tmp_path, body).run(store=store_url)
    assert result.status == "succeeded"
    assert result.nodes["flaky"].attempts == 3
    assert result.nodes["flaky"].output == "ok after 2 failures"


async def test_retries_exhausted_fails(tmp_path: Path, store_url: str) -> None:
    counter = tmp_path / "counter"
    body = f"  - {{id: flaky, type: tool, tool: fail_times, max_retries: 1, args: {{counter: '{counter}', times: 5}}}}\n"
    result = await workflow(tmp_path, body).run(store=store_url)
    assert result.nodes["flaky"].status == "failed"
    assert result.nodes["flaky"].attempts == 2
    assert "transient failure 2" in result.nodes["flaky"].error


async def test_timeout_fails_the_node(tmp_path: Path, store_url: str) -> None:
    body = ("  - {id: slow, type: tool, tool: sleep, timeout: 0.2, args: {seconds: 5}}\n"
            "  - {id: fast, type: tool, tool: sleep, args: {seconds: 0.01}}\n")
    started = asyncio.get_running_loop().time()
    result = await workflow(tmp_path, body).run(store=store_url)
    assert asyncio.get_running_loop().time() - started < 3
    assert result.nodes["slow"].status == "failed" and "timed out after 0.2s" in result.nodes["slow"].error
    assert result.nodes["fast"].status == "succeeded"


async def test_invalid_tool_arguments_fail_clearly(tmp_path: Path, store_url: str) -> None:
    body = ("  - {id: wrong, type: tool, tool: echo, args: {value: not-a-number}}\n"
            "  - {id: extra, type: tool, tool: echo, args: {value: 1, other: 2}}\n"
            "  - {id: weird, type: tool, tool: not_json}\n")
    result = await workflow(tmp_path, body).run(store=store_url)
    assert "got invalid arguments: value" in result.nodes["wrong"].error
    assert "other" in result.nodes["extra"].error
    assert "not JSON" in result.nodes["weird"].error


async def test_templates_pass_native_values_between_nodes(tmp_path: Path, store_url: str) -> None:
    body = ("  - {id: one, type: tool, tool: echo, args: {value: 41}}\n"
            "  - {id: two, type: tool, tool: echo, depends_on: [one], args: {value: '{{ nodes.one.output + 1 }}'}}\n")
    result = await workflow(tmp_path, body).run(store=store_url)
    assert result.nodes["two"].output == 42


async def test_idempotency_keys_differ_per_call_and_are_recorded(tmp_path: Path, store_url: str) -> None:
    effects = tmp_path / "effects"
    body = "".join(f"  - {{id: r{i}, type: tool, tool: record, args: {{path: '{effects}', label: r{i}}}}}\n"
                   for i in range(3))
    result = await workflow(tmp_path, body).run(store=store_url)
    assert result.status == "succeeded"
    keys = [line.split('"key": "')[1][:32] for line in effects.read_text().splitlines()]
    assert len(set(keys)) == 3 and all(len(k) == 32 for k in keys)


async def test_cancel_from_another_writer_stops_the_run(tmp_path: Path, store_url: str) -> None:
    from bastion.state import events as ev
    from bastion.state import open_store

    body = ("  - {id: long, type: tool, tool: sleep, args: {seconds: 30}}\n"
            "  - {id: later, type: tool, tool: echo, depends_on: [long], args: {value: 1}}\n")
    wf = workflow(tmp_path, body)
    task = asyncio.create_task(wf.run(store=store_url, run_id="to-cancel"))
    await asyncio.sleep(0.5)
    other = open_store(store_url)
    other.append("to-cancel", [ev.RunCancelRequested("test")])
    result = await asyncio.wait_for(task, 5)
    assert result.status == "cancelled"
    assert result.nodes["long"].status == "cancelled"
    assert result.nodes["later"].status == "pending"


async def test_the_live_result_equals_the_state_rebuilt_from_the_log(tmp_path: Path, store_url: str) -> None:
    from bastion.engine import load_run, result_of
    from bastion.state import open_store

    counter, log = tmp_path / "counter", tmp_path / "stamps"
    body = (stamp("a", log, 0.05) + stamp("b", log, 0.05)
            + f"  - {{id: flaky, type: tool, tool: fail_times, max_retries: 1, depends_on: [a], "
              f"args: {{counter: '{counter}', times: 1}}}}\n"
            + "  - {id: bad, type: tool, tool: boom, depends_on: [b]}\n"
            + "  - {id: after, type: tool, tool: echo, depends_on: [bad], args: {value: 1}}\n"
            + "  - {id: gate, type: approval, depends_on: [flaky], message: 'ok?'}\n")
    live = await workflow(tmp_path, body).run(store=store_url)
    state, spec = load_run(open_store(store_url), live.run_id)
    assert result_of(state, spec).to_dict() == live.to_dict()
    assert live.status == "waiting" and live.nodes["flaky"].attempts == 2
