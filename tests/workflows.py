"""Tasks and workflows used by the integration tests (module level, so executor workers can import them)."""

from __future__ import annotations

import time
from typing import NamedTuple

import msgspec

from plait import task, workflow


class Point(msgspec.Struct, frozen=True):
    x: int
    y: int


class Stats(NamedTuple):
    total: int
    count: int


@task
def square(x: int) -> int:
    return x * x


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def total(values: list[int]) -> Stats:
    return Stats(sum(values), len(values))


@task
def noop(x: int) -> int:
    return x


@task
def fail(message: str) -> int:
    raise RuntimeError(message)


@task(retries=2)
def flaky(marker: str) -> str:
    return marker


@task
def shift(point: Point, by: int) -> Point:
    return Point(point.x + by, point.y + by)


@workflow
def sum_of_squares(n: int = 3) -> Stats:
    return total(values=[square(x=i) for i in range(3)] + [square(x=n)])


@workflow
def add_two(a: int, b: int) -> int:
    return add(a=a, b=b)


@workflow
def fan_out() -> Stats:
    return total(values=[noop(x=i) for i in range(200)])


@workflow
def failing(message: str = "boom") -> int:
    first = square(x=2)
    return add(a=first, b=fail(message=message))


@workflow
def retrying() -> str:
    return flaky(marker="ok")


@workflow
def moved(point: Point) -> Point:
    return shift(point=point, by=1)


@workflow
def chain(start: int = 0) -> int:
    value = noop(x=start)
    for _ in range(9):
        value = noop(x=value)
    return value


@task
def pause(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@workflow
def paused(seconds: float = 2.0) -> float:
    return pause(seconds=seconds)


@task
def pair(a: float, b: int) -> float:
    return a + b


@workflow
def pause_beside_failure(seconds: float = 600.0, message: str = "boom") -> float:
    return pair(a=pause(seconds=seconds), b=fail(message=message))


@workflow
def quick_beside_pause(seconds: float = 600.0) -> float:
    return pair(a=pause(seconds=seconds), b=noop(x=1))
