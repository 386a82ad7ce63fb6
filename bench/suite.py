"""One fsync setting's whole run on a fresh embedded stack (run in its own process by ``python -m bench``)."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import anyio

from bench import cached, chain, cli, cpu, dag, fan_out, lone, many, raw, replay, widest
from bench.measure import summary
from bench.procs import Group
from bench.stack import servers
from bench.workloads import make_chain, make_fan_out, small
from plait.client import AsyncClient
from plait.logging import configure_logging
from plait.settings import load_settings
from plait_cli.stack import embedded_services


def progress(message: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def _leaf(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__module__}.{type(exc).__name__} {exc}".strip()


def summarize(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {key: summary([run[key] for run in runs]) for key in runs[0]} if runs else {}


WORKLOADS = ("lone", "fan_out", "chain", "many", "cached", "dag", "cli", "widest", "raw", "replay")


async def bench_stack(sync: str, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"sync": sync}
    log_at = 0
    only = set(args.only)
    with tempfile.TemporaryDirectory(prefix="plait-bench-") as home:
        settings = load_settings(home=home, nats_sync=sync, log_level="warning")
        async with servers(settings) as srv:
            groups = srv.groups()
            try:
                async with embedded_services(
                    settings, srv.info, processes=args.services == "processes", log_file=args.log
                ):
                    async with await AsyncClient.connect(srv.info.nats_url) as client:
                        await anyio.sleep(2.0)  # let the services settle before the idle reading
                        result["idle_rss_mb"] = {name: g.rss_mb() for name, g in groups.items()}
                        result["idle_pss_mb"] = {name: g.pss_mb() for name, g in groups.items()}
                        roles = {srv.nats.pid: "nats-server", srv.postgres.pid: "postgres"}
                        if args.lone > 0 and "lone" in only:
                            await _lone(client, sync, args, result)
                        await _workloads(client, sync, args, groups, result, roles)
                        if "dag" in only:
                            await _dags(client, sync, args, result, roles)
                        if "cli" in only:
                            await _cli(client, sync, args, result, srv.info.nats_url, srv.info.database_url)
                        if args.widest > 0 and "widest" in only:
                            progress(f"[{sync}] widest: one execution of {args.widest} nodes")
                            log_at = widest.log_size(args.log)
                            result["widest"] = await widest.run(client, args.widest, groups["plait"], args.log)
                            progress(f"[{sync}] widest: {result['widest']}")
            except Exception as exc:  # a service crashed: say so on the rows not measured yet, keep going
                if "widest" in result or "widest" not in only or "idle_rss_mb" not in result:
                    raise
                reason = f"the services crashed: {_leaf(exc)}; last error logged: {widest.last_error(args.log, log_at)}"
                peak = groups["plait"].peak_mb()
                result["widest"] = {"width": args.widest, "failed": reason, "plait_peak_mb": peak}
                progress(f"[{sync}] widest: failed: {reason}")
            # services stopped: the broker floor and the replay have the server to themselves
            # (the replay's records stay in the stream, which denies purges; the server is thrown away after)
            async with await AsyncClient.connect(srv.info.nats_url) as client:
                if "raw" in only:
                    raw_runs = [await raw.run(client.js, *args.raw) for _ in range(args.runs)]
                    result["raw"] = summarize(raw_runs)
                    progress(f"[{sync}] raw floor: {raw_runs[-1]}")
                if args.replay > 0 and "replay" in only:
                    result.update(await _replay(client, sync, args))
            result["peak_rss_end_mb"] = {name: g.peak_mb() for name, g in groups.items()}
    return result


async def _workloads(
    client: AsyncClient,
    sync: str,
    args: argparse.Namespace,
    groups: dict[str, Group],
    result: dict[str, Any],
    roles: dict[int, str],
) -> None:
    """Workloads 1-4, ``args.runs`` times each, interleaved; the peak RSS over them."""
    wanted = [name for name in ("fan_out", "chain", "many", "cached") if name in args.only]
    if not wanted:
        return
    fan_out_wf, chain_wf = make_fan_out(args.fan_out), make_chain(args.chain)
    for wf in (fan_out_wf, chain_wf, small):
        await client.register(wf)
    await chain.run(client, chain_wf, args.chain)  # warm the worker pool
    for g in groups.values():
        g.reset_peak()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in wanted}
    fan_out_cpu: list[dict[str, float]] = []
    many_cpu: list[dict[str, float]] = []
    failures: list[str] = []
    for run in range(args.runs):
        line = []
        if "fan_out" in runs:
            await cpu.settle(os.getpid(), roles)
            before = cpu.snapshot(os.getpid(), roles)
            runs["fan_out"].append(await fan_out.run(client, fan_out_wf, args.fan_out))
            await cpu.settle(os.getpid(), roles)
            fan_out_cpu.append(cpu.per_task(before, cpu.snapshot(os.getpid(), roles), args.fan_out + 1))
            line.append(f"fan-out {runs['fan_out'][-1]['tasks_per_s']:.0f} tasks/s")
        if "chain" in runs:
            runs["chain"].append(await chain.run(client, chain_wf, args.chain))
            line.append(f"chain p50 {runs['chain'][-1]['step_p50_ms']:.1f} ms")
        if "many" in runs:
            await cpu.settle(os.getpid(), roles)
            before = cpu.snapshot(os.getpid(), roles)
            runs["many"].append(await many.run(client, args.many))
            await cpu.settle(os.getpid(), roles)
            many_cpu.append(cpu.per_task(before, cpu.snapshot(os.getpid(), roles), args.many))
            line.append(f"{args.many} executions p50 {runs['many'][-1]['p50_ms']:.0f} ms")
        if "cached" in runs and not failures:
            try:
                runs["cached"].append(await cached.run(client, args.cached, args.cached_sleepy, run))
                line.append(cached.describe(runs["cached"][-1]))
            except cached.NotCached as exc:
                failures.append(str(exc))
                line.append(f"cached rerun: {exc}")
        progress(f"[{sync}] run {run + 1}/{args.runs}: " + ", ".join(line))
    result.update({name: summarize(values) for name, values in runs.items() if values})
    if fan_out_cpu:
        result["fan_out_cpu_ms"] = summarize(fan_out_cpu)
    if many_cpu:
        result["many_cpu_ms"] = summarize(many_cpu)
    if failures:
        result["cached"] = {"failed": failures[0]}
    result["peak_rss_mb"] = {name: g.peak_mb() for name, g in groups.items()}


async def _lone(client: AsyncClient, sync: str, args: argparse.Namespace, result: dict[str, Any]) -> None:
    """``args.lone`` one-task executions one after another, ``args.runs`` times, before any other workload."""
    runs = []
    for run in range(args.runs):
        runs.append(await lone.run(client, args.lone))
        progress(
            f"[{sync}] lone execution run {run + 1}/{args.runs}: "
            f"p50 {runs[-1]['p50_ms']:.1f} ms, p99 {runs[-1]['p99_ms']:.1f} ms"
        )
    result["lone"] = summarize(runs)


async def _dags(
    client: AsyncClient, sync: str, args: argparse.Namespace, result: dict[str, Any], roles: dict[int, str]
) -> None:
    """Each DAG file ``args.runs`` times; tasks/s and the CPU per task of each process role."""
    result["dag"] = {}
    for path in dag.files(args.dags):
        graph = dag.load(path)
        workflow = dag.make_dag(graph)
        await client.register(workflow)
        runs, cpus = [], []
        for _ in range(args.runs):
            await cpu.settle(os.getpid(), roles)
            before = cpu.snapshot(os.getpid(), roles)
            runs.append(await dag.run(client, workflow, graph.tasks))
            await cpu.settle(os.getpid(), roles)
            cpus.append(cpu.per_task(before, cpu.snapshot(os.getpid(), roles), graph.tasks))
        result["dag"][graph.name] = {**summarize(runs), "cpu_ms": summarize(cpus), "tasks": graph.tasks}
        progress(f"[{sync}] dag {graph.name} ({graph.tasks} tasks): {runs[-1]['tasks_per_s']:.0f} tasks/s")


async def _cli(
    client: AsyncClient, sync: str, args: argparse.Namespace, result: dict[str, Any], nats_url: str, database_url: str
) -> None:
    """The fan-out and the chain through ``plait run`` (live view on a pseudo-terminal), ``args.runs`` times."""
    with tempfile.TemporaryDirectory(prefix="plait-bench-cli-") as folder:
        module = cli.write_module(Path(folder), args.fan_out, args.chain)
        env = cli.environment(nats_url, database_url, Path(folder) / "home")
        runs = []
        for _ in range(args.runs):
            runs.append(await cli.run(client, module, env, args.fan_out, args.chain))
            progress(
                f"[{sync}] plait run: fan-out {runs[-1]['fan_out_tasks_per_s']:.0f} tasks/s, "
                f"chain p50 {runs[-1]['chain_step_p50_ms']:.1f} ms"
            )
    result["cli"] = summarize(runs)


async def _replay(client: AsyncClient, sync: str, args: argparse.Namespace) -> dict[str, Any]:
    # made here, after the idle and workload readings, so its memory is not counted as plait's
    history = replay.generate(args.replay)
    result: dict[str, Any] = {
        "replay_history": {
            "events": history.events,
            "decisions": len(history.records),
            "width": history.width,
            "retries": history.retries,
            "generate_s": history.generate_s,
        },
        "replay_store_s": await replay.store(client.js, history),
    }
    replay_runs = []
    for _ in range(args.runs):
        run = {"read_apply_per_s": await replay.read_and_apply(client.js, history)}
        run["read_per_s"], decoded = await replay.read_only(client.js, history)
        run["apply_per_s"] = replay.apply_only(decoded, history.events)
        replay_runs.append(run)
        del decoded
    result["replay"] = summarize(replay_runs)
    progress(f"[{sync}] replay: {replay_runs[-1]}")
    return result


Stack = Callable[[str, argparse.Namespace], Awaitable[dict[str, Any]]]


def _child(sync: str, args: argparse.Namespace, conn: Connection, stack: Stack) -> None:
    configure_logging("json", "warning", file=args.log)
    try:
        conn.send(("ok", anyio.run(stack, sync, args)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        raise


def run_mode(sync: str, args: argparse.Namespace, stack: Stack = bench_stack) -> dict[str, Any]:
    """``stack`` (by default ``bench_stack``) in a fresh process (not a daemon: the executor starts worker
    processes)."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sync, args, sender, stack), name=f"bench-{sync}")
    process.start()
    sender.close()
    try:
        status, payload = receiver.recv()
    except EOFError:
        status, payload = "error", "the benchmark process exited without a result"
    process.join()
    if status != "ok":
        raise RuntimeError(f"fsync {sync}: {payload}")
    result: dict[str, Any] = payload
    return result
