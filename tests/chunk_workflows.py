"""Fan-outs whose attempts travel in one dispatch chunk, and note each run of theirs in a file (to count runs)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import anyio

from plait import task, workflow


def _note_run(runs: str, name: str) -> None:
    with open(runs, "a") as file:  # one short appended line per run: whole, even from several processes
        file.write(f"{name}\n")


def runs_of(runs: str) -> list[str]:
    """The names of the runs noted in ``runs``, in the order they started."""
    return Path(runs).read_text().split() if os.path.exists(runs) else []


async def until_run(runs: str, names: set[str], timeout: float = 60.0) -> None:
    """Wait until each of ``names`` has noted its run in ``runs``."""
    await _until_noted(runs, lambda noted: names <= set(noted), timeout)


async def until_run_count(runs: str, count: int, timeout: float = 60.0) -> None:
    """Wait until ``count`` runs are noted in ``runs``."""
    await _until_noted(runs, lambda noted: len(noted) >= count, timeout)


async def _until_noted(runs: str, enough: Callable[[list[str]], bool], timeout: float) -> None:
    """Until what ``runs`` holds is ``enough`` (written by worker processes: polled)."""
    with anyio.fail_after(timeout):
        while True:
            if enough(runs_of(runs)):
                return
            await anyio.sleep(0.02)


@task
def gated(gate: str, runs: str, name: str) -> str:
    """Notes its run, then runs until the file at ``gate`` exists."""
    _note_run(runs, name)
    while not os.path.exists(gate):
        time.sleep(0.005)
    return name


@task
def noted(runs: str, name: str, seconds: float = 0.0) -> str:
    """Notes its run, then runs for ``seconds``."""
    _note_run(runs, name)
    time.sleep(seconds)
    return name


@task
def counted(names: list[str]) -> int:
    return len(names)


@workflow
def gate_then_quick(gate: str, runs: str) -> int:
    """Node ``gated`` first, four quick ones after it: one decision queues them, one chunk carries them."""
    return counted(names=[gated(gate=gate, runs=runs, name="g")] + [noted(runs=runs, name=f"q{i}") for i in range(4)])


@workflow
def quick_then_slow(runs: str, slow_seconds: float = 3.0) -> int:
    """Two quick nodes, then four slow ones, in one chunk."""
    quick = [noted(runs=runs, name=f"q{i}") for i in range(2)]
    slow = [noted(runs=runs, name=f"s{i}", seconds=slow_seconds) for i in range(4)]
    return counted(names=quick + slow)


@workflow
def wide() -> int:
    """Forty no-op nodes."""
    return counted(names=[noted(runs=os.devnull, name=f"n{i}") for i in range(40)])


@workflow
def two_gated(gate: str, runs: str) -> int:
    """Two gated nodes queued by one decision: one dispatch chunk carries both."""
    return counted(names=[gated(gate=gate, runs=runs, name=f"g{i}") for i in range(2)])


@workflow
def one_gated(gate: str, runs: str, name: str) -> str:
    """One gated node: its dispatch message carries it alone."""
    return gated(gate=gate, runs=runs, name=name)


@workflow
def two_slow(runs: str, seconds: float) -> int:
    """Two nodes of ``seconds`` each, queued by one decision: one dispatch chunk carries both."""
    return counted(names=[noted(runs=runs, name=f"s{i}", seconds=seconds) for i in range(2)])
