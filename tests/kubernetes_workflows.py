"""Workflows the Kubernetes backend tests run; module level, so the task runtime in a pod can import them."""

from __future__ import annotations

import time
from pathlib import Path

from plait import map_task, task, workflow


@task(requests={"cpu": "100m", "memory": "64Mi"}, limits={"memory": "256Mi"})
def square(x: int) -> int:
    return x * x


@task
def total(a: int, b: int) -> int:
    return a + b


@workflow
def sum_of_squares(x: int, y: int) -> int:
    return total(square(x), square(y))


@task(retries=1)
def fails_once(directory: str) -> str:
    """Fails the first time it runs in ``directory``, succeeds the second."""
    marker = Path(directory) / "ran"
    if not marker.exists():
        marker.touch()
        raise RuntimeError("first try fails")
    return "second try"


@workflow
def retried(directory: str) -> str:
    return fails_once(directory)


@task(limits={"memory": "64Mi"}, system_retries=0)  # one attempt: the tests read its system failure
def hungry(size: int) -> int:
    return len(bytearray(size))


@workflow
def eats_memory(size: int) -> int:
    return hungry(size)


@task(system_retries=0)  # one attempt: the tests read its system failure
def slow(x: int) -> int:
    return x + 1


@workflow
def one_slow(x: int) -> int:
    return slow(x)


@task
def double(x: int) -> int:
    return 2 * x


@workflow
def doubled(xs: list[int]) -> list[int]:
    return map_task(double, concurrency=10)(x=xs)


@task(retries=1)
def flaky_item(x: int, directory: str) -> int:
    """Items divisible by 4 fail their first try; item 7 fails every try."""
    marker = Path(directory) / f"ran-{x}"
    if x == 7 or (x % 4 == 0 and not marker.exists()):
        marker.touch()
        raise ValueError(f"item {x} fails")
    return x + 100


@workflow
def flaky_map(xs: list[int], directory: str) -> list[int | None]:
    return map_task(flaky_item, over=["x"], concurrency=6, min_success_ratio=0.9)(x=xs, directory=directory)


@task(limits={"memory": "64Mi"}, system_retries=0)  # one attempt: the tests read its system failure
def hungry_item(size: int) -> int:
    return len(bytearray(size))


@workflow
def hungry_map(sizes: list[int]) -> list[int | None]:
    return map_task(hungry_item, min_success_ratio=0.5)(size=sizes)


@task(timeout=2, retries=0)
def waits(x: int) -> int:
    """Item 1 sleeps past its timeout."""
    if x == 1:
        time.sleep(60)
    return x


@workflow
def one_item_times_out(xs: list[int]) -> list[int | None]:
    return map_task(waits, min_success_ratio=0.5)(x=xs)


@task
def blob(size: int) -> str:
    return "x" * size


@task
def length(text: str) -> int:
    return len(text)


@workflow
def large_value(size: int) -> int:
    """A value too large to travel in an event: written to the object store by one pod, read by the next."""
    return length(text=blob(size=size))
