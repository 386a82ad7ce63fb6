"""Workflows for abort, failure policy, relaunch and recovery (module level, so executor workers can import them)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from plait import task, workflow


@task
def step(x: int) -> int:
    return x + 1


@task
def unless_flagged(x: int, flag: str) -> int:
    """Fails while the file ``flag`` exists; doubles ``x`` otherwise."""
    if Path(flag).exists():
        raise RuntimeError(f"flag {flag} is set")
    return x * 2


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def lingering(directory: str, seconds: float) -> float:
    """Sleeps, having left its process id in ``directory``."""
    (Path(directory) / str(os.getpid())).touch()
    time.sleep(seconds)
    return seconds


@workflow
def chain(x: int, flag: str) -> int:
    """A → B → C, where B fails while ``flag`` exists."""
    return step(x=unless_flagged(x=step(x=x), flag=flag))


@workflow(failure_policy="finish")
def branches(x: int, flag: str) -> int:
    """Two branches: ``unless_flagged`` → ``step`` fails while ``flag`` exists; ``step-1`` → ``step-2`` does not
    depend on it; ``add`` joins them."""
    left = step(x=unless_flagged(x=x, flag=flag))
    right = step(x=step(x=x))
    return add(a=left, b=right)


@workflow
def lingers(directory: str, seconds: float) -> float:
    return lingering(directory=directory, seconds=seconds)


@task
def add_floats(a: float, b: float) -> float:
    return a + b


@workflow
def lingers_twice(directory: str, seconds: float) -> float:
    """Two lingering tasks side by side: an abort stops both."""
    first = lingering(directory=directory, seconds=seconds)
    return add_floats(a=first, b=lingering(directory=directory, seconds=seconds))
