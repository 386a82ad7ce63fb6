"""plait: typed tasks and workflows, scheduled from an event log on NATS JetStream."""

from plait.errors import (
    ConflictError,
    ConnectionError,
    DefinitionError,
    ExecutionFailed,
    InputError,
    NotFound,
    PlaitError,
    RegistrationConflict,
    Timeout,
    Unavailable,
)
from plait.sdk import LaunchPlan, MappedTask, Task, Workflow, map_task, task, workflow

__all__ = [
    "ConflictError",
    "ConnectionError",
    "DefinitionError",
    "ExecutionFailed",
    "InputError",
    "LaunchPlan",
    "MappedTask",
    "NotFound",
    "PlaitError",
    "RegistrationConflict",
    "Task",
    "Timeout",
    "Unavailable",
    "Workflow",
    "map_task",
    "task",
    "workflow",
]
