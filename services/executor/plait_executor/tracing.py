"""The spans of an attempt: the executor's (a child of the dispatch's context) and, in the worker process, the
task's own, current while the task's function runs, so that spans the task starts join the execution's trace."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from nats.aio.msg import Msg

from plait.core.dispatch import Dispatch
from plait.core.model import TaskTarget
from plait.telemetry.context import Attributes, span, traceparent_of

ATTEMPT_SPAN = "plait.executor.attempt"
TASK_SPAN = "plait.worker.task"
WORKER_SERVICE = "plait-worker"


def attempt_span(dispatch: Dispatch, msg: Msg) -> AbstractContextManager[None]:
    """The executor's span of the attempt a dispatch message names (none when the message carries no context)."""
    parent = traceparent_of(msg.headers)
    if not parent:
        return nullcontext()
    attributes: Attributes = {
        "plait.execution_id": dispatch.execution_id,
        "plait.node": dispatch.node,
        "plait.attempt_id": dispatch.attempt_id,
        "plait.task": dispatch.task.name,
        "plait.delivery": msg.metadata.num_delivered,
    }
    return span(ATTEMPT_SPAN, parent=parent, attributes=attributes)


def task_span(target: TaskTarget, traceparent: str) -> AbstractContextManager[None]:
    """The span the task runs in, in its worker process (none when the attempt came without a context)."""
    if not traceparent:
        return nullcontext()
    return span(TASK_SPAN, parent=traceparent, attributes={"plait.task": f"{target.module}:{target.qualname}"})
