"""Tasks that break the executor running them: only for tests that run executors as their own processes."""

from __future__ import annotations

import multiprocessing
import os
import signal

from plait import task, workflow


@task
def kill_executor() -> int:
    """Kill the executor process running this attempt (its worker's parent), as a crash of it would."""
    executor = multiprocessing.parent_process()
    if executor is None or executor.pid is None:
        raise RuntimeError("not running in an executor's worker process")
    os.kill(executor.pid, signal.SIGKILL)
    return 0


@workflow
def kills_its_executor() -> int:
    return kill_executor()
