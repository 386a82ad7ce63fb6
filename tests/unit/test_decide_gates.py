"""Gates in the pure state machine: a gate opens when its inputs are known, a signal of the right type passes it
(given before or after it opened), a wrong type is rejected naming the expected type, and its timer ends a sleep
or fails a gate still waiting."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from plait.core.commands import GateTimer, SendSignal, gate_timer, timeout_timers
from plait.core.decide import decide_batch
from plait.core.events import (
    CommandRejected,
    Event,
    ExecutionFailed,
    GateOpened,
    NodeQueued,
    NodeSucceeded,
    SignalReceived,
)
from plait.core.state import Execution
from tests import gate_workflows
from tests.helpers.launching import launched
from tests.helpers.reports import result_of

AT = datetime(2026, 1, 2, tzinfo=UTC)


def decided(state: Execution, command: Any) -> list[Event]:
    return list(decide_batch(state, [command], AT).events)


def signal(name: str, value: Any = None, *, reject: bool = False, command_id: str = "s1") -> SendSignal:
    return SendSignal(command_id=command_id, execution_id="e", name=name, value=value, reject=reject, sent_by="ann")


def succeed(state: Execution, queued: NodeQueued, value: Any) -> list[Event]:
    command = result_of(queued, value, state.execution_id)
    return decided(state, command)[1:]


def test_a_signal_gate_waits_from_the_launch_with_a_timer_for_its_timeout() -> None:
    state, events = launched(gate_workflows.asks, {}, AT)
    [_, opened] = events
    assert opened == GateOpened(node="amount", kind="signal", name="amount", expects="int", timeout_seconds=60.0)
    assert (state.nodes["amount"].status, state.nodes["amount"].gate_opened_at) == ("waiting", AT)
    [timer] = timeout_timers(state, events)
    assert (timer.command, timer.since, timer.seconds) == (gate_timer("e", "amount", 60.0), AT, 60.0)


def test_a_signal_of_the_expected_type_passes_the_gate_with_its_value() -> None:
    state, _ = launched(gate_workflows.asks, {}, AT)
    received, passed, queued = decided(state, signal("amount", 14))
    assert isinstance(received, SignalReceived) and (received.value, received.sent_by) == (14, "ann")
    assert passed == NodeSucceeded(node="amount", attempt_id="", outputs={"result": 14})
    assert isinstance(queued, NodeQueued) and queued.inputs == {"n": 14}
    assert decided(state, signal("amount", 14)) == []  # redelivered


def test_a_signal_of_the_wrong_type_is_rejected_naming_the_expected_type() -> None:
    state, _ = launched(gate_workflows.asks, {}, AT)
    [rejected] = decided(state, signal("amount", "lots"))
    assert isinstance(rejected, CommandRejected) and rejected.command_type == "send_signal.v1"
    assert rejected.reason.startswith("signal 'amount' expects int:")
    assert state.nodes["amount"].status == "waiting"


def test_a_signal_nobody_waits_for_is_rejected_naming_the_gates() -> None:
    state, _ = launched(gate_workflows.asks, {}, AT)
    [rejected] = decided(state, signal("amonut", 1))
    assert isinstance(rejected, CommandRejected)
    assert rejected.reason == "execution e has no gate named 'amonut' (its gates: 'amount')"


def test_a_signal_given_before_its_gate_opens_passes_it_when_it_opens() -> None:
    state, events = launched(gate_workflows.approved, {"n": 2}, AT)
    [queued] = [e for e in events if isinstance(e, NodeQueued)]
    [received] = decided(state, signal("publish"))
    assert isinstance(received, SignalReceived) and received.approved
    _, opened, passed, _done = succeed(state, queued, 6)
    assert isinstance(opened, GateOpened) and passed == NodeSucceeded(
        node="publish", attempt_id="", outputs={"result": 6}
    )
    assert state.status == "succeeded" and state.outputs == {"result": 6}


def test_a_rejected_approval_fails_the_execution_saying_who_rejected_it() -> None:
    state, events = launched(gate_workflows.approved, {"n": 2}, AT)
    [queued] = [e for e in events if isinstance(e, NodeQueued)]
    succeed(state, queued, 6)
    _, _, failed = decided(state, signal("publish", reject=True))
    assert isinstance(failed, ExecutionFailed) and failed.node == "publish"
    assert (failed.error.message, failed.error.error_type) == ("approval 'publish' was rejected by ann", "GateRejected")


def test_a_gate_not_signalled_in_time_fails_and_a_late_timer_changes_nothing() -> None:
    state, _ = launched(gate_workflows.asks, {}, AT)
    _, failed = decided(state, gate_timer("e", "amount", 60.0))
    assert isinstance(failed, ExecutionFailed)
    assert (failed.error.message, failed.error.error_type) == ("no signal 'amount' within 60 s", "GateTimedOut")
    state, _ = launched(gate_workflows.asks, {}, AT)
    decided(state, signal("amount", 1))
    assert decided(state, GateTimer(command_id="t2", execution_id="e", node="amount", seconds=60.0)) == []


def test_a_sleep_passes_its_value_on_when_its_timer_fires() -> None:
    state, events = launched(gate_workflows.naps, {"n": 1}, AT)
    [queued] = [e for e in events if isinstance(e, NodeQueued)]
    _, opened = succeed(state, queued, 3)
    assert isinstance(opened, GateOpened) and (opened.kind, opened.seconds, opened.inputs) == (
        "sleep",
        1.0,
        {"value": 3},
    )
    [timer] = timeout_timers(state, [opened])
    assert timer.seconds == 1.0
    passed, after = decided(state, timer.command)
    assert passed == NodeSucceeded(node="sleep", attempt_id="", outputs={"result": 3})
    assert isinstance(after, NodeQueued) and after.inputs == {"n": 3}


def test_a_signal_value_nested_too_deeply_is_rejected_and_the_gate_still_waits() -> None:
    state, _ = launched(gate_workflows.asks, {}, AT)
    deep: Any = 1
    for _ in range(100):
        deep = [deep]
    [rejected] = decided(state, signal("amount", deep))
    assert isinstance(rejected, CommandRejected) and "nested more than 64 levels deep" in rejected.reason
    assert decided(state, signal("amount", 2, command_id="s2"))[0] == SignalReceived(
        node="amount", name="amount", command_id="s2", value=2, sent_by="ann"
    )
