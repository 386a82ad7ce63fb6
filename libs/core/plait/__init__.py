"""plait: typed tasks and workflows, scheduled from an event log on NATS JetStream."""

from importlib.metadata import version

from plait.client import AsyncClient, AsyncExecutionHandle, Client, ExecutionHandle, ExecutionOutcome
from plait.core.notifications import Notify
from plait.core.schedules import CronSchedule, FixedRate
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
    Directory,
    Dynamic,
    File,
    LaunchPlan,
    MappedTask,
    Task,
    Workflow,
    approve,
    conditional,
    dynamic,
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
    "CronSchedule",
    "DefinitionError",
    "Directory",
    "Dynamic",
    "ExecutionError",
    "ExecutionHandle",
    "ExecutionOutcome",
    "File",
    "FixedRate",
    "InputError",
    "LaunchPlan",
    "MappedTask",
    "NotFound",
    "Notify",
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
    "dynamic",
    "map_task",
    "sleep",
    "task",
    "wait_for_input",
    "workflow",
]
