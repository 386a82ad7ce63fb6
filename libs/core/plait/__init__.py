"""plait: typed tasks and workflows, scheduled from an event log on NATS JetStream."""

from importlib.metadata import version

from plait.client import AsyncClient, AsyncExecutionHandle, Client, ExecutionHandle, ExecutionOutcome
from plait.errors import (
    ConflictError,
    ConnectError,
    DefinitionError,
    ExecutionError,
    InputError,
    NotFound,
    PlaitError,
    RegistrationConflict,
    Timeout,
    TransportError,
    Unavailable,
)
from plait.sdk import (
    LaunchPlan,
    MappedTask,
    Task,
    Workflow,
    approve,
    conditional,
    map_task,
    sleep,
    task,
    wait_for_input,
    workflow,
)

__version__ = version("plait")

__all__ = [
    "AsyncClient",
    "AsyncExecutionHandle",
    "Client",
    "ConflictError",
    "ConnectError",
    "DefinitionError",
    "ExecutionError",
    "ExecutionHandle",
    "ExecutionOutcome",
    "InputError",
    "LaunchPlan",
    "MappedTask",
    "NotFound",
    "PlaitError",
    "RegistrationConflict",
    "Task",
    "Timeout",
    "TransportError",
    "Unavailable",
    "Workflow",
    "__version__",
    "approve",
    "conditional",
    "map_task",
    "sleep",
    "task",
    "wait_for_input",
    "workflow",
]
