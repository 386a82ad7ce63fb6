"""Tasks and workflows for the unit tests of the pure core and the SDK.

Tasks live at module level, as workers need them. Functions that are meant to be refused by
``@task`` are left undecorated here, so this module imports; the tests decorate them.
"""

from __future__ import annotations

import dataclasses
import socket
from typing import Any, NamedTuple

import msgspec

from plait import task, workflow


class Point(msgspec.Struct, frozen=True):
    x: int
    y: int


@dataclasses.dataclass
class Box:
    corner: Point
    label: str = ""


class Bounds(NamedTuple):
    low: int
    high: int


class Plain:
    """A class that is neither a Struct nor a dataclass: plait cannot serialize it."""


class Connected(msgspec.Struct):
    conn: socket.socket


@task
def increment(x: int) -> int:
    return x + 1


@task
def double(x: int) -> int:
    return 2 * x


@task
def merge(a: int, b: int) -> int:
    return a + b


@task
def scale(x: int, by: int) -> int:
    return x * by


@task
def text(x: int) -> str:
    return str(x)


@task
def summarize(values: list[int]) -> Bounds:
    return Bounds(min(values), max(values))


@task
def count(values: list[int]) -> int:
    return len(values)


@task
def weigh(table: dict[str, int]) -> int:
    return sum(table.values())


@task
def describe(value: Any) -> str:
    return repr(value)


@task
def maybe_count(values: list[int] | None = None) -> int:
    return len(values or [])


@task
def shift(point: Point, by: int) -> Point:
    return Point(point.x + by, point.y + by)


@task
def shapes(
    point: Point,
    box: Box,
    boxes: list[Box],
    data: bytes,
    label: str | None,
    table: dict[str, float],
    anything: Any,
) -> None:
    return None


@task
def with_defaults(x: int, by: int = 2, tag: str | None = None, data: bytes = b"hi") -> int:
    return x * by


@task(retries=2)
def add_up(values: list[int], offset: int) -> int:
    return sum(values) + offset


@task(retries=2)
def flaky(x: int) -> int:
    return x


@task(retries=1, queue="gpu")
def flaky_on_gpu(x: int) -> int:
    return x


def plain_increment(x: int) -> int:
    return x + 1


def takes_socket(sock: socket.socket) -> int:
    return 0


def takes_plain(thing: Plain) -> int:
    return 0


def returns_plain(x: int) -> Plain:
    return Plain()


def takes_connected(value: Connected) -> int:
    return 0


def takes_union(value: int | str) -> int:
    return 0


def takes_int_keys(table: dict[int, str]) -> int:
    return 0


def untyped(x) -> int:  # type: ignore[no-untyped-def]
    return 0


def no_return_hint(x: int):  # type: ignore[no-untyped-def]
    return x


def variadic(*values: int) -> int:
    return sum(values)


@workflow
def chain(start: int = 0) -> int:
    value = increment(x=start)
    for _ in range(4):
        value = increment(x=value)
    return value


@workflow
def diamond(x: int) -> int:
    top = increment(x=x)
    return merge(a=double(x=top), b=increment(x=top))


@workflow
def fan_out_fan_in(x: int = 1) -> Bounds:
    bounds = summarize(values=[scale(x=x, by=by) for by in range(1, 6)])
    return Bounds(low=increment(x=bounds.low), high=bounds.high)


@workflow
def retried(x: int) -> int:
    return merge(a=flaky(x=x), b=flaky_on_gpu(x=x))


@workflow
def moved(point: Point, by: int = 1) -> Point:
    return shift(point=point, by=by)


@workflow
def passthrough(x: int, label: str = "none") -> str:
    return label


@workflow
def doubled_up(x: int) -> int:
    top = increment(x=x)
    return merge(a=top, b=top)
