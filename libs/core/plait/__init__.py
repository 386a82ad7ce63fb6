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
)
from plait.sdk import LaunchPlan, Task, Workflow, task, workflow

__all__ = [
    "ConflictError",
    "ConnectionError",
    "DefinitionError",
    "ExecutionFailed",
    "InputError",
    "LaunchPlan",
    "NotFound",
    "PlaitError",
    "RegistrationConflict",
    "Task",
    "Workflow",
    "task",
    "workflow",
]
