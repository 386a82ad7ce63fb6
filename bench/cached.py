"""Workload 4: cached rerun. A fan-out of ``@task(cache=True, cache_version="1")`` tasks (and a cached join)
run twice with the same inputs: the first run computes and fills the cache, the second should find every
result there. Reported: both walls and second / first. Two variants: no-op tasks (the scheduler's cost of a
hit against dispatching a no-op), and tasks that sleep 0.2 s (what a user saves).

Each run of the workload uses a fresh seed input, so its first run is cold.
"""

from __future__ import annotations

import random
import time
from typing import Any

from bench.workloads import make_cached
from plait.client import AsyncClient
from plait.replay import replay

SEED_BASE = random.SystemRandom().randrange(1 << 30)


class NotCached(RuntimeError):
    """The second run found nothing in the cache: the scheduler does not serve cached results (yet)."""


async def _timed(client: AsyncClient, workflow: Any, seed: int, timeout: float = 600) -> tuple[float, str]:
    """The wall time of one run, from launch to outcome, and its execution id."""
    started = time.perf_counter()
    execution = await client.launch(workflow, {"seed": seed}, timeout=timeout)
    outcome = await execution.wait(timeout=timeout)
    wall = time.perf_counter() - started
    if outcome.status != "succeeded":
        raise RuntimeError(f"{workflow.name} ended {outcome.status}: {outcome.error}")
    return wall, execution.id


async def pair(client: AsyncClient, workflow: Any, seed: int) -> tuple[float, float]:
    """Walls of a cold run and of a rerun with the same inputs; NotCached unless every node of the rerun hit."""
    first, _ = await _timed(client, workflow, seed)
    second, execution_id = await _timed(client, workflow, seed)
    state = replay(await client.records(execution_id))
    hits = sum(1 for node in state.nodes.values() if getattr(node, "cached_from", ""))
    if hits < len(state.nodes):
        raise NotCached(f"the rerun took {hits} of {len(state.nodes)} nodes from the cache")
    return first, second


_workflows: dict[tuple[int, bool], Any] = {}


async def run(client: AsyncClient, width: int, sleepy_width: int, index: int) -> dict[str, float]:
    result: dict[str, float] = {}
    for prefix, size, sleepy in (("", width, False), ("sleep_", sleepy_width, True)):
        if size <= 0:
            continue
        key = (size, sleepy)
        if key not in _workflows:
            _workflows[key] = make_cached(size, sleepy)
            await client.register(_workflows[key])
        first, second = await pair(client, _workflows[key], SEED_BASE + index)
        result.update({f"{prefix}first_s": first, f"{prefix}second_s": second, f"{prefix}ratio": second / first})
    return result


def describe(result: dict[str, float]) -> str:
    parts = []
    if "ratio" in result:
        parts.append(f"cached rerun {result['second_s']:.2f}/{result['first_s']:.2f} s")
    if "sleep_ratio" in result:
        parts.append(f"sleepy {result['sleep_second_s']:.2f}/{result['sleep_first_s']:.2f} s")
    return ", ".join(parts)
