"""A worker whose descriptors are numbered past 1,023 (an executor with a large pool, or many files open under the
raised file limit containers have) is checked for liveness as any other: ``select.select`` would refuse them, and
every attempt would fail out of the pool instead of returning its outcome."""

from __future__ import annotations

import os
import resource

import pytest

from plait.core.model import TaskTarget
from plait_executor.pool import WorkerPool

from . import executor_tasks as tasks

FD_SETSIZE = 1024


@pytest.fixture
def descriptors_past_fd_setsize():
    """Open descriptors until the next one is numbered past FD_SETSIZE (the worker's sentinel will be)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < FD_SETSIZE + 64:
        pytest.skip(f"RLIMIT_NOFILE {soft}: no descriptor can be numbered past {FD_SETSIZE}")
    opened: list[int] = []
    try:
        while True:
            fd = os.open(os.devnull, os.O_RDONLY)
            opened.append(fd)
            if fd >= FD_SETSIZE + 8:
                break
        # Free none below: the worker's pipe and sentinel take the next numbers, all past FD_SETSIZE.
        yield
    finally:
        for fd in opened:
            os.close(fd)


async def test_an_attempt_runs_when_the_workers_descriptors_are_numbered_past_fd_setsize(
    descriptors_past_fd_setsize: None,
) -> None:
    async with WorkerPool(1) as pool:
        outcome = await pool.run(TaskTarget(tasks.__name__, "add"), {"a": 1, "b": 2})
        assert outcome.error is None and outcome.outputs == {"result": 3}
        # The pool keeps its one worker for the next attempt.
        again = await pool.run(TaskTarget(tasks.__name__, "add"), {"a": 2, "b": 2})
        assert again.error is None and again.outputs == {"result": 4}
