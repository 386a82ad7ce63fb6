"""Child executions in the pure core: a child node launches its plan once, with an id every replica derives the
same; the child's end makes the node succeed with its outputs or fail naming it; a repeated report changes nothing;
a report naming another execution is rejected; the scheduler's side work (launch, report, abort) is derived from
the log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from plait.core import children
from plait.core.commands import AbortExecution, ReportChildEnded
from plait.core.decide import decide_batch
from plait.core.events import ChildLaunched, CommandRejected, Event, ExecutionFailed, NodeQueued, NodeSucceeded
from plait.core.state import Execution
from tests import child_workflows
from tests.helpers.launching import launched

AT = datetime(2026, 1, 2, tzinfo=UTC)


def decided(state: Execution, command: Any) -> list[Event]:
    return list(decide_batch(state, [command], AT).events)


def ended(state: Execution, status: Any, outputs: Any = None, child: str = "", error: Any = None) -> ReportChildEnded:
    child = child or children.child_execution_id("e", "double_plan")
    return ReportChildEnded(
        command_id=f"{child}:ended",
        execution_id="e",
        node="double_plan",
        child_execution=child,
        status=status,
        outputs=outputs,
        error=error,
    )


def test_a_child_node_launches_its_plan_with_an_id_every_replica_derives_the_same() -> None:
    state, events = launched(child_workflows.uses_child, {"n": 4}, AT)
    [_, child] = events
    plan = child_workflows.double_plan.spec
    assert child == ChildLaunched(
        node="double_plan",
        child_execution=children.child_execution_id("e", "double_plan"),
        launch_plan="double_plan",
        version=plan.version,
        inputs={"n": 4},
    )
    assert children.child_execution_id("e", "double_plan") != children.child_execution_id("f", "double_plan")
    assert (state.nodes["double_plan"].status, state.nodes["double_plan"].child_execution) == (
        "running",
        child.child_execution,
    )
    [launch] = children.child_launches(state, events)
    assert (launch.execution_id, launch.launch_plan, launch.launch_plan_version) == (
        child.child_execution,
        "double_plan",
        plan.version,
    )
    assert (launch.parent_execution, launch.parent_node, launch.inputs) == ("e", "double_plan", {"n": 4})


def test_the_childs_outputs_flow_on_and_a_repeated_report_changes_nothing() -> None:
    state, _ = launched(child_workflows.uses_child, {"n": 4}, AT)
    events = decided(state, ended(state, "succeeded", {"result": 8}))
    assert isinstance(events[0], NodeSucceeded) and events[0].outputs == {"result": 8}
    assert isinstance(events[1], NodeQueued) and events[1].inputs == {"n": 8}
    assert decided(state, ended(state, "succeeded", {"result": 8})) == []


def test_a_failed_child_fails_the_node_naming_it_and_bad_outputs_fail_it_too() -> None:
    state, _ = launched(child_workflows.uses_child, {"n": 4}, AT)
    child = state.nodes["double_plan"].child_execution
    [_, failed] = decided(state, ended(state, "aborted"))
    assert isinstance(failed, ExecutionFailed) and failed.error.error_type == "ChildExecutionFailed"
    assert failed.error.message == f"child execution {child} was aborted: aborted"
    state, _ = launched(child_workflows.uses_child, {"n": 4}, AT)
    [_, failed] = decided(state, ended(state, "succeeded", {"result": "eight"}))
    assert isinstance(failed, ExecutionFailed)
    assert failed.error.message.startswith(f"child execution {child} returned bad outputs: output 'result' expects")


def test_a_report_naming_another_child_or_node_is_rejected() -> None:
    state, _ = launched(child_workflows.uses_child, {"n": 4}, AT)
    [rejected] = decided(state, ended(state, "succeeded", {"result": 8}, child="someone-else"))
    assert isinstance(rejected, CommandRejected)
    assert rejected.reason == "node 'double_plan' launched no execution someone-else"


def test_a_parent_that_ends_aborts_its_running_child_and_a_child_reports_its_end() -> None:
    state, _ = launched(child_workflows.uses_child, {"n": 4}, AT)
    abort = AbortExecution(command_id="a", execution_id="e", reason="stop", aborted_by="ann")
    events = decided(state, abort)
    [child_abort] = children.child_aborts(state, events)
    assert (child_abort.execution_id, child_abort.aborted_by) == (
        state.nodes["double_plan"].child_execution,
        "parent e",
    )
    child_state, _ = launched(child_workflows.doubling, {"n": 4}, AT, execution_id="c1")
    assert children.child_ended(child_state) is None  # no parent, and still running


def test_a_refused_child_launch_is_reported_to_its_parent() -> None:
    state, events = launched(child_workflows.uses_child, {"n": 4}, AT)
    [launch] = children.child_launches(state, events)
    report = children.launch_rejected(launch, "launch plan 'double_plan' is not registered")
    assert report is not None and (report.execution_id, report.status) == ("e", "rejected")
    [_, failed] = decided(state, report)
    assert isinstance(failed, ExecutionFailed) and failed.error.message == (
        f"child execution {launch.execution_id} could not be launched: launch plan 'double_plan' is not registered"
    )
