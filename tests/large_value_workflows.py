"""Workflows passing values of megabytes (module level, so executor workers can import them)."""

from __future__ import annotations

from plait import map_task, task, workflow


@task
def blob(size: int) -> str:
    return "x" * size


@task
def distinct_blobs(count: int, size: int) -> list[str]:
    return [chr(ord("a") + i) * size for i in range(count)]


@task
def length(text: str) -> int:
    return len(text)


@task
def total(values: list[int]) -> int:
    return sum(values)


@workflow
def read_by_eight(size: int) -> int:
    value = blob(size=size)
    return total(values=[length(text=value) for _ in range(8)])


@workflow
def mapped_over_distinct(count: int, size: int) -> int:
    return total(values=map_task(length)(text=distinct_blobs(count=count, size=size)))


@workflow
def mapped_from_launch(texts: list[str]) -> int:
    return total(values=map_task(length)(text=texts))
