"""No-op workflows for the benchmarks, built at the sizes asked for."""

from __future__ import annotations

import time
from typing import Any

from plait import map_task, task, workflow
from plait.sdk.workflow import Workflow

FAN_OUT = 1000
CHAIN = 100


@task
def noop(x: int) -> int:
    return x


@task
def join(values: list[int]) -> int:
    return len(values)


MAP_CONCURRENCY = 1000


@workflow
def wide_map(xs: list[int]) -> int:
    """One map node running ``noop`` per item, ``MAP_CONCURRENCY`` at a time, and a join of the results."""
    return join(values=map_task(noop, concurrency=MAP_CONCURRENCY)(x=xs))


def make_fan_out(width: int, name: str = "fan_out") -> Workflow[Any, Any]:
    """``width`` independent no-op tasks and a join of their outputs."""

    def body(seed: int = 0) -> int:
        return join(values=[noop(x=i) for i in range(width)])

    body.__name__ = body.__qualname__ = name
    return workflow(body)


def make_chain(length: int) -> Workflow[Any, Any]:
    """``length`` no-op tasks in sequence; node ids are noop, noop-1, noop-2, ..."""

    def chain(seed: int = 0) -> int:
        value = noop(x=seed)
        for _ in range(length - 1):
            value = noop(x=value)
        return value

    chain.__qualname__ = "chain"
    return workflow(chain)


@workflow
def small(seed: int = 0) -> int:
    """Three nodes: two no-ops and a join."""
    return join(values=[noop(x=seed), noop(x=seed)])


@workflow
def lone(seed: int = 0) -> int:
    """One no-op task: the lone-execution latency workload."""
    return noop(x=seed)


@task(cache=True, cache_version="1")
def cached_noop(seed: int, i: int) -> int:
    return i


@task(cache=True, cache_version="1")
def cached_sleep(seed: int, i: int) -> int:
    time.sleep(0.2)
    return i


@task(cache=True, cache_version="1")
def cached_join(values: list[int]) -> int:
    return len(values)


def make_cached(width: int, sleepy: bool = False) -> Workflow[Any, Any]:
    """``width`` cached tasks (no-ops, or 0.2 s sleeps) and a cached join; the seed input makes a run's cache keys."""
    one = cached_sleep if sleepy else cached_noop

    def body(seed: int = 0) -> int:
        return cached_join(values=[one(seed=seed, i=i) for i in range(width)])

    body.__name__ = body.__qualname__ = "cached_sleep" if sleepy else "cached_fan_out"
    return workflow(body)
