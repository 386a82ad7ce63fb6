"""Launching a workflow through the pure core, for tests of what its decisions do next."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from plait.core.commands import LaunchExecution
from plait.core.decide import ResolvedLaunch, decide_batch
from plait.core.events import Event
from plait.core.model import WorkflowSpec
from plait.core.state import Execution
from plait.sdk import Workflow


def resolved_launch(
    spec: WorkflowSpec, inputs: dict[str, Any], execution_id: str = "e", command_id: str = "launch"
) -> ResolvedLaunch:
    """A launch of ``spec`` in tests/dev, as the scheduler hands it to ``decide`` once resolved."""
    command = LaunchExecution(
        command_id=command_id,
        execution_id=execution_id,
        project="tests",
        domain="dev",
        workflow=spec.name,
        version=spec.version,
        inputs=inputs,
    )
    return ResolvedLaunch(command=command, workflow=spec)


def launched(
    wf: Workflow[..., Any], inputs: dict[str, Any], at: datetime, execution_id: str = "e"
) -> tuple[Execution, list[Event]]:
    """The state of a new execution of ``wf``, and the events its launch decided."""
    outcome = decide_batch(None, [resolved_launch(wf.spec, inputs, execution_id)], at)
    assert outcome.state is not None
    return outcome.state, outcome.events
