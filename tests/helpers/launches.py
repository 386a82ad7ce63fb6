"""Launches decided without a server: the resolved launch command of ``workflows.add_two``."""

from __future__ import annotations

from plait.core.commands import LaunchExecution, ResolvedLaunch
from tests import workflows


def add_two_launch(execution_id: str, project: str = "p", domain: str = "d") -> ResolvedLaunch:
    """The launch of ``add_two`` with a=1 and b=2 (its result is 3), resolved as the registry would."""
    command = LaunchExecution(
        command_id="launch",
        execution_id=execution_id,
        project=project,
        domain=domain,
        workflow=workflows.add_two.name,
        version=workflows.add_two.spec.version,
        inputs={"a": 1, "b": 2},
    )
    return ResolvedLaunch(command=command, workflow=workflows.add_two.spec)
