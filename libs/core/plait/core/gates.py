"""Gates in the pure core: nodes that wait for a signal, an approval or a time instead of running a task."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from plait.core.commands import SendSignal
from plait.core.events import GateOpened, SignalReceived
from plait.core.model import GateSpec, Node
from plait.core.state import Execution, NodeState
from plait.core.types import check_value, describe
from plait.core.validate import nesting_problem

VALUE_INPUT = "value"
"""The input of an approval (or a sleep) whose value the gate passes on."""


def gate_of(node: Node) -> GateSpec | None:
    return node.gate if isinstance(node.gate, GateSpec) else None


def is_open(node: NodeState) -> bool:
    """Whether a gate node is waiting now: opened, and neither passed nor failed."""
    return node.status == "waiting" and node.gate_opened_at is not None


def opened(node_id: str, gate: GateSpec, inputs: dict[str, Any]) -> GateOpened:
    expects = describe(gate.type) if gate.kind == "signal" and gate.type is not None else ""
    return GateOpened(
        node=node_id,
        kind=gate.kind,
        name=gate.name,
        expects=expects,
        timeout_seconds=gate.timeout_seconds,
        seconds=gate.seconds,
        inputs=inputs,
    )


def outputs(gate: GateSpec, inputs: dict[str, Any], signal: SignalReceived | None) -> dict[str, Any]:
    """What a gate passes on: a signal's value, or the value an approval or a sleep was given."""
    if gate.kind == "signal":
        return {"result": signal.value if signal is not None else None}
    return {"result": inputs[VALUE_INPUT]} if VALUE_INPUT in inputs else {}


def named(state: Execution, name: str) -> NodeState | None:
    """The gate node waiting for signal ``name``, if the workflow has one."""
    return next(
        (n for n in state.nodes.values() if (gate := gate_of(n.spec)) is not None and gate.name == name and name),
        None,
    )


def signal_names(state: Execution) -> list[str]:
    return sorted(gate.name for n in state.nodes.values() if (gate := gate_of(n.spec)) is not None and gate.name)


def signal_problem(state: Execution, node: NodeState, command: SendSignal) -> str | None:
    """Why ``command`` cannot be given to gate ``node``, or None."""
    gate = gate_of(node.spec)
    assert gate is not None  # noqa: S101  an invariant of this code, not a check of input
    name = command.name
    if name in state.signals:
        return f"signal '{name}' was already given"
    if node.status in ("succeeded", "failed", "skipped", "aborted"):
        return f"the gate waiting for signal '{name}' has {node.status}; it takes no signal now"
    if (too_deep := nesting_problem(command.value)) is not None:
        return f"the value of signal '{name}' {too_deep}"
    if gate.kind == "signal":
        if command.reject:
            return f"signal '{name}' waits for a value; only an approval can be rejected"
        if gate.type is not None and (problem := check_value(gate.type, command.value)) is not None:
            return f"signal '{name}' expects {describe(gate.type)}: {problem}"
    return None


def gate_story(event: GateOpened | SignalReceived) -> str:
    """A gate's event as a line of an execution's timeline."""
    if isinstance(event, SignalReceived):
        by = f" by {event.sent_by}" if event.sent_by else ""
        if event.value is None:
            return f"'{event.name}' {'approved' if event.approved else 'rejected'}{by}"
        return f"'{event.name}' = {event.value!r}{by}"
    if event.kind == "sleep":
        return f"sleeping {event.seconds:g} s"
    what = f"approval '{event.name}'" if event.kind == "approve" else f"signal '{event.name}' ({event.expects})"
    limit = f", for up to {event.timeout_seconds:g} s" if event.timeout_seconds is not None else ""
    return f"waiting for {what}{limit}"


def gate_waiting_text(event: GateOpened, opened_at: datetime) -> str:
    """What a gate opened at ``opened_at`` waits for, as a person reads it: "waiting for signal 'amount' (int)
    until 2026-12-04T13:20:00+00:00"."""
    if event.kind == "sleep":
        return f"sleeping until {(opened_at + timedelta(seconds=event.seconds)).isoformat(timespec='seconds')}"
    what = f"approval '{event.name}'" if event.kind == "approve" else f"signal '{event.name}' ({event.expects})"
    if event.timeout_seconds is None:
        return f"waiting for {what}"
    until = opened_at + timedelta(seconds=event.timeout_seconds)
    return f"waiting for {what} until {until.isoformat(timespec='seconds')}"
