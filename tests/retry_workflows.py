"""Tasks with delayed retries, for the retry tests (module level, so executor workers can import them)."""

from __future__ import annotations

from pathlib import Path

from plait import map_task, task, workflow


@task(retries=2, retry_delay_seconds=1.0)
def fails_first(directory: str, name: str) -> str:
    """Fails the first time it runs for ``name`` in ``directory``, succeeds afterwards."""
    marker = Path(directory) / name
    if not marker.exists():
        marker.touch()
        raise RuntimeError(f"first try of {name}")
    return name


@workflow
def retried_later(directory: str) -> str:
    return fails_first(directory, "single")


@workflow
def items_retried_later(directory: str, names: list[str]) -> list[str]:
    return map_task(fails_first, over=["name"])(directory=directory, name=names)
