"""Scheduler replicas (``python -m bench --replicas 1,2,4 --partitions 0,8``): the fan-out and many small executions
on N scheduler processes, the commands stream partitioned or not. Per run: tasks/s, the CPU per task of each
service (the schedulers' sum, and each replica's), and the conflicts per task (appends refused by optimistic
concurrency, from each replica's metrics endpoint). The model of docs/scaling.md rests on these figures."""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import urllib.request
from typing import Any

import anyio
import anyio.to_thread
from prometheus_client.parser import text_string_to_metric_families

from bench import chain, cpu, fan_out, many
from bench.stack import servers
from bench.suite import progress, summarize
from bench.workloads import make_chain, make_fan_out, small
from plait.client import AsyncClient
from plait.settings import load_settings
from plait_cli.stack import ServiceProcess, embedded_services, service_environment

COUNTED = ("plait_decisions_total", "plait_decision_conflicts_total")
IDLE_SECONDS = 10.0  # CPU time is counted in ticks of 10 ms: 1 ms/s of resolution per process
SMALL_TASKS = 3  # nodes of each of the many small executions


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _scrape(port: int) -> dict[str, float]:
    """The counters of ``COUNTED`` and the partitions held, from one replica's metrics endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    wanted = (*COUNTED, "plait_scheduler_partitions_held")
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in wanted
    }


class Schedulers:
    """The scheduler replicas, each a child process with its own metrics endpoint."""

    def __init__(self, count: int, env: dict[str, str], log: Any) -> None:
        self.ports = [_free_port() for _ in range(count)]
        self.processes = [
            ServiceProcess.spawn(
                "scheduler",
                {**env, "PLAIT_REPLICA": f"bench-scheduler-{i}", "PLAIT_METRICS_PORT": str(port)},
                log,
            )
            for i, port in enumerate(self.ports)
        ]

    async def wait_ready(self) -> None:
        for process in self.processes:
            await process.wait_ready()

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.stop()

    def cpu_seconds(self) -> list[float]:
        return [cpu.seconds_of(process.process.pid) for process in self.processes]

    async def counters(self) -> list[dict[str, float]]:
        return [await anyio.to_thread.run_sync(_scrape, port) for port in self.ports]


async def _stream_writes(js: Any) -> dict[str, int]:
    """Messages stored so far in each stream (its last sequence: messages acknowledged and purged count too)."""
    return {info.config.name: info.state.last_seq for info in await js.streams_info()}


async def _idle(schedulers: Schedulers, roles: dict[int, str]) -> dict[str, float]:
    """CPU ms per second of each role, and of each scheduler replica, with no work: the fixed cost a replica adds."""
    before, replicas_before = cpu.snapshot(os.getpid(), roles), schedulers.cpu_seconds()
    started = anyio.current_time()
    await anyio.sleep(IDLE_SECONDS)
    seconds = anyio.current_time() - started
    after, replicas_after = cpu.snapshot(os.getpid(), roles), schedulers.cpu_seconds()
    spent = {name: (after.get(name, 0.0) - before.get(name, 0.0)) * 1000 / seconds for name in cpu.ROLES}
    for i, (start, end) in enumerate(zip(replicas_before, replicas_after, strict=True)):
        spent[f"replica_{i}"] = (end - start) * 1000 / seconds
    return spent


async def _measured(
    client: AsyncClient, schedulers: Schedulers, roles: dict[int, str], tasks: int, workload: Any
) -> tuple[dict[str, float], dict[str, Any]]:
    """Run ``workload()``; its figures, and what it cost per task: CPU per role, per scheduler replica, conflicts,
    messages stored per stream (the work it leaves behind included: ``cpu.settle``)."""
    await cpu.settle(os.getpid(), roles)
    before, replicas_before, counted_before, written_before = (
        cpu.snapshot(os.getpid(), roles),
        schedulers.cpu_seconds(),
        await schedulers.counters(),
        await _stream_writes(client.js),
    )
    figures: dict[str, float] = await workload()
    await cpu.settle(os.getpid(), roles)
    after, replicas_after, counted_after, written_after = (
        cpu.snapshot(os.getpid(), roles),
        schedulers.cpu_seconds(),
        await schedulers.counters(),
        await _stream_writes(client.js),
    )
    writes = {f"writes_{name}": (written_after.get(name, 0) - n) / tasks for name, n in written_before.items()}
    spent = {
        f"replica_{i}": (end - start) * 1000 / tasks
        for i, (start, end) in enumerate(zip(replicas_before, replicas_after, strict=True))
    }
    totals = {
        name: sum(a.get(name, 0.0) - b.get(name, 0.0) for a, b in zip(counted_after, counted_before, strict=True))
        for name in COUNTED
    }
    costs = {
        **cpu.per_task(before, after, tasks),
        **spent,
        "conflicts_per_task": totals["plait_decision_conflicts_total"] / tasks,
        "decisions_per_task": totals["plait_decisions_total"] / tasks,
        "conflicts_per_decision": totals["plait_decision_conflicts_total"] / max(totals["plait_decisions_total"], 1.0),
        **writes,
        "writes_all": sum(writes.values()),
    }
    return figures, costs


async def bench_replicas(sync: str, args: argparse.Namespace) -> dict[str, Any]:
    """One configuration (``args.replica_count`` schedulers, ``args.partition_count`` partitions) on a fresh
    embedded stack: ``args.runs`` runs of the fan-out and of the many small executions, interleaved."""
    count, partitions = args.replica_count, args.partition_count
    result: dict[str, Any] = {"sync": sync, "replicas": count, "partitions": partitions}
    label = f"[{sync}, {count} scheduler{'s' if count > 1 else ''}, {partitions or 'no'} partitions]"
    with tempfile.TemporaryDirectory(prefix="plait-bench-") as home:
        settings = load_settings(home=home, nats_sync=sync, log_level="warning", scheduler_partitions=partitions)
        async with servers(settings) as srv:
            roles = {srv.nats.pid: "nats-server", srv.postgres.pid: "postgres"}
            env = service_environment(settings, srv.info.nats_url, srv.info.database_url)
            schedulers = Schedulers(count, env, args.log)
            try:
                await schedulers.wait_ready()
                async with (
                    embedded_services(settings, srv.info, ("executor", "catalog"), processes=True, log_file=args.log),
                    await AsyncClient.connect(srv.info.nats_url) as client,
                ):
                    wide, chain_wf = make_fan_out(args.fan_out), make_chain(args.chain)
                    for wf in (wide, chain_wf, small):
                        await client.register(wf)
                    await chain.run(client, chain_wf, args.chain)  # warm the worker pool
                    await many.run(client, args.many)  # and pin every partition to a replica
                    if partitions:
                        await _shared_out(schedulers, partitions, label)
                    result["idle_cpu_ms_per_s"] = await _idle(schedulers, roles)
                    runs: dict[str, list[dict[str, float]]] = {"fan_out": [], "many": []}
                    costs: dict[str, list[dict[str, float]]] = {"fan_out": [], "many": []}
                    for run in range(args.runs):
                        figures, cost = await _measured(
                            client, schedulers, roles, args.fan_out + 1, lambda: fan_out.run(client, wide, args.fan_out)
                        )
                        runs["fan_out"].append(figures)
                        costs["fan_out"].append(cost)
                        figures, cost = await _measured(
                            client, schedulers, roles, args.many * SMALL_TASKS, lambda: many.run(client, args.many)
                        )
                        runs["many"].append({**figures, "tasks_per_s": figures["executions_per_s"] * SMALL_TASKS})
                        costs["many"].append(cost)
                        progress(
                            f"{label} run {run + 1}/{args.runs}: fan-out {runs['fan_out'][-1]['tasks_per_s']:.0f} "
                            f"tasks/s ({costs['fan_out'][-1]['conflicts_per_task']:.3f} conflicts/task), "
                            f"{args.many} executions {runs['many'][-1]['tasks_per_s']:.0f} tasks/s "
                            f"({costs['many'][-1]['conflicts_per_task']:.3f} conflicts/task)"
                        )
                    for name in runs:
                        result[name] = summarize(runs[name])
                        result[f"{name}_cost"] = summarize(costs[name])
                    result["partitions_held"] = [
                        int(c.get("plait_scheduler_partitions_held", 0)) for c in await schedulers.counters()
                    ]
            finally:
                await anyio.to_thread.run_sync(schedulers.stop)
    return result


SHARING_SECONDS = 60.0


async def _shared_out(schedulers: Schedulers, partitions: int, label: str) -> None:
    """Until no replica holds more than its fair share of the partitions (the replicas share them out every ack
    wait; a run measured meanwhile would count the hand-overs)."""
    share = -(-partitions // len(schedulers.ports))
    with anyio.move_on_after(SHARING_SECONDS):
        while True:
            held = [int(c.get("plait_scheduler_partitions_held", 0)) for c in await schedulers.counters()]
            if sum(held) and max(held) <= share:  # a partition given up is taken again with its next message
                progress(f"{label} partitions shared out: {held}")
                return
            await anyio.sleep(0.5)  # the replicas' gauges, read as Prometheus would: nothing to await
    progress(f"{label} partitions not shared out within {SHARING_SECONDS:.0f}s: measured as they are")


def _median(summary: dict[str, Any], key: str) -> float:
    value = summary.get(key)
    return float(value["median"]) if isinstance(value, dict) else float("nan")


def print_replicas(meta: dict[str, Any], results: list[dict[str, Any]]) -> None:
    """One table per workload: tasks/s, conflicts and CPU per task by role (medians over the runs)."""
    print(f"\nplait {meta['commit']}, nats-server {meta['nats_server']}, {meta['runs']} runs, {meta['date']}")
    print(f"load average before / after: {meta['load_before']} / {meta['load_after']}")
    roles = ("scheduler", "executor", "workers", "catalog", "nats-server", "postgres", "client", "total")
    for workload, title in (("fan_out", f"fan-out of {meta['fan_out']}"), ("many", f"{meta['many']} executions")):
        print(f"\n{title} (medians; CPU in ms per task; conflicts: appends refused by optimistic concurrency)")
        head = f"  {'fsync':<7}{'replicas':>9}{'parts':>6}{'tasks/s':>9}{'confl/task':>11}"
        print(head + "".join(f"{role:>12}" for role in roles) + "  per replica")
        for r in results:
            cost = r[f"{workload}_cost"]
            replicas = " ".join(f"{_median(cost, f'replica_{i}'):.3f}" for i in range(r["replicas"]))
            print(
                f"  {r['sync']:<7}{r['replicas']:>9}{r['partitions']:>6}"
                f"{_median(r[workload], 'tasks_per_s'):>9.0f}{_median(cost, 'conflicts_per_task'):>11.4f}"
                + "".join(f"{_median(cost, role):>12.3f}" for role in roles)
                + f"  {replicas}"
            )
    print("\nmessages stored per task, by stream (medians; acknowledged and purged ones count too)")
    streams = sorted(
        {
            key
            for r in results
            for workload in ("fan_out", "many")
            for key in r[f"{workload}_cost"]
            if key.startswith("writes_") and _median(r[f"{workload}_cost"], key) > 0
        }
    )
    names = [key.removeprefix("writes_") for key in streams]
    print(f"  {'workload':<10}{'replicas':>9}{'parts':>6}" + "".join(f"{name[:16]:>17}" for name in names))
    for workload in ("fan_out", "many"):
        for r in results:
            cells = "".join(f"{_median(r[f'{workload}_cost'], key):>17.3f}" for key in streams)
            print(f"  {workload:<10}{r['replicas']:>9}{r['partitions']:>6}{cells}")
    print(f"\nidle CPU (ms per second over {IDLE_SECONDS:.0f} s with no work; per replica last)")
    idle_roles = ("scheduler", "executor", "catalog", "nats-server", "postgres")
    print(f"  {'replicas':>9}{'parts':>6}" + "".join(f"{role:>12}" for role in idle_roles))
    for r in results:
        idle = r["idle_cpu_ms_per_s"]
        replicas = " ".join(f"{idle[f'replica_{i}']:.1f}" for i in range(r["replicas"]))
        print(
            f"  {r['replicas']:>9}{r['partitions']:>6}"
            + "".join(f"{idle.get(role, 0.0):>12.1f}" for role in idle_roles)
            + f"  {replicas}"
        )
    held = [f"{r['replicas']}x{r['partitions']}: {r['partitions_held']}" for r in results if r["partitions"]]
    if held:
        print("\npartitions held by each replica at the end: " + "; ".join(held))
