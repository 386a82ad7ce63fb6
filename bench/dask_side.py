"""The Dask distributed side of `python -m bench --compare dask`: the fan-out, the chain and the DAG files on a
small LocalCluster (one worker process, two threads, no dashboard), as Dask comes; then the fan-out and the DAG
files again on a cluster that sends every ready task to the worker at once (``worker-saturation: inf``). Run with a
Python that has distributed; prints one JSON object.

As Dask comes (``worker-saturation`` 1.1), the tasks of a large group with few dependencies ("root-ish": a fan-out's)
wait on the scheduler and go to the worker as its threads free up, which costs a no-op fan-out two thirds of its
throughput on this host; a group that depends on itself is not root-ish, so the chain steps its own function: were
it ``noop``, every later fan-out of ``noop`` would be sent at once, and the figures of one cluster would mix both.

python bench/dask_side.py --fan-out 1000 --chain 100 --runs 5 --dags bench/dags/montage-1000.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import dask
from distributed import Client, LocalCluster, get_task_stream


def noop(x: int) -> int:
    return x


def step(x: int) -> int:
    return x


def join(*values: int) -> int:
    return len(values)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def fan_out(client: Client, width: int) -> dict[str, float]:
    started = time.perf_counter()
    futures = client.map(noop, range(width), pure=False)
    client.submit(join, *futures, pure=False).result()
    wall = time.perf_counter() - started
    return {"tasks_per_s": (width + 1) / wall, "wall_s": wall}


def chain(client: Client, length: int) -> dict[str, float]:
    """The whole chain submitted at once (as plait's is launched); per step from the task stream's compute ends."""
    with get_task_stream(client) as stream:
        started = time.perf_counter()
        value = client.submit(step, 0, pure=False)
        for _ in range(length - 1):
            value = client.submit(step, value, pure=False)
        value.result()
        wall = time.perf_counter() - started
    ends = sorted(
        max(part["stop"] for part in record["startstops"] if part["action"] == "compute") for record in stream.data
    )
    steps = [(b - a) * 1000 for a, b in itertools.pairwise(ends)] if len(ends) == length else [wall * 1000 / length]
    return {"step_p50_ms": percentile(steps, 0.5), "step_p99_ms": percentile(steps, 0.99), "wall_s": wall}


def dag(client: Client, parents: list[list[int]]) -> dict[str, float]:
    """A DAG file's nodes, each a task given its parents' futures; a join of the sinks."""
    tasks = len(parents) + 1
    started = time.perf_counter()
    futures: list[Any] = []
    for i, before in enumerate(parents):
        parent_futures = [futures[p] for p in before]
        futures.append(
            client.submit(join, *parent_futures, pure=False) if before else client.submit(noop, i, pure=False)
        )
    has_child = {p for before in parents for p in before}
    client.submit(join, *(futures[i] for i in range(len(parents)) if i not in has_child), pure=False).result()
    wall = time.perf_counter() - started
    return {"tasks_per_s": tasks / wall, "wall_s": wall}


def measure(args: argparse.Namespace, graphs: list[dict[str, Any]], *, eager: bool) -> dict[str, Any]:
    """The runs of the fan-out, the chain (not when ``eager``) and the DAG files on a fresh cluster."""
    result: dict[str, Any] = {"fan_out": [], "chain": [], "dag": {}}
    config = {"distributed.scheduler.worker-saturation": math.inf} if eager else {}
    with (
        dask.config.set(config),
        LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        fan_out(client, 10)  # warm up
        for run in range(args.runs):
            if args.fan_out > 0:
                result["fan_out"].append(fan_out(client, args.fan_out))
            if args.chain > 1 and not eager:
                result["chain"].append(chain(client, args.chain))
            for graph in graphs:
                result["dag"].setdefault(graph["name"], []).append(dag(client, graph["parents"]))
            print(
                f"  [dask{', worker-saturation inf' if eager else ''}] run {run + 1}/{args.runs}: "
                + ", ".join(
                    [f"fan-out {r[-1]['tasks_per_s']:.0f} tasks/s" for r in [result["fan_out"]] if r]
                    + [f"chain p50 {r[-1]['step_p50_ms']:.1f} ms" for r in [result["chain"]] if r]
                ),
                file=sys.stderr,
            )
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fan-out", type=int, default=1000)
    parser.add_argument("--chain", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dags", nargs="*", default=[])
    args = parser.parse_args()
    import distributed

    graphs = [json.loads(Path(p).read_text()) for p in args.dags]
    result = {"dask": distributed.__version__, **measure(args, graphs, eager=False)}
    if args.fan_out > 0 or graphs:
        result["eager"] = measure(args, graphs, eager=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
