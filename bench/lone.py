"""Workload 8: one one-task execution at a time on an otherwise idle stack; `client.launch` to outputs, p50/p99.

Each execution is launched only once the one before it has ended, so nothing else runs meanwhile: the figure is the
latency of the whole path (the launch command, the scheduler's decision, the dispatch, the executor and its worker,
the result command, the deciding decision, the client seeing the outputs), not a throughput.
"""

from __future__ import annotations

import time

from bench.measure import percentile
from bench.workloads import lone
from plait.client import AsyncClient

WARM_UP = 5  # executions not counted: the worker pool and the registration are warm after them


async def run(client: AsyncClient, count: int, timeout: float = 60) -> dict[str, float]:
    await client.register(lone)
    latencies: list[float] = []
    for index in range(WARM_UP + count):
        started = time.perf_counter()
        execution = await client.launch(lone, {"seed": index}, timeout=timeout)
        outcome = await execution.wait(timeout=timeout)
        elapsed = (time.perf_counter() - started) * 1000
        if outcome.status != "succeeded" or list((outcome.outputs or {}).values()) != [index]:
            ended = outcome.error or outcome.outputs
            raise RuntimeError(f"lone execution {execution.id} ended {outcome.status}: {ended}")
        if index >= WARM_UP:
            latencies.append(elapsed)
    return {
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "min_ms": min(latencies),
        "executions": float(count),
    }
