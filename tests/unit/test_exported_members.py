"""The public surface of ``plait``: what ``from plait import ...`` offers is exactly this list."""

from __future__ import annotations

import builtins
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import plait
import plait.client
from plait.core import events

EXPORTED = {
    "AsyncClient",
    "AsyncExecutionHandle",
    "Client",
    "ConflictError",
    "ConnectError",
    "CronSchedule",
    "DefinitionError",
    "Directory",
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
    "map_task",
    "sleep",
    "task",
    "wait_for_input",
    "workflow",
    "Dynamic",
    "dynamic",
}

CLIENT_EXPORTED = {
    "LATEST",
    "ArtifactNode",
    "AsyncClient",
    "AsyncExecutionHandle",
    "AttemptView",
    "CacheClearing",
    "CacheEntryDetail",
    "CacheEntrySummary",
    "Client",
    "EntityDetail",
    "EntitySummary",
    "EntityVersion",
    "ExecutionDetail",
    "ExecutionHandle",
    "ExecutionOutcome",
    "ExecutionSummary",
    "LaunchPlanSchedule",
    "LineageEdge",
    "LineageGraph",
    "NodeExecutionNode",
    "NodeView",
    "Record",
    "SameValue",
    "StoredDecision",
    "TaskError",
    "idempotent_execution_id",
}


def test_the_exported_members_are_pinned_and_importable() -> None:
    assert set(plait.__all__) == EXPORTED
    assert all(getattr(plait, name, None) is not None for name in plait.__all__)


def test_the_clients_exported_members_are_pinned_and_importable() -> None:
    """``plait.client`` offers the clients, their handles, and every type their methods return."""
    assert set(plait.client.__all__) == CLIENT_EXPORTED
    assert all(getattr(plait.client, name, None) is not None for name in plait.client.__all__)


def test_no_exported_name_shadows_a_builtin_or_names_an_event() -> None:
    """``ConnectionError`` shadowed the builtin, and ``ExecutionFailed`` was both an exception and an event."""
    taken = set(dir(builtins)) | {name for name in dir(events) if not name.startswith("_")}
    assert not EXPORTED & taken


def test_every_error_is_a_plait_error() -> None:
    errors = [getattr(plait, name) for name in plait.__all__ if name.endswith(("Error", "Conflict", "Found"))]
    errors += [plait.Timeout, plait.Unavailable]
    assert all(issubclass(error, plait.PlaitError) for error in errors)
    assert all(
        issubclass(error, plait.TransportError) for error in (plait.ConnectError, plait.Timeout, plait.Unavailable)
    )


def test_the_version_is_the_projects() -> None:
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    assert plait.__version__ == project["version"]


@pytest.mark.parametrize(
    "statement",
    ["from plait import task, workflow, File", "import plait_executor.worker", "import plait; plait.__all__"],
)
def test_defining_tasks_and_the_worker_module_load_no_transport(statement: str) -> None:
    """The clients (and NATS with them) are imported on first use: a module of tasks, and the module a worker process
    runs, load only the SDK."""
    probe = f"import sys; {statement}; print(sorted({{'nats', 'plait.client', 'asyncpg'}} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


@pytest.mark.parametrize("name", ["Client", "client.Client"])
def test_a_client_name_is_imported_on_first_use(name: str) -> None:
    probe = f"import sys, plait; before = 'plait.client' in sys.modules; print(before, plait.{name})"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "False <class 'plait.client.blocking.Client'>"
