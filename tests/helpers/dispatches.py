"""A dispatch of an attempt that no decision queued, for tests that hand one straight to an executor."""

from __future__ import annotations

from typing import Any

import msgspec

from plait.core.dispatch import Dispatch
from plait.core.ids import attempt_id, new_execution_id
from plait.core.model import TaskSpec


def first_attempt(
    task: TaskSpec,
    inputs: dict[str, Any],
    *,
    node: str = "n0",
    project: str = "default",
    domain: str = "development",
) -> Dispatch:
    """The first attempt of ``node`` running ``task`` on ``inputs`` (encoded), in an execution of its own."""
    execution_id = new_execution_id()
    return Dispatch(
        execution_id=execution_id,
        project=project,
        domain=domain,
        node=node,
        attempt_id=attempt_id(execution_id, node, 1),
        attempt=1,
        task=task,
        inputs=inputs,
        decision_sequence=1,
    )


def attempts_of_one_execution(task: TaskSpec, count: int) -> list[Dispatch]:
    """The first attempts of ``count`` nodes (``n0``, ``n1``, ...) running ``task`` with no inputs, in one execution."""
    execution_id = new_execution_id()
    return [
        msgspec.structs.replace(
            first_attempt(task, {}, node=f"n{i}"),
            execution_id=execution_id,
            attempt_id=attempt_id(execution_id, f"n{i}", 1),
        )
        for i in range(count)
    ]
