"""Orchestration overhead per node: Bastion (durable SQLite event log) vs LangGraph.

What is measured
----------------
Every workflow node does nothing; what remains is the orchestrator's own cost per node.

Shapes (N = --sizes):
  chain    N nodes in sequence (n0 -> n1 -> ... -> nN-1)                    N nodes
  fanout   one root, N parallel branches depending on it, one join           N+2 nodes

Systems:
  bastion       `Workflow.load(path)` before the clock; timed: `asyncio.run(wf.run(store=
                "sqlite:///<fresh file>"))`: event loop, store open + schema, the run, store
                close. Nodes are `tool` nodes calling `noop_tools:noop` (a sync function, run
                through the Gate, argument validation and a worker thread like any tool).
                Every node appends node_started, tool_call_started, tool_call_finished and
                node_succeeded, each in its own SQLite transaction (WAL, synchronous=NORMAL).
                Fan-outs set `concurrency: N` so all branches may run at once.
  lg_mem        LangGraph StateGraph compiled without a checkpointer (pure in-memory),
                `graph.invoke(...)` (sync). Nodes are sync functions returning a small update.
  lg_sqlite     LangGraph with `SqliteSaver` on a fresh file per run, as shipped: WAL with
                SQLite's default synchronous=FULL, LangGraph's default durability="async".
                Timed: sqlite3.connect, SqliteSaver(conn) (its schema setup runs lazily inside
                the run), `graph.invoke(..., {"configurable": {"thread_id": ...}})`, close.
  lg_sqlite_nrm Same, but with `PRAGMA synchronous=NORMAL` on the connection, the setting
                Bastion's log uses, for a like-for-like durability comparison.

Graph construction (YAML parsing and validation for Bastion, `StateGraph.compile()` for
LangGraph) happens before the clock. The LangGraph fan-out uses add_edge(root, b_i) and
add_edge(b_i, join) for every branch; branches append to an `Annotated[list, operator.add]`
channel so parallel updates merge; the join runs once, in the superstep after the branches.
Chain nodes write a plain int channel, so checkpoints stay constant-size. The recursion
limit is raised to N+10 (LangGraph's limit counts supersteps; a chain has N of them).

Reported: for each case the best and the median of --repeat timed runs (after one untimed
warm-up run of every case, all in this one process), as total ms and µs per executed node.
"marginal" is (T(N) - T(base)) / (nodes(N) - nodes(base)) using the best times, where the
base is the same shape with 1 node (chain) or 1 branch (fan-out); it subtracts the fixed
per-run costs (event loop, store/schema, run bookkeeping) that a per-node figure of small
workflows otherwise includes.

Targets (issue 2, §7), shown next to the ratios, never asserted: Bastion per node at most
1/10 of LangGraph+SqliteSaver, and no slower than LangGraph in memory.

Usage:  .venv/bin/python bench/overhead.py [--sizes 100,1000] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import operator
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, TypedDict

SYSTEMS = ("bastion", "lg_mem", "lg_sqlite", "lg_sqlite_nrm")
LABELS = {
    "bastion": "Bastion (SQLite log)",
    "lg_mem": "LangGraph (memory)",
    "lg_sqlite": "LangGraph+SqliteSaver",
    "lg_sqlite_nrm": "LangGraph+SqliteSaver sync=NORMAL",
}
SHAPES = ("chain", "fanout")

NOOP_TOOLS = '''"""No-op tool for bench/overhead.py."""


def noop(x: int = 0) -> int:
    return x
'''


def node_count(shape: str, n: int) -> int:
    return n if shape == "chain" else n + 2


# ---------------------------------------------------------------------------------------
# Bastion
# ---------------------------------------------------------------------------------------
def bastion_yaml(shape: str, n: int) -> str:
    lines = [f"name: bench_{shape}_{n}", 'version: "1"']
    if shape == "fanout":
        lines.append(f"concurrency: {max(8, n)}")
    lines += ["tools:", '  noop: {python: "noop_tools:noop", inline: true}', "nodes:"]
    if shape == "chain":
        for i in range(n):
            deps = f", depends_on: [n{i - 1}]" if i else ""
            lines.append(f"  - {{id: n{i}, type: tool, tool: noop{deps}}}")
    else:
        lines.append("  - {id: root, type: tool, tool: noop}")
        for i in range(n):
            lines.append(f"  - {{id: n{i}, type: tool, tool: noop, depends_on: [root]}}")
        branches = ", ".join(f"n{i}" for i in range(n))
        lines.append(f"  - {{id: join, type: tool, tool: noop, depends_on: [{branches}]}}")
    return "\n".join(lines) + "\n"


def make_bastion(workdir: Path, shape: str, n: int) -> Callable[[], None]:
    from bastion import Workflow

    path = workdir / f"{shape}_{n}.yaml"
    path.write_text(bastion_yaml(shape, n), encoding="utf-8")
    wf = Workflow.load(path)  # parsing + validation: before the clock
    counter = iter(range(10**9))
    expected = node_count(shape, n)

    def run() -> None:
        db = workdir / f"b_{shape}_{n}_{next(counter)}.db"
        result = asyncio.run(wf.run(store=f"sqlite:///{db}"))
        if result.status != "succeeded" or len(result.nodes) != expected:
            raise RuntimeError(f"bastion {shape} {n}: run ended {result.status!r}")

    return run


# ---------------------------------------------------------------------------------------
# LangGraph
# ---------------------------------------------------------------------------------------
class State(TypedDict, total=False):
    i: int                                       # chain steps overwrite it (constant size)
    hits: Annotated[list[int], operator.add]     # fan-out branches append; updates merge


def _step(state: State) -> dict[str, Any]:
    return {"i": 1}


def _branch(state: State) -> dict[str, Any]:
    return {"hits": [1]}


def lg_builder(shape: str, n: int) -> Any:
    from langgraph.graph import END, START, StateGraph

    g = StateGraph(State)
    if shape == "chain":
        prev = START
        for k in range(n):
            g.add_node(f"n{k}", _step)
            g.add_edge(prev, f"n{k}")
            prev = f"n{k}"
        g.add_edge(prev, END)
    else:
        g.add_node("root", _step)
        g.add_node("join", _step)
        g.add_edge(START, "root")
        for k in range(n):
            g.add_node(f"n{k}", _branch)
            g.add_edge("root", f"n{k}")
            g.add_edge(f"n{k}", "join")
        g.add_edge("join", END)
    return g


def _check_lg(out: Any, shape: str, n: int) -> None:
    if out.get("i") != 1 or (shape == "fanout" and len(out.get("hits", ())) != n):
        raise RuntimeError(f"langgraph {shape} {n}: unexpected final state")


def make_lg_mem(workdir: Path, shape: str, n: int) -> Callable[[], None]:
    graph = lg_builder(shape, n).compile()
    config = {"recursion_limit": n + 10}

    def run() -> None:
        _check_lg(graph.invoke({"i": 0, "hits": []}, config), shape, n)

    return run


def make_lg_sqlite(workdir: Path, shape: str, n: int, synchronous: str | None) -> Callable[[], None]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    # compile with a checkpointer (so compile-time handling sees one), then bind a fresh
    # saver on a fresh file for every timed run; swapping the attribute costs nothing
    placeholder = sqlite3.connect(":memory:", check_same_thread=False)
    graph = lg_builder(shape, n).compile(checkpointer=SqliteSaver(placeholder))
    placeholder.close()
    counter = iter(range(10**9))
    tag = "lgs" if synchronous is None else "lgn"

    def run() -> None:
        k = next(counter)
        conn = sqlite3.connect(str(workdir / f"{tag}_{shape}_{n}_{k}.db"), check_same_thread=False)
        try:
            if synchronous is not None:
                conn.execute(f"PRAGMA synchronous={synchronous}")
            graph.checkpointer = SqliteSaver(conn)
            config = {"recursion_limit": n + 10, "configurable": {"thread_id": f"t{k}"}}
            _check_lg(graph.invoke({"i": 0, "hits": []}, config), shape, n)
        finally:
            conn.close()

    return run


FACTORIES: dict[str, Callable[[Path, str, int], Callable[[], None]]] = {
    "bastion": make_bastion,
    "lg_mem": make_lg_mem,
    "lg_sqlite": lambda w, s, n: make_lg_sqlite(w, s, n, None),
    "lg_sqlite_nrm": lambda w, s, n: make_lg_sqlite(w, s, n, "NORMAL"),
}


# ---------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------
@dataclass
class Case:
    system: str
    shape: str
    size: int
    nodes: int
    times: list[float] = field(default_factory=list)  # seconds

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def timed(fn: Callable[[], None]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(systems: list[str], shapes: list[str], sizes: list[int], repeat: int,
            workdir: Path, log: Callable[[str], None]) -> dict[tuple[str, str, int], Case]:
    cases: dict[tuple[str, str, int], Case] = {}
    runners: dict[tuple[str, str, int], Callable[[], None]] = {}
    all_sizes = sorted({1, *sizes})  # 1 = the base used for the marginal per-node cost
    for system in systems:
        for shape in shapes:
            for size in all_sizes:
                key = (system, shape, size)
                runners[key] = FACTORIES[system](workdir, shape, size)
                cases[key] = Case(system, shape, size, node_count(shape, size))
    log(f"warming up {len(runners)} cases ...")
    for fn in runners.values():
        fn()
    # round-robin the repeats so slow drift (page cache, CPU clocks) hits every case alike
    for r in range(repeat):
        log(f"round {r + 1}/{repeat} ...")
        for key, fn in runners.items():
            cases[key].times.append(timed(fn))
    return cases


def marginal(cases: dict[tuple[str, str, int], Case], system: str, shape: str, size: int) -> float | None:
    base, big = cases.get((system, shape, 1)), cases.get((system, shape, size))
    if base is None or big is None or big.nodes == base.nodes:
        return None
    return (big.best - base.best) / (big.nodes - base.nodes)


# ---------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------
def report(cases: dict[tuple[str, str, int], Case], systems: list[str], shapes: list[str],
           sizes: list[int], repeat: int) -> dict[str, Any]:
    rows = []
    for shape in shapes:
        for size in sizes:
            for system in systems:
                c = cases[(system, shape, size)]
                m = marginal(cases, system, shape, size)
                rows.append({
                    "shape": shape, "size": size, "nodes": c.nodes, "system": system,
                    "best_ms": c.best * 1e3, "median_ms": c.median * 1e3,
                    "us_per_node_best": c.best * 1e6 / c.nodes,
                    "us_per_node_median": c.median * 1e6 / c.nodes,
                    "marginal_us_per_node": None if m is None else m * 1e6,
                    "times_ms": [t * 1e3 for t in c.times],
                })
    fixed = {f"{system}/{shape}": cases[(system, shape, 1)].best * 1e3
             for system in systems for shape in shapes}
    ratios = []
    if "bastion" in systems:
        for shape in shapes:
            for size in sizes:
                b = cases[("bastion", shape, size)]
                entry: dict[str, Any] = {"shape": shape, "size": size}
                for other, target in (("lg_sqlite", 0.1), ("lg_sqlite_nrm", 0.1), ("lg_mem", 1.0)):
                    if other not in systems:
                        continue
                    o = cases[(other, shape, size)]
                    mb, mo = marginal(cases, "bastion", shape, size), marginal(cases, other, shape, size)
                    entry[f"vs_{other}"] = {
                        "ratio_best": b.best / o.best,
                        "ratio_median": b.median / o.median,
                        "ratio_marginal": (mb / mo) if mb and mo and mo > 0 else None,
                        "target": target,
                        "met": b.best / o.best <= target,
                    }
                ratios.append(entry)
    return {
        "measured": __doc__.split("What is measured", 1)[1].split("Usage:", 1)[0].strip() if __doc__ else "",
        "environment": {
            "python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "langgraph": _version("langgraph"),
            "langgraph_checkpoint_sqlite": _version("langgraph-checkpoint-sqlite"),
            "bastion": _version("bastion"), "sqlite": sqlite3.sqlite_version,
        },
        "repeat": repeat, "rows": rows, "fixed_cost_ms_best": fixed, "ratios": ratios,
    }


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def print_table(data: dict[str, Any], systems: list[str]) -> None:
    env = data["environment"]
    print("Orchestrator overhead per node (no-op nodes), all systems measured in this process")
    print(f"python {env['python']} · {env['platform']} · {env['cpus']} CPUs · sqlite {env['sqlite']} · "
          f"langgraph {env['langgraph']} · langgraph-checkpoint-sqlite {env['langgraph_checkpoint_sqlite']}")
    print(f"best / median of {data['repeat']} runs after one warm-up; LangGraph via sync graph.invoke(); "
          "see the module docstring for what is timed")
    print()
    w = max(len(LABELS[s]) for s in systems)
    head = (f"{'shape':<7} {'N':>5} {'nodes':>5}  {'system':<{w}}  {'best ms':>9} {'med ms':>9}  "
            f"{'µs/node best':>12} {'µs/node med':>11}  {'marginal µs/node':>16}")
    print(head)
    print("-" * len(head))
    last = None
    for r in data["rows"]:
        if last is not None and (r["shape"], r["size"]) != last:
            print()
        last = (r["shape"], r["size"])
        m = "-" if r["marginal_us_per_node"] is None else f"{r['marginal_us_per_node']:.1f}"
        print(f"{r['shape']:<7} {r['size']:>5} {r['nodes']:>5}  {LABELS[r['system']]:<{w}}  "
              f"{r['best_ms']:>9.1f} {r['median_ms']:>9.1f}  {r['us_per_node_best']:>12.1f} "
              f"{r['us_per_node_median']:>11.1f}  {m:>16}")
    print()
    print("fixed cost per run (best ms of the 1-node chain / 1-branch fan-out): " + ", ".join(
        f"{k} {v:.2f}" for k, v in data["fixed_cost_ms_best"].items()))
    if not data["ratios"]:
        return
    print()
    print("Bastion ÷ other, per node (lower is better; target shown, not asserted)")
    head = f"{'shape':<7} {'N':>5}  {'vs':<{w}}  {'best':>7} {'median':>7} {'marginal':>8}  {'target':>7}  verdict"
    print(head)
    print("-" * len(head))
    for entry in data["ratios"]:
        for other in ("lg_sqlite", "lg_sqlite_nrm", "lg_mem"):
            v = entry.get(f"vs_{other}")
            if v is None:
                continue
            mr = "-" if v["ratio_marginal"] is None else f"{v['ratio_marginal']:.3f}"
            target = "≤ 1/10" if v["target"] == 0.1 else "≤ 1"
            verdict = "met" if v["met"] else "MISSED"
            print(f"{entry['shape']:<7} {entry['size']:>5}  {LABELS[other]:<{w}}  {v['ratio_best']:>7.3f} "
                  f"{v['ratio_median']:>7.3f} {mr:>8}  {target:>7}  {verdict}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    ap.add_argument("--sizes", default="100,1000", help="comma-separated N (default 100,1000)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per case (default 3)")
    ap.add_argument("--shapes", default=",".join(SHAPES), help="chain,fanout")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help=",".join(SYSTEMS))
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (workflows, databases)")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    bad = [s for s in shapes if s not in SHAPES] + [s for s in systems if s not in SYSTEMS]
    if bad or args.repeat < 1 or not sizes or min(sizes) < 1:
        ap.error(f"bad arguments {bad or ''}; shapes: {SHAPES}, systems: {SYSTEMS}, sizes ≥ 1, repeat ≥ 1")

    workdir = Path(tempfile.mkdtemp(prefix="bastion-bench-"))
    (workdir / "noop_tools.py").write_text(NOOP_TOOLS, encoding="utf-8")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        cases = measure(systems, shapes, sizes, args.repeat, workdir, log)
        data = report(cases, systems, shapes, sizes, args.repeat)
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print_table(data, systems)
    return 0


if __name__ == "__main__":
    sys.exit(main())
