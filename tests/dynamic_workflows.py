"""Dynamic tasks for the tests (module level, so executor workers can import them)."""

from __future__ import annotations

from plait import dynamic, task, workflow


@task
def numbers(n: int) -> list[int]:
    return list(range(1, n + 1))


@task
def square(x: int) -> int:
    return x * x


@task
def total(values: list[int]) -> int:
    return sum(values)


@task
def slow_square(x: int, marker: str) -> int:
    """Squares ``x`` once the file ``marker`` exists: lets a test act while the generated nodes run."""
    import pathlib
    import time

    while not pathlib.Path(marker).exists():
        time.sleep(0.05)
    return x * x


@task
def fails_on(x: int, bad: int) -> int:
    if x == bad:
        raise ValueError(f"{x} is bad")
    return x


@dynamic
def squares(xs: list[int]) -> list[int]:
    """One node per item, known only when the list is."""
    return [square(x=x) for x in xs]


@dynamic
def slow_squares(xs: list[int], marker: str) -> list[int]:
    return [slow_square(x=x, marker=marker) for x in xs]


@dynamic
def checked(xs: list[int], bad: int) -> list[int]:
    return [fails_on(x=x, bad=bad) for x in xs]


@dynamic
def nested(groups: list[list[int]]) -> list[list[int]]:
    return [squares(xs=group) for group in groups]


@workflow
def sum_of_squares(n: int) -> int:
    """A list computed at run time fans out into one node per item; a downstream task sums them."""
    return total(values=squares(xs=numbers(n=n)))


@workflow
def slow_sum_of_squares(n: int, marker: str) -> int:
    return total(values=slow_squares(xs=numbers(n=n), marker=marker))


@workflow
def checked_sum(xs: list[int], bad: int) -> int:
    return total(values=checked(xs=xs, bad=bad))


@workflow
def nested_squares(groups: list[list[int]]) -> list[list[int]]:
    return nested(groups=groups)


@dynamic
def miswired(xs: list[int]) -> list[int]:
    """Calls a task with an input it does not have: a fault of the body, found when it runs."""
    return [square(y=x) for x in xs]  # type: ignore[call-arg]
