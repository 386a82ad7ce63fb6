"""Workflows passing values of megabytes (module level, so executor workers can import them)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from plait import Directory, File, map_task, task, workflow


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


@task
def big_bytes(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + b"\x00" * (size % 256)


@task
def byte_count(data: bytes) -> int:
    return len(data)


@workflow
def pass_bytes(size: int) -> int:
    return byte_count(data=big_bytes(size=size))


@task(system_retries=0)
def counted_bytes(data: bytes) -> int:
    return len(data)


@workflow
def count_bytes(data: bytes) -> int:
    return counted_bytes(data=data)


@workflow
def blob_length(size: int) -> int:
    return length(text=blob(size=size))


@task(cache=True, cache_version="1")
def cached_length(text: str) -> int:
    return len(text)


@workflow
def length_cached(text: str) -> int:
    return cached_length(text=text)


@task
def write_file(size: int) -> File:
    descriptor, path = tempfile.mkstemp(prefix="plait-test-")
    with os.fdopen(descriptor, "wb") as file:
        file.write(b"f" * size)
    return File(path)


@task
def file_size(file: File) -> int:
    return len(file.read_bytes())


@workflow
def pass_file(size: int) -> int:
    return file_size(file=write_file(size=size))


@workflow
def size_of(file: File) -> int:
    return file_size(file=file)


@workflow
def made_file(size: int) -> File:
    return write_file(size=size)


@task
def make_tree(count: int) -> Directory:
    root = Path(tempfile.mkdtemp(prefix="plait-tree-"))
    for index in range(count):
        (root / f"part-{index}").mkdir()
        (root / f"part-{index}" / "data.txt").write_text(f"item {index}\n")
    return Directory(str(root))


@task
def tree_listing(tree: Directory) -> list[str]:
    root = Path(tree.path)
    return sorted(f"{path.relative_to(root)}={path.read_text()}" for path in root.rglob("*.txt"))


@workflow
def pass_tree(count: int) -> list[str]:
    return tree_listing(tree=make_tree(count=count))


@task
def numbered_blob(index: int, size: int) -> str:
    return f"{index:08d}" + "x" * size


@workflow
def many_medium_items(indexes: list[int], size: int) -> int:
    return total(values=map_task(length)(text=map_task(numbered_blob)(index=indexes, size=size)))


@task
def shout(text: str) -> str:
    return text.upper()


@workflow
def shouted_lengths(texts: list[str]) -> int:
    return total(values=map_task(length)(text=map_task(shout)(text=texts)))
