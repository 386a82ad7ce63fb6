"""plait's local executor: runs dispatched attempts in a warm pool of worker processes and reports them."""

from plait_executor.attempt import AttemptOutcome, run_attempt
from plait_executor.pool import WorkerPool
from plait_executor.service import ExecutorService

__all__ = ["AttemptOutcome", "ExecutorService", "WorkerPool", "run_attempt"]
