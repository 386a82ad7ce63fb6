"""How an execution ended, as ``wait()`` returns it, and its outputs as the workflow's Python return value."""

from __future__ import annotations

import typing
from datetime import datetime
from typing import Any

import msgspec

from plait.core.events import TaskError
from plait.core.state import Execution, ExecutionStatus
from plait.errors import ExecutionError, PlaitError
from plait.sdk.hints import decode_value
from plait.sdk.signatures import SINGLE_OUTPUT, is_named_tuple
from plait.sdk.workflow import Workflow


class ExecutionOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """An ended execution: how it ended, its outputs (their JSON encoding) or why it did not produce them."""

    execution_id: str
    project: str
    domain: str
    workflow: str
    version: str
    status: ExecutionStatus  # succeeded, failed or aborted
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None  # when it succeeded
    error: TaskError | None  # of the node that failed it
    failed_node: str | None
    abort_reason: str | None
    launched_at: datetime | None
    finished_at: datetime | None
    last_sequence: int  # the stream sequence of its last decision


def outcome_of(state: Execution) -> ExecutionOutcome:
    """The outcome of an ended execution's state."""
    assert state.status != "running", "an outcome is of an ended execution"  # noqa: S101  an invariant of this code, not a check of input
    return ExecutionOutcome(
        execution_id=state.execution_id,
        project=state.project,
        domain=state.domain,
        workflow=state.workflow.name,
        version=state.workflow.version,
        status=state.status,
        inputs=state.inputs,
        outputs=state.outputs,
        error=state.error,
        failed_node=state.failed_node,
        abort_reason=state.abort_reason,
        launched_at=state.launched_at,
        finished_at=state.finished_at,
        last_sequence=state.last_sequence,
    )


def result_of(outcome: ExecutionOutcome, workflow: Workflow[Any, Any] | None) -> Any:
    """The outputs of a succeeded execution as ``workflow`` returns them (its outputs by name, without it);
    ``ExecutionError`` when it failed or was aborted."""
    if outcome.status == "failed":
        error = outcome.error
        reason = f"{error.error_type or error.kind + ' error'}: {error.message}" if error else "it failed"
        raise ExecutionError(
            f"execution {outcome.execution_id} failed at node '{outcome.failed_node}': {reason}",
            execution_id=outcome.execution_id,
            status=outcome.status,
            failed_node=outcome.failed_node,
            reason=reason,
        )
    if outcome.status == "aborted":
        raise ExecutionError(
            f"execution {outcome.execution_id} was aborted: {outcome.abort_reason}",
            execution_id=outcome.execution_id,
            status=outcome.status,
            reason=outcome.abort_reason or "",
        )
    outputs = outcome.outputs or {}
    if workflow is None:
        return outputs
    hint = workflow.return_hint
    try:
        if not workflow.interface.outputs:
            return None
        if is_named_tuple(hint):
            assert hint is not None  # noqa: S101  an invariant of this code, not a check of input
            hints = typing.get_type_hints(hint)
            return hint(**{name: decode_value(outputs[name], hints[name]) for name in hint._fields})
        return decode_value(outputs[SINGLE_OUTPUT], hint)
    except (KeyError, msgspec.ValidationError) as exc:
        raise PlaitError(
            f"the outputs of execution {outcome.execution_id} do not fit what {workflow.name} returns: {exc}"
        ) from None
