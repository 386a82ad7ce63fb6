"""plait's local executor: runs dispatched attempts in a warm pool of worker processes and reports them.

The service and the pool are imported on first use: ``plait_executor.worker``, what a worker process runs, needs
neither NATS nor the rest of the service (its fork server loads the clients anyway: see ``WorkerPool``)."""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plait_executor.attempt import AttemptOutcome, run_attempt
    from plait_executor.pool import WorkerPool
    from plait_executor.service import ExecutorService

__all__ = ["AttemptOutcome", "ExecutorService", "WorkerPool", "run_attempt"]

_HOMES = {
    "AttemptOutcome": "plait_executor.attempt",
    "run_attempt": "plait_executor.attempt",
    "WorkerPool": "plait_executor.pool",
    "ExecutorService": "plait_executor.service",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(import_module(_HOMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'plait_executor' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
