"""Gates inside a ``@workflow``: nodes that wait for a person or a time instead of running a task.

    amount = wait_for_input("amount", timeout=timedelta(hours=1), expected_type=int)
    approved = approve(report(n=amount), "publish", timeout=timedelta(days=1))
    later = sleep(timedelta(minutes=5), value=approved)

``plait signal EXECUTION amount 42`` (or ``client.signal(execution_id, "amount", 42)``) gives a signal its value;
``plait signal EXECUTION publish`` approves, ``--reject`` rejects. A signal or approval not given within its
timeout fails the gate's node, and with it the execution.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from plait.core.model import Binding, FromNode, GateSpec, Node
from plait.core.types import TypeSpec
from plait.errors import DefinitionError
from plait.sdk import tracing
from plait.sdk.hints import type_spec
from plait.sdk.task import timeout_in_seconds

T = TypeVar("T")


def _builder(what: str) -> tracing.WorkflowBuilder[Any]:
    builder = tracing.current_builder()
    if builder is None:
        raise DefinitionError(f"{what} can only be used inside a @workflow")
    return builder


def _add_gate(
    builder: tracing.WorkflowBuilder[Any], short_name: str, gate: GateSpec, value: Any, where: str
) -> tracing.Promise | None:
    node_id = builder._node_id(short_name)
    inputs: dict[str, Binding] = {}
    if value is not None:
        if not isinstance(value, tracing.Promise):
            raise DefinitionError(f"{where}: its value must be a promise (a task's output or a workflow input)")
        inputs["value"] = value.binding
        builder.check_visible(value.binding, f"{where}: its value")
    builder.add(Node(id=node_id, task="", inputs=inputs, gate=gate))
    if gate.type is None:
        return None
    return tracing.Promise(FromNode(node_id, "result"), gate.type, f"output of gate '{node_id}'")


def _checked_name(name: str, where: str) -> str:
    if not name or not name.replace("-", "_").isidentifier():
        raise DefinitionError(f"{where}: the name must be a word (letters, digits, '_' or '-'), got {name!r}")
    return name


def wait_for_input(name: str, timeout: timedelta | float, expected_type: type[T]) -> T:
    """Wait for signal ``name`` (given with ``plait signal`` or ``client.signal``) and return its value, checked to
    be an ``expected_type``; without it within ``timeout``, the execution fails."""
    where = f"wait_for_input('{name}')"
    builder = _builder(where)
    spec: TypeSpec = type_spec(expected_type, where)
    gate = GateSpec(
        kind="signal",
        name=_checked_name(name, where),
        type=spec,
        timeout_seconds=timeout_in_seconds(timeout, where),
    )
    return _add_gate(builder, name, gate, None, where)  # type: ignore[return-value]


def approve(value: T, name: str, timeout: timedelta | float) -> T:
    """Wait until ``name`` is approved (``plait signal ID NAME``), then pass ``value`` on; rejected
    (``--reject``), or not approved within ``timeout``, the execution fails."""
    where = f"approve(..., '{name}')"
    builder = _builder(where)
    if not isinstance(value, tracing.Promise):
        raise DefinitionError(f"{where}: approves a promise (a task's output or a workflow input), got {value!r}")
    gate = GateSpec(
        kind="approve",
        name=_checked_name(name, where),
        type=value.type,
        timeout_seconds=timeout_in_seconds(timeout, where),
    )
    return _add_gate(builder, name, gate, value, where)  # type: ignore[return-value]


def sleep(duration: timedelta | float, value: T | None = None) -> T | None:
    """Wait ``duration`` (a ``timedelta``, or seconds), then pass ``value`` on (if given: a promise it waits for
    first)."""
    where = "sleep()"
    builder = _builder(where)
    seconds = timeout_in_seconds(duration, where)
    assert seconds is not None  # noqa: S101  an invariant of this code, not a check of input
    value_type = value.type if isinstance(value, tracing.Promise) else None
    gate = GateSpec(kind="sleep", type=value_type, seconds=seconds)
    return _add_gate(builder, "sleep", gate, value, where)  # type: ignore[return-value]
