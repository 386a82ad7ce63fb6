"""Launching a workflow through the pure core, for tests of what its decisions do next."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from plait import codec
from plait.core.commands import LaunchExecution, ResolvedLaunch
from plait.core.decide import decide, decide_batch
from plait.core.events import Decision, Event
from plait.core.model import WorkflowSpec
from plait.core.state import Execution
from plait.sdk import Workflow


def resolved_launch(
    spec: WorkflowSpec,
    inputs: dict[str, Any],
    execution_id: str = "e",
    command_id: str = "launch",
    *,
    project: str = "tests",
    domain: str = "dev",
) -> ResolvedLaunch:
    """A launch of ``spec`` (in tests/dev by default), as the scheduler hands it to ``decide`` once resolved."""
    command = LaunchExecution(
        command_id=command_id,
        execution_id=execution_id,
        project=project,
        domain=domain,
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


def launch_decision(spec: WorkflowSpec, inputs: dict[str, Any], execution_id: str) -> bytes:
    """The stored bytes of the decision that launches ``spec`` in default/development, as a scheduler appends it."""
    launch = resolved_launch(
        spec, inputs, execution_id, f"launch:{execution_id}", project="default", domain="development"
    )
    return stored_decision(execution_id, decide(None, launch))


def stored_decision(execution_id: str, events: list[Event]) -> bytes:
    """The stored bytes of a first decision of ``execution_id`` holding ``events``."""
    decision = Decision(
        execution_id=execution_id,
        at=datetime.now(UTC),
        replica="test",
        commands=(f"command:{execution_id}",),
        previous="",
        events=tuple(events),
    )
    return codec.encode(decision)
