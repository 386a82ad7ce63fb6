"""Workflows only the simulator runs: delayed retries, alone and in a map (module level, so attempts can load them)."""

from __future__ import annotations

from plait import dynamic, map_task, task, workflow


@task(retries=2, retry_delay_seconds=1.0)
def wobbly(x: int) -> int:
    return x + 1


@workflow
def retried_later(x: int = 1) -> int:
    return wobbly(x=wobbly(x=x))


@workflow
def items_retried_later(xs: list[int]) -> list[int]:
    return map_task(wobbly, concurrency=2)(x=xs)


@task
def widen(x: str) -> str:
    return x * 200


@task
def length(s: str, n: int) -> int:
    return len(s) + n


@workflow
def widely_read(x: str = "abcdef") -> list[int]:
    """One value read by six tasks: the decision that queues them repeats it six times (issue 10 defect 1)."""
    wide = widen(x=x)
    return [length(s=wide, n=n) for n in range(6)]


@task(timeout=5, retries=1)
def slow(x: int) -> int:
    return x + 1


@workflow
def timed(x: int = 1) -> int:
    """Attempts that may hang past their task's timeout: timed out, retried, and killed."""
    return slow(x=slow(x=x))


@workflow(timeout=8)
def bounded(x: int = 1) -> int:
    """An execution that may run past its workflow's timeout: failed, and its running attempts killed."""
    return slow(x=slow(x=x))


@task
def part(x: int) -> int:
    return x + 1


@task
def joined(a: int, b: int) -> int:
    return a + b


@workflow(failure_policy="finish")
def finishing(x: int = 1) -> int:
    """Two branches joined: with ``finish``, a failed node skips what depends on it and the other branch goes on."""
    return joined(a=part(x=part(x=x)), b=part(x=part(x=x)))


@task
def len_of(values: list[int], groups: list[list[int]]) -> int:
    return len(values) + len(groups)


@dynamic
def parts(xs: list[int]) -> list[int]:
    """One ``part`` node per item, generated when the list is known."""
    return [part(x=x) for x in xs]


@dynamic
def parts_of_parts(groups: list[list[int]]) -> list[list[int]]:
    return [parts(xs=group) for group in groups]


@workflow(failure_policy="finish")
def generated(x: int = 1) -> int:
    """A dynamic node fanning out (its generated nodes may fail), a nested one, and a branch beside them."""
    flat = parts(xs=[x, part(x=x), x])
    nested = parts_of_parts(groups=[[x], [x, x]])
    return joined(a=joined(a=part(x=x), b=x), b=len_of(values=flat, groups=nested))
