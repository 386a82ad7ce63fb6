"""A warm worker process (plait_executor.worker) as the pool sees it: usable until it is killed or lost."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal

import pytest

from plait.core.model import TaskTarget
from plait_executor.pool import default_start_method
from plait_executor.worker import AttemptRequest, WorkerLost, WorkerProcess

from . import executor_tasks as tasks


async def test_a_worker_lost_mid_attempt_is_never_usable_again() -> None:
    # Under forkserver, reading the lost worker's exit status consumes what made its sentinel readable, and the
    # server closes it only a moment later: a busy host once handed the next attempt to the dead worker.
    context = multiprocessing.get_context(default_start_method())
    request = AttemptRequest(TaskTarget(tasks.__name__, "die"), {"code": 3})
    for _ in range(10):
        worker = WorkerProcess(context)
        try:
            with pytest.raises(WorkerLost, match="exit code 3"):
                await worker.run(request)
            assert not worker.usable
        finally:
            await worker.close()


async def test_an_idle_worker_that_died_is_not_usable() -> None:
    worker = WorkerProcess(multiprocessing.get_context(default_start_method()))
    try:
        assert worker.usable
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
        # Waits for the sentinel to turn readable without reading it: ``join`` would consume the exit status, and
        # under forkserver the sentinel then stays unreadable until the server closes it a moment later.
        assert multiprocessing.connection.wait([worker._process.sentinel], 10)
        assert not worker.usable
    finally:
        await worker.close()
