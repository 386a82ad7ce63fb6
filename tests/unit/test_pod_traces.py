"""A Kubernetes pod's task joins its attempt's trace: the executor puts the attempt span's context in the Job's
environment, and the task runtime runs the task in a child span of it."""

from __future__ import annotations

import pytest

from plait.core.model import TaskTarget
from plait.telemetry import span, trace_id_of
from plait_executor.kubernetes.runtime import run_traced
from plait_executor.tracing import POD_TRACEPARENT, pod_trace_env

ATTEMPT_SPAN = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
SEEN = TaskTarget(module="tests.trace_workflows", qualname="trace_seen")


def test_the_job_environment_carries_the_current_attempt_span() -> None:
    assert pod_trace_env() == {}
    with span("plait.executor.attempt", parent=ATTEMPT_SPAN):
        env = pod_trace_env()
    assert trace_id_of(env[POD_TRACEPARENT]) == trace_id_of(ATTEMPT_SPAN)


def test_the_runtime_runs_the_task_in_the_attempts_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    untraced = run_traced(SEEN, {}, None, (1024, 1024))
    monkeypatch.setenv(POD_TRACEPARENT, ATTEMPT_SPAN)
    traced = run_traced(SEEN, {}, None, (1024, 1024))
    assert untraced.outputs == {"result": ""}
    assert traced.outputs == {"result": trace_id_of(ATTEMPT_SPAN)}
