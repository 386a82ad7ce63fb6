"""Workload 2: N no-op tasks in sequence; per-step latency from the decisions' timestamps, and wall."""

from __future__ import annotations

import itertools
from typing import Any

from bench.measure import percentile, run_once
from plait.adapters.event_log import StoredDecision
from plait.client import AsyncClient
from plait.core.events import AttemptStarted, NodeSucceeded


def steps(events: list[StoredDecision], length: int) -> tuple[list[float], list[float]]:
    """Per step (ms): node i succeeded → node i+1 succeeded; and node i succeeded → node i+1 started."""
    succeeded: dict[str, float] = {}
    started: dict[str, float] = {}
    for stored in events:
        at = stored.decision.at.timestamp()
        for event in stored.decision.events:
            if isinstance(event, NodeSucceeded):
                succeeded[event.node] = at
            elif isinstance(event, AttemptStarted):
                started.setdefault(event.node, at)
    order = ["noop"] + [f"noop-{i}" for i in range(1, length)]
    step = [(succeeded[b] - succeeded[a]) * 1000 for a, b in itertools.pairwise(order)]
    overhead = [(started[b] - succeeded[a]) * 1000 for a, b in itertools.pairwise(order)]
    return step, overhead


async def run(client: AsyncClient, workflow: Any, length: int) -> dict[str, float]:
    wall, events = await run_once(client, workflow, events=True)
    step, overhead = steps(events, length)
    return {
        "step_p50_ms": percentile(step, 0.5),
        "step_p99_ms": percentile(step, 0.99),
        "overhead_p50_ms": percentile(overhead, 0.5),
        "wall_s": wall,
    }
