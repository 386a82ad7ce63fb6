"""Launching a workflow through the pure core, for tests of what its decisions do next."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from plait.core.commands import LaunchExecution
from plait.core.decide import ResolvedLaunch, decide_batch
from plait.core.events import Event
from plait.core.state import Execution
from plait.sdk import Workflow


def launched(
    wf: Workflow[..., Any], inputs: dict[str, Any], at: datetime, execution_id: str = "e"
) -> tuple[Execution, list[Event]]:
    """The state of a new execution of ``wf``, and the events its launch decided."""
    command = LaunchExecution(
        command_id="launch",
        execution_id=execution_id,
        project="tests",
        domain="dev",
        workflow=wf.name,
        version=wf.spec.version,
        inputs=inputs,
    )
    outcome = decide_batch(None, [ResolvedLaunch(command=command, workflow=wf.spec)], at)
    assert outcome.state is not None
    return outcome.state, outcome.events
