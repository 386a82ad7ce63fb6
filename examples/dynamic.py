"""A dynamic workflow: list the files of a folder when it runs, and count each file's words in a node of its own.

plait run examples/dynamic.py:word_counts --folder docs
"""

from __future__ import annotations

from pathlib import Path

from plait import dynamic, task, workflow


@task
def list_files(folder: str, suffix: str) -> list[str]:
    return sorted(str(path) for path in Path(folder).glob(f"*{suffix}"))


@task
def count_words(path: str) -> int:
    return len(Path(path).read_text().split())


@dynamic
def count_each(paths: list[str]) -> dict[str, int]:
    """Runs once the list is known: one count_words node per file, their counts by file name."""
    return {Path(path).name: count_words(path=path) for path in paths}


@task
def total(counts: dict[str, int]) -> int:
    return sum(counts.values())


@workflow
def word_counts(folder: str = "docs", suffix: str = ".md") -> int:
    return total(counts=count_each(paths=list_files(folder=folder, suffix=suffix)))
