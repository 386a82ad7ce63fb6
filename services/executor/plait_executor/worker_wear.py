"""When a warm local worker process is replaced after an attempt instead of kept: its peak memory passed
``PLAIT_WORKER_MAX_MEMORY_MB`` (a task that leaks, or once held much, would have it killed by the kernel in a later
attempt, which would then fail as lost), its tasks left more than ``LEAKED_THREADS_LIMIT`` threads running, or it
ran ``PLAIT_WORKER_MAX_ATTEMPTS`` attempts. The attempt that wore it out ends as it did; the next one gets a fresh
process."""

from __future__ import annotations

import resource
import sys
import threading
from typing import Literal, NamedTuple

import msgspec

LEAKED_THREADS_LIMIT = 64
"""Threads a worker's tasks may leave running (a pool not shut down, say) before the worker is replaced."""

MIB = 1024 * 1024


class WorkerLimits(NamedTuple):
    max_memory_bytes: int = 0  # 0: no limit
    max_attempts: int = 0  # 0: no limit


NO_LIMITS = WorkerLimits()


class WorkerWear(msgspec.Struct, frozen=True):
    """Why the worker that ran an attempt is to be replaced, as it measured itself."""

    reason: Literal["memory", "threads", "attempts"]
    detail: str


class WearGauge:
    """In a worker process: its wear, measured after each attempt (0.3 µs; 2 µs with a memory limit)."""

    def __init__(self) -> None:
        self._threads_at_start = threading.active_count()

    def worn(self, max_memory_bytes: int) -> WorkerWear | None:
        if max_memory_bytes and (peak := peak_memory_bytes()) > max_memory_bytes:
            limit = f"PLAIT_WORKER_MAX_MEMORY_MB={max_memory_bytes // MIB}"
            return WorkerWear("memory", f"its peak memory, {peak // MIB} MiB, passed {limit}")
        left = threading.active_count() - self._threads_at_start
        if left > LEAKED_THREADS_LIMIT:
            return WorkerWear("threads", f"its tasks left {left} threads running (at most {LEAKED_THREADS_LIMIT})")
        return None


def peak_memory_bytes() -> int:
    """This process's peak resident memory."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes there, KiB on Linux
