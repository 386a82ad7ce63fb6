"""Dispatch records: what an executor worker needs to run one attempt, derived from a ``NodeQueued`` event."""

from __future__ import annotations

from typing import Any

import msgspec

from plait.core.events import NodeQueued
from plait.core.model import TaskSpec
from plait.core.state import Execution, task_timeout


class Dispatch(msgspec.Struct, frozen=True, kw_only=True, tag="dispatch.v1"):
    execution_id: str
    project: str
    domain: str
    node: str
    attempt_id: str
    attempt: int
    task: TaskSpec
    inputs: dict[str, Any]
    decision_sequence: int  # the stream sequence of the decision that queued this attempt
    code_bundle: str | msgspec.UnsetType = msgspec.UNSET  # the workflow's source bundle, when registered with one
    # The workflow (name, version) whose bundle it is: the executor checks that it is registered with that bundle.
    workflow: tuple[str, str] | msgspec.UnsetType = msgspec.UNSET


def dispatch_of(state: Execution, event: NodeQueued, decision_sequence: int) -> Dispatch:
    """The dispatch record of the attempt ``event`` queued, in the decision stored at ``decision_sequence``."""
    return Dispatch(
        execution_id=state.execution_id,
        project=state.project,
        domain=state.domain,
        node=event.node,
        attempt_id=event.attempt_id,
        attempt=event.attempt,
        task=_with_timeout(state.workflow.tasks[event.task], task_timeout(state, event.task)),
        inputs=event.inputs,
        decision_sequence=decision_sequence,
        code_bundle=state.workflow.code_bundle,
        workflow=msgspec.UNSET
        if state.workflow.code_bundle is msgspec.UNSET
        else (state.workflow.name, state.workflow.version),
    )


def _with_timeout(task: TaskSpec, seconds: float | None) -> TaskSpec:
    """The task as its attempt runs it: with the execution's default timeout when it sets none (the executor's
    backstop and a Job's ``activeDeadlineSeconds`` read it from the dispatch)."""
    return task if seconds == task.timeout_seconds else msgspec.structs.replace(task, timeout_seconds=seconds)
