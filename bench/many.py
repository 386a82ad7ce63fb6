"""Workload 3: many small executions (3 nodes each) launched at once; executions/s and launch-to-done."""

from __future__ import annotations

import time

import anyio

from bench.measure import percentile
from bench.workloads import small
from plait.client import AsyncClient


async def run(client: AsyncClient, count: int, timeout: float = 600) -> dict[str, float]:
    latencies: list[float] = []
    failures: list[str] = []

    async def one() -> None:
        started = time.perf_counter()
        execution = await client.launch(small, {"seed": 0}, timeout=timeout)
        outcome = await execution.wait(timeout=timeout)
        if outcome.status != "succeeded":
            failures.append(f"{execution.id} ended {outcome.status}: {outcome.error}")
        latencies.append((time.perf_counter() - started) * 1000)

    await client.register(small)
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(one)
    wall = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} of {count} executions failed, e.g. {failures[0]}")
    return {
        "executions_per_s": count / wall,
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "wall_s": wall,
    }
