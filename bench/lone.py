"""Workload 8: one one-task execution at a time on an otherwise idle stack; `client.launch` to outputs, p50/p99.

Each execution is launched only once the one before it has ended, so nothing else runs meanwhile: the figure is the
latency of the whole path (the launch command, the scheduler's decision, the dispatch, the executor and its worker,
the result command, the deciding decision, the client seeing the outputs), not a throughput. Where the time goes
comes from the decisions' timestamps (the services' clocks are this machine's): launch sent → launch decided →
``launch`` returned; launch decided → last decision (dispatch, executor, worker, result, decision); last decision →
the client has the outputs.
"""

from __future__ import annotations

import statistics
import time

from bench.measure import percentile
from bench.workloads import lone
from plait import codec
from plait.client import AsyncClient

WARM_UP = 5  # executions not counted: the worker pool and the registration are warm after them
STAGES = ("to_launch_decided_ms", "launch_returned_ms", "launch_to_last_decision_ms", "last_decision_to_outputs_ms")


async def run(client: AsyncClient, count: int, timeout: float = 60) -> dict[str, float]:
    await client.register(lone)
    latencies: list[float] = []
    stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for index in range(WARM_UP + count):
        started, sent_at = time.perf_counter(), time.time()
        execution = await client.launch(lone, {"seed": index}, timeout=timeout)
        launched_at = time.time()
        outcome = await execution.wait(timeout=timeout)
        elapsed, ended_at = (time.perf_counter() - started) * 1000, time.time()
        if outcome.status != "succeeded" or list((outcome.outputs or {}).values()) != [index]:
            ended = outcome.error or outcome.outputs
            raise RuntimeError(f"lone execution {execution.id} ended {outcome.status}: {ended}")
        if index < WARM_UP:
            continue
        latencies.append(elapsed)
        decided = [codec.decision_decoder.decode(r.data).at.timestamp() for r in await client.records(execution.id)]
        stages["to_launch_decided_ms"].append((decided[0] - sent_at) * 1000)
        stages["launch_returned_ms"].append((launched_at - decided[0]) * 1000)
        stages["launch_to_last_decision_ms"].append((decided[-1] - decided[0]) * 1000)
        stages["last_decision_to_outputs_ms"].append((ended_at - decided[-1]) * 1000)
    return {
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "min_ms": min(latencies),
        "executions": float(count),
        **{stage: statistics.median(values) for stage, values in stages.items()},
    }
