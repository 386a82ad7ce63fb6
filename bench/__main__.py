"""Benchmarks on the embedded stack: fan-out throughput and chain step latency, per fsync setting.

python -m bench                 # 5 runs of each workload, fsync always and default
python -m bench --runs 3 --sync always --json results.json
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import msgspec

from plait.cli.stack import embedded_servers, embedded_services
from plait.client import AsyncClient
from plait.core.events import AttemptStarted, NodeSucceeded
from plait.logging import configure_logging
from plait.settings import load_settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import itertools

from bench import workloads


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def run_once(client: AsyncClient, workflow: Any) -> tuple[float, list[Any]]:
    started = time.perf_counter()
    execution_id = await client.launch(workflow, {"seed": 0})
    state = await client.wait(execution_id, timeout=600)
    wall = time.perf_counter() - started
    if state.status != "succeeded":
        raise RuntimeError(f"{workflow.name} ended {state.status}: {state.error}")
    return wall, [stored async for stored in client.events(execution_id)]


def chain_steps(events: list[Any]) -> tuple[list[float], list[float]]:
    """Per step: node i succeeded → node i+1 succeeded; and the overhead part, node i succeeded → i+1 started."""
    succeeded: dict[str, float] = {}
    started: dict[str, float] = {}
    for stored in events:
        at = stored.decision.at.timestamp()
        for event in stored.decision.events:
            if isinstance(event, NodeSucceeded):
                succeeded[event.node] = at
            elif isinstance(event, AttemptStarted):
                started.setdefault(event.node, at)
    order = ["noop"] + [f"noop-{i}" for i in range(1, workloads.CHAIN)]
    steps = [(succeeded[b] - succeeded[a]) * 1000 for a, b in itertools.pairwise(order)]
    overhead = [(started[b] - succeeded[a]) * 1000 for a, b in itertools.pairwise(order)]
    return steps, overhead


async def bench_stack(sync: str, runs: int, progress: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="plait-bench-") as home:
        settings = load_settings(home=home, nats_sync=sync)
        async with embedded_servers(settings) as info, embedded_services(settings, info):
            async with await AsyncClient.connect(info.nats_url) as client:
                await client.register(workloads.fan_out)
                await client.register(workloads.chain)
                await run_once(client, workloads.chain)  # warm the worker pool
                fan_out_rates, chain_p50, chain_p99, chain_over, chain_walls = [], [], [], [], []
                for run in range(runs):
                    wall, _ = await run_once(client, workloads.fan_out)
                    fan_out_rates.append((workloads.FAN_OUT + 1) / wall)
                    wall, events = await run_once(client, workloads.chain)
                    steps, overhead = chain_steps(events)
                    chain_p50.append(percentile(steps, 0.5))
                    chain_p99.append(percentile(steps, 0.99))
                    chain_over.append(percentile(overhead, 0.5))
                    chain_walls.append(wall)
                    if progress:
                        print(
                            f"  [{sync}] run {run + 1}/{runs}: fan-out {fan_out_rates[-1]:.0f} tasks/s, "
                            f"chain p50 {chain_p50[-1]:.1f} ms",
                            file=sys.stderr,
                        )
    return {
        "sync": sync,
        "runs": runs,
        "fan_out_tasks_per_s": summary(fan_out_rates),
        "chain_step_p50_ms": summary(chain_p50),
        "chain_step_p99_ms": summary(chain_p99),
        "chain_overhead_p50_ms": summary(chain_over),
        "chain_wall_s": summary(chain_walls),
    }


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def print_table(results: list[dict[str, Any]]) -> None:
    rows = [
        ("fan-out 1,000 no-op (tasks/s)", "fan_out_tasks_per_s", "{:.0f}"),
        ("chain 100: step p50 (ms)", "chain_step_p50_ms", "{:.2f}"),
        ("chain 100: step p99 (ms)", "chain_step_p99_ms", "{:.2f}"),
        ("chain 100: succeeded→next started p50 (ms)", "chain_overhead_p50_ms", "{:.2f}"),
        ("chain 100: wall (s)", "chain_wall_s", "{:.2f}"),
    ]
    header = f"{'workload':<46}" + "".join(f"{'fsync ' + r['sync'] + ' (median [min-max])':>34}" for r in results)
    print(header)
    for label, key, fmt in rows:
        cells = []
        for result in results:
            s = result[key]
            cells.append(f"{fmt.format(s['median'])} [{fmt.format(s['min'])}-{fmt.format(s['max'])}]")
        print(f"{label:<46}" + "".join(f"{c:>34}" for c in cells))
    if len(results) == 2:
        a, b = results
        ratio = a["fan_out_tasks_per_s"]["median"] / b["fan_out_tasks_per_s"]["median"]
        print(f"\nfan-out rate, fsync {a['sync']} / fsync {b['sync']}: {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each workload (default 5)")
    parser.add_argument("--sync", choices=["always", "default", "both"], default="both")
    parser.add_argument("--fan-out", type=int, default=workloads.FAN_OUT, help="width of the fan-out")
    parser.add_argument("--chain", type=int, default=workloads.CHAIN, help="length of the chain")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    if (args.fan_out, args.chain) != (workloads.FAN_OUT, workloads.CHAIN):
        workloads.FAN_OUT, workloads.CHAIN = args.fan_out, args.chain
        workloads.fan_out = workloads.workflow(workloads.fan_out.fn)
        workloads.chain = workloads.workflow(workloads.chain.fn)
    configure_logging("json", "warning", file=Path(tempfile.gettempdir()) / "plait-bench.log")
    modes = ["always", "default"] if args.sync == "both" else [args.sync]
    results = []
    for mode in modes:
        print(f"benchmarking with fsync {mode} ({args.runs} runs)...", file=sys.stderr)
        results.append(anyio.run(bench_stack, mode, args.runs, True))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"\nplait {commit or 'unknown'}, {args.runs} runs, local executor, {time.strftime('%Y-%m-%d')}")
    print_table(results)
    if args.json:
        args.json.write_bytes(msgspec.json.encode({"commit": commit, "results": results}))


if __name__ == "__main__":
    main()
