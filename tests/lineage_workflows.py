"""Workflows for the lineage tests (module level, so executor workers can import them)."""

from __future__ import annotations

from pathlib import Path

from plait import task, workflow


@task(retries=1)
def flaky_double(x: int, directory: str) -> int:
    """Fails its first attempt for each ``x`` in ``directory``, then doubles."""
    marker = Path(directory) / f"ran-{x}"
    if not marker.exists():
        marker.touch()
        raise RuntimeError("the first attempt fails")
    return 2 * x


@task(cache=True, cache_version="1")
def cached_square(x: int) -> int:
    return x * x


@task
def add(a: int, b: int) -> int:
    return a + b


@workflow
def chain(x: int, directory: str) -> int:
    """flaky_double → cached_square → add(…, 1): a chain of three nodes, the last one reading a constant."""
    return add(cached_square(flaky_double(x, directory)), 1)
