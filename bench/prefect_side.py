"""The Prefect 3 side of `python -m bench --compare prefect`: the same no-op workloads, default task runner,
local ephemeral server. Run with a Python that has prefect (not plait); prints one JSON object.

python bench/prefect_side.py --fan-out 1000 --chain 100 --many 200 --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from prefect import flow, task, unmapped
from prefect.cache_policies import INPUTS


@task
def noop(x: int) -> int:
    return x


@task
def join(values: list[int]) -> int:
    return len(values)


@task
async def anoop(x: int) -> int:
    return x


@task
async def ajoin(values: list[int]) -> int:
    return len(values)


@task(cache_policy=INPUTS)
def cached_noop(seed: int, i: int) -> int:
    return i


@task(cache_policy=INPUTS)
def cached_sleep(seed: int, i: int) -> int:
    time.sleep(0.2)
    return i


@task(cache_policy=INPUTS)
def cached_join(values: list[int]) -> int:
    return len(values)


@flow
def cached_fan_out(width: int, seed: int, sleepy: bool = False) -> int:
    """The tasks and the join; returns how many of them Prefect took from its cache."""
    one = cached_sleep if sleepy else cached_noop
    futures = one.map(seed=unmapped(seed), i=range(width))  # type: ignore[call-arg]
    joined = cached_join.submit(futures)
    joined.wait()
    return sum(1 for future in [*futures, joined] if future.state.name == "Cached")


def cached_pair(width: int, seed: int, sleepy: bool) -> tuple[float, float]:
    """Walls of a cold run and of a rerun with the same inputs (Prefect's input-based cache policy)."""
    walls, hits = [], 0
    for _ in range(2):
        started = time.perf_counter()
        hits = cached_fan_out(width, seed, sleepy)
        walls.append(time.perf_counter() - started)
    if hits != width + 1:
        raise RuntimeError(f"Prefect's rerun took {hits} of {width + 1} tasks from its cache")
    return walls[0], walls[1]


@flow
def fan_out(width: int) -> int:
    futures = noop.map(range(width))
    return join(futures)  # type: ignore[no-any-return]


@flow
def chain(length: int) -> int:
    value = noop(0)
    for _ in range(length - 1):
        value = noop(value)
    return value


@flow
async def small() -> int:
    a, b = await asyncio.gather(anoop(0), anoop(0))
    return await ajoin([a, b])  # type: ignore[no-any-return]


@flow
def dag(parents: list[list[int]]) -> int:
    """A DAG file's nodes as no-op tasks, each submitted with its parents' futures as ``wait_for``; a join of
    the sinks."""
    futures: list[Any] = []
    for i, before in enumerate(parents):
        futures.append(noop.submit(i, wait_for=[futures[p] for p in before]))
    has_child = {p for before in parents for p in before}
    ends = [futures[i] for i in range(len(parents)) if i not in has_child]
    return join.submit([], wait_for=ends).result()  # type: ignore[no-any-return]


def run_dags(paths: list[str], runs: int, failures: list[str]) -> dict[str, list[dict[str, float]]]:
    """Each DAG file (bench/dag.py's format) ``runs`` times: tasks/s (its nodes and the join) and wall. A run that
    Prefect fails (its ephemeral server answers 503 when overloaded) is told in ``failures`` and not counted."""
    out: dict[str, list[dict[str, float]]] = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        tasks = len(data["parents"]) + 1
        for _ in range(runs):
            started = time.perf_counter()
            try:
                dag(data["parents"])
            except Exception as exc:  # Prefect's own failure: the other runs and DAGs still count
                failures.append(f"dag {data['name']}: {type(exc).__name__}: {str(exc)[:200]}")
                print(f"  [prefect] dag {data['name']}: failed: {failures[-1]}", file=sys.stderr)
                continue
            wall = time.perf_counter() - started
            out.setdefault(data["name"], []).append({"tasks_per_s": tasks / wall, "wall_s": wall})
            print(f"  [prefect] dag {data['name']}: {tasks / wall:.0f} tasks/s", file=sys.stderr)
    return out


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def chain_steps(flow_run_id: Any, length: int, wall: float) -> tuple[list[float], str]:
    """Per step (ms): task i+1's end minus task i's end, from Prefect's own task runs; else wall/length."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    ends = sorted(r.end_time.timestamp() for r in runs if r.end_time is not None)
    if len(ends) != length:
        return [wall * 1000 / length] * length, "wall/length"
    return [(b - a) * 1000 for a, b in itertools.pairwise(ends)], "task run end times"


async def many(count: int) -> tuple[float, list[float], list[str]]:
    """Executions/s and launch-to-done latencies of the flows that succeeded, and the errors of the others."""

    async def one() -> float:
        started = time.perf_counter()
        await small()
        return (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    outcomes = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    wall = time.perf_counter() - started
    latencies = [o for o in outcomes if isinstance(o, float)]
    errors = [f"{type(o).__name__}: {o}"[:300] for o in outcomes if isinstance(o, BaseException)]
    return len(latencies) / wall, latencies, errors


def peak_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fan-out", type=int, default=1000)
    parser.add_argument("--chain", type=int, default=100)
    parser.add_argument("--many", type=int, default=200)
    parser.add_argument("--cached", type=int, default=500)
    parser.add_argument("--cached-sleepy", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dags", nargs="*", default=[], help="DAG files (bench/dags/*.json) to run")
    parser.add_argument("--dags-only", action="store_true", help="run the DAG files alone (a fresh server for them)")
    args = parser.parse_args()
    import prefect

    fan_out(10)  # start the ephemeral server, warm up
    chain(3)
    result: dict[str, Any] = {"prefect": prefect.__version__, "fan_out": [], "chain": [], "many": [], "cached": []}
    seed = int(time.time())  # a fresh cache for this invocation: each run's first flow is cold
    result["dag_failures"] = []
    result["dag"] = run_dags(args.dags, args.runs, result["dag_failures"])
    for run in range(0 if args.dags_only else args.runs):
        started = time.perf_counter()
        fan_out(args.fan_out)
        wall = time.perf_counter() - started
        result["fan_out"].append({"tasks_per_s": (args.fan_out + 1) / wall, "wall_s": wall})
        started = time.perf_counter()
        state = chain(args.chain, return_state=True)
        wall = time.perf_counter() - started
        steps, source = chain_steps(state.state_details.flow_run_id, args.chain, wall)
        result["chain"].append(
            {"step_p50_ms": percentile(steps, 0.5), "step_p99_ms": percentile(steps, 0.99), "wall_s": wall}
        )
        result["chain_source"] = source
        cached: dict[str, float] = {}
        for prefix, width, sleepy in (("", args.cached, False), ("sleep_", args.cached_sleepy, True)):
            if width > 0:
                first, second = cached_pair(width, seed + run, sleepy)
                cached.update(
                    {f"{prefix}first_s": first, f"{prefix}second_s": second, f"{prefix}ratio": second / first}
                )
        if cached:
            result["cached"].append(cached)
        # the many flows last: they overload the ephemeral server (503s), which slows whatever follows
        rate, latencies, errors = (0.0, [], []) if args.many <= 0 else asyncio.run(many(args.many))
        if errors:
            result.setdefault("many_failures", []).append(f"{len(errors)} of {args.many} flows failed: {errors[0]}")
        if latencies:
            result["many"].append(
                {"executions_per_s": rate, "p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99)}
            )
        print(
            f"  [prefect] run {run + 1}/{args.runs}: fan-out {result['fan_out'][-1]['tasks_per_s']:.0f} tasks/s, "
            f"chain p50 {result['chain'][-1]['step_p50_ms']:.1f} ms, "
            f"many {rate:.1f} executions/s, {len(errors)} flows failed, cached rerun "
            f"{cached.get('second_s', 0):.2f}/{cached.get('first_s', 0):.2f} s, "
            f"sleepy {cached.get('sleep_second_s', 0):.2f}/{cached.get('sleep_first_s', 0):.2f} s",
            file=sys.stderr,
        )
    result["peak_rss_mb"] = peak_mb(os.getpid())
    fan_outs = [r["tasks_per_s"] for r in result["fan_out"]]
    result["median_fan_out"] = statistics.median(fan_outs) if fan_outs else 0
    print(json.dumps(result))


if __name__ == "__main__":
    main()
