"""Tasks and workflows with timeouts, for the tests (module level, so executor workers can import them)."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

from plait import task, workflow


def sleep_leaving_pid(directory: str, seconds: float) -> float:
    (Path(directory) / str(os.getpid())).touch()
    time.sleep(seconds)
    return seconds


@task(timeout=1, retries=1)
def sleepy(directory: str, seconds: float) -> float:
    """Sleeps, having left its process id in ``directory``."""
    return sleep_leaving_pid(directory, seconds)


@task(timeout=timedelta(minutes=1))
def patient(directory: str, seconds: float) -> float:
    """Sleeps, having left its process id in ``directory``."""
    return sleep_leaving_pid(directory, seconds)


@workflow
def sleeping(directory: str, seconds: float) -> float:
    return sleepy(directory=directory, seconds=seconds)


@workflow(timeout=timedelta(seconds=2))
def bounded(directory: str, seconds: float) -> float:
    return patient(directory=directory, seconds=seconds)


@task(timeout=1, retries=1, system_retries=1)
def budgeted(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@workflow
def budgets(seconds: float) -> float:
    return budgeted(seconds=seconds)


@task
def unbounded(directory: str, seconds: float) -> float:
    """Sleeps, having left its process id in ``directory``; sets no timeout of its own."""
    return sleep_leaving_pid(directory, seconds)


@workflow
def sleeping_without_a_timeout(directory: str, seconds: float) -> float:
    return unbounded(directory=directory, seconds=seconds)
