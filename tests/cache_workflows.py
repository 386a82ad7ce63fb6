"""Cached tasks and workflows for the caching tests (module level, so executor workers can import them)."""

from __future__ import annotations

import time
from pathlib import Path

from plait import task, workflow


@task(cache=True, cache_version="1")
def slow_square(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x * x


@task(cache=True, cache_version="1")
def cached_increment(x: int) -> int:
    return x + 1


@task
def plain_double(x: int) -> int:
    return 2 * x


@task(cache=True, cache_version="1")
def fail_once(x: int, directory: str) -> int:
    """Fails the first time it runs in ``directory``, once the test has created ``fail-{x}`` there; succeeds
    afterwards."""
    marker = Path(directory) / f"ran-{x}"
    if not marker.exists():
        marker.touch()
        deadline = time.monotonic() + 30
        while not (Path(directory) / f"fail-{x}").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        raise RuntimeError("first run fails")
    return x


@task(cache=True, cache_version="1")
def gated_square(x: int, directory: str) -> int:
    """Returns once the test has created ``release`` in ``directory`` (or after 30 s)."""
    deadline = time.monotonic() + 30
    while not (Path(directory) / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return x * x


@workflow
def gated_then_doubled(x: int, directory: str) -> int:
    return plain_double(gated_square(x, directory))


@workflow
def squared_then_doubled(x: int, seconds: float = 0.0) -> int:
    return plain_double(slow_square(x, seconds))


@workflow
def increments(start: int) -> list[int]:
    """Three cached nodes, and one more that reads an input (so runs with other inputs share some nodes)."""
    return [cached_increment(i) for i in range(3)] + [cached_increment(start)]


@workflow
def guarded(x: int, directory: str) -> int:
    return fail_once(x, directory)
