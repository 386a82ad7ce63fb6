"""The spans of an attempt: the executor's (a child of the dispatch's context) and, in the worker process, the
task's own, current while the task's function runs, so that spans the task starts join the execution's trace."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from plait.core.dispatch import Dispatch
from plait.core.model import TaskTarget
from plait.telemetry.context import Attributes, current_traceparent, span, traceparent_of
from plait.telemetry.setup import TRACES_FILE, tracing_enabled

if TYPE_CHECKING:
    from nats.aio.msg import Msg  # not at run time: worker processes import this module, and need no NATS

ATTEMPT_SPAN = "plait.executor.attempt"
TASK_SPAN = "plait.worker.task"
WORKER_SERVICE = "plait-worker"
RUNTIME_SERVICE = "plait-runtime"
POD_TRACEPARENT = "PLAIT_TRACEPARENT"
"""In a Kubernetes pod's environment: the executor's span of the attempt, which the task runtime's span is a child
of."""


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


def pod_trace_env() -> dict[str, str]:
    """What a pod's task runtime needs to join the attempt's trace: the current span's context, and this
    executor's ``OTEL_*`` settings (and ``PLAIT_TRACES_FILE``) when it records spans; empty when no span is current."""
    traceparent = current_traceparent()
    if not traceparent:
        return {}
    env = {POD_TRACEPARENT: traceparent}
    if tracing_enabled():
        env.update({name: value for name, value in os.environ.items() if name.startswith("OTEL_")})
        if os.environ.get(TRACES_FILE):
            env[TRACES_FILE] = os.environ[TRACES_FILE]
    env.pop("OTEL_SERVICE_NAME", None)  # the runtime names itself
    return env
