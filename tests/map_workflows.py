"""Map tasks for the tests (module level, so executor workers can import them)."""

from __future__ import annotations

from plait import map_task, task, workflow


@task
def scale(x: int, factor: int) -> int:
    return x * factor


@task
def total(values: list[int]) -> int:
    return sum(values)


@task
def odd_fails(x: int) -> int:
    if x % 2:
        raise ValueError(f"{x} is odd")
    return x


@task
def tag(word: str, n: int) -> str:
    return f"{word}{n}"


@workflow
def scaled_sum(xs: list[int], factor: int = 2) -> int:
    return total(map_task(scale, concurrency=3)(x=xs, factor=factor))


@workflow
def scaled(xs: list[int], factor: int = 2) -> list[int]:
    return map_task(scale)(x=xs, factor=factor)


@workflow
def tolerant(xs: list[int]) -> list[int | None]:
    return map_task(odd_fails, min_success_ratio=0.5)(x=xs)


@workflow
def strict(xs: list[int]) -> list[int]:
    return map_task(odd_fails)(x=xs)


@workflow
def zipped(words: list[str], ns: list[int]) -> list[str]:
    return map_task(tag)(word=words, n=ns)
