"""Abort, failure policy, relaunch and recovery in the pure core: each decided from the commands and the log alone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from plait import codec, workflow
from plait.core.commands import (
    AbortExecution,
    LaunchExecution,
    ReportAttemptResult,
    ReportAttemptStopped,
    ResolvedLaunch,
)
from plait.core.decide import decide_batch
from plait.core.events import (
    AttemptStopped,
    Event,
    ExecutionAborted,
    ExecutionFailed,
    ExecutionLaunched,
    ExecutionSucceeded,
    NodeFailed,
    NodeQueued,
    NodeRecovered,
    NodeSkipped,
    TaskError,
)
from plait.core.model import LaunchPlanSpec
from plait.core.state import Execution
from plait.errors import DefinitionError
from plait.invariants import check_execution
from plait.replay import timeline
from tests import lifecycle_workflows
from tests.helpers.launching import launched, resolved_launch
from tests.helpers.records import history

AT = datetime(2026, 1, 2, tzinfo=UTC)
FLAG = "/nowhere/flag"


def decided(state: Execution | None, *commands: Any) -> list[Event]:
    return list(decide_batch(state, list(commands), AT).events)


def report(queued: Event, execution_id: str, **outcome: Any) -> ReportAttemptResult:
    assert isinstance(queued, NodeQueued)
    return ReportAttemptResult(
        command_id=f"{queued.attempt_id}:result",
        execution_id=execution_id,
        node=queued.node,
        attempt_id=queued.attempt_id,
        worker="w1",
        **outcome,
    )


def succeed(queued: Event, outputs: dict[str, Any], execution_id: str = "e") -> ReportAttemptResult:
    return report(queued, execution_id, outputs=outputs)


def fail(queued: Event, execution_id: str = "e") -> ReportAttemptResult:
    return report(queued, execution_id, error=TaskError(kind="user", message="flag is set"))


def abort(execution_id: str = "e") -> AbortExecution:
    return AbortExecution(
        command_id=f"abort:{execution_id}", execution_id=execution_id, reason="enough", aborted_by="ann@box"
    )


def queued_of(events: list[Event]) -> dict[str, NodeQueued]:
    return {event.node: event for event in events if isinstance(event, NodeQueued)}


class TestAbort:
    def test_an_abort_records_who_asked_and_why_and_ends_every_unfinished_node(self) -> None:
        state, _ = launched(lifecycle_workflows.chain, {"x": 1, "flag": FLAG}, AT)
        assert decided(state, abort()) == [ExecutionAborted(reason="enough", aborted_by="ann@box")]
        assert (state.status, state.abort_reason, state.aborted_by) == ("aborted", "enough", "ann@box")
        assert {node.status for node in state.nodes.values()} == {"aborted"}

    def test_a_result_arriving_after_the_abort_is_ignored_and_nothing_is_queued(self) -> None:
        state, events = launched(lifecycle_workflows.chain, {"x": 1, "flag": FLAG}, AT)
        decided(state, abort())
        assert decided(state, succeed(queued_of(events)["step"], {"result": 2})) == []
        assert state.status == "aborted" and state.nodes["step"].status == "aborted"

    def test_an_abort_arriving_after_the_last_result_changes_nothing(self) -> None:
        state, events = launched(lifecycle_workflows.chain, {"x": 1, "flag": FLAG}, AT)
        second = queued_of(decided(state, succeed(queued_of(events)["step"], {"result": 2})))["unless_flagged"]
        third = queued_of(decided(state, succeed(second, {"result": 4})))["step-1"]
        assert isinstance(decided(state, succeed(third, {"result": 5}))[-1], ExecutionSucceeded)
        assert decided(state, abort()) == []
        assert (state.status, state.outputs) == ("succeeded", {"result": 5})

    def test_an_attempt_stopped_after_the_end_is_recorded_once(self) -> None:
        state, events = launched(lifecycle_workflows.chain, {"x": 1, "flag": FLAG}, AT)
        queued = queued_of(events)["step"]
        stop = ReportAttemptStopped(
            command_id=f"{queued.attempt_id}:stopped",
            execution_id="e",
            node="step",
            attempt_id=queued.attempt_id,
            worker="w1",
            reason="process killed",
        )
        assert decided(state, stop) == [], "an executor stops nothing of a running execution"
        decided(state, abort())
        assert decided(state, stop) == [
            AttemptStopped(node="step", attempt_id=queued.attempt_id, worker="w1", reason="process killed")
        ]
        assert state.nodes["step"].attempts[-1].status == "stopped"
        assert decided(state, stop) == [], "a repeated report is a duplicate"

    def test_a_stop_naming_no_attempt_is_refused(self) -> None:
        state, _ = launched(lifecycle_workflows.chain, {"x": 1, "flag": FLAG}, AT)
        decided(state, abort())
        bogus = ReportAttemptStopped(
            command_id="x", execution_id="e", node="step", attempt_id="e/step/9", worker="w", reason="?"
        )
        outcome = decide_batch(state, [bogus], AT)
        assert [reason for _, reason in outcome.rejections] == ["execution e has no attempt 'e/step/9' of node 'step'"]


class TestFailurePolicy:
    def test_fail_fast_is_the_default_and_leaves_the_spec_and_its_version_as_they_were(self) -> None:
        def body(x: int, flag: str) -> int:
            return lifecycle_workflows.step(x=x)

        body.__module__ = lifecycle_workflows.__name__
        implicit, explicit = workflow(body), workflow(failure_policy="fail_fast")(body)
        assert implicit.spec == explicit.spec
        assert b"failure_policy" not in msgspec.json.encode(explicit.spec)
        assert workflow(failure_policy="finish")(body).spec.version != implicit.spec.version

    def test_an_unknown_policy_is_refused_when_the_workflow_is_defined(self) -> None:
        with pytest.raises(DefinitionError, match="failure_policy must be 'fail_fast' or 'finish', not 'later'"):
            workflow(failure_policy="later")(lifecycle_workflows.chain.fn)  # type: ignore[call-overload]

    def test_fail_fast_fails_the_execution_with_the_node(self) -> None:
        state, events = launched(lifecycle_workflows.chain, {"x": 1, "flag": FLAG}, AT)
        second = queued_of(decided(state, succeed(queued_of(events)["step"], {"result": 2})))["unless_flagged"]
        *_, node_failed, execution_failed = decided(state, fail(second))
        assert isinstance(node_failed, NodeFailed) and isinstance(execution_failed, ExecutionFailed)
        assert state.status == "failed" and state.nodes["step-1"].status == "aborted"

    def test_finish_skips_what_depends_on_the_failed_node_runs_the_rest_and_then_fails(self) -> None:
        state, events = launched(lifecycle_workflows.branches, {"x": 1, "flag": FLAG}, AT)
        roots = queued_of(events)
        assert set(roots) == {"unless_flagged", "step-1"}
        *_, node_failed, skip_step, skip_add = decided(state, fail(roots["unless_flagged"]))
        assert isinstance(node_failed, NodeFailed)
        assert [skip_step, skip_add] == [
            NodeSkipped(node="step", reason="node 'unless_flagged' failed"),
            NodeSkipped(node="add", reason="node 'unless_flagged' failed"),
        ]
        assert state.status == "running", "the other branch still runs"
        next_one = queued_of(decided(state, succeed(roots["step-1"], {"result": 2})))["step-2"]
        last = decided(state, succeed(next_one, {"result": 3}))
        assert not [e for e in last if isinstance(e, NodeQueued)], "add depends on the failed branch"
        assert isinstance(last[-1], ExecutionFailed) and last[-1].node == "unless_flagged"
        assert last[-1].error.message == "node 'unless_flagged' failed; 'unless_flagged': flag is set"
        statuses = {node.id: node.status for node in state.nodes.values()}
        assert statuses == {
            "unless_flagged": "failed",
            "step": "skipped",
            "step-1": "succeeded",
            "step-2": "succeeded",
            "add": "skipped",
        }

    def test_finish_fails_at_once_when_nothing_else_is_in_flight(self) -> None:
        state, events = launched(lifecycle_workflows.branches, {"x": 1, "flag": FLAG}, AT)
        roots = queued_of(events)
        step_2 = queued_of(decided(state, succeed(roots["step-1"], {"result": 2})))["step-2"]
        decided(state, succeed(step_2, {"result": 3}))
        outcome = decide_batch(state, [fail(roots["unless_flagged"])], AT)
        assert isinstance(outcome.events[-1], ExecutionFailed) and state.status == "failed"
        assert outcome.command_ids == [fail(roots["unless_flagged"]).command_id], "one command, named once"


def relaunch(original: Execution, execution_id: str = "r", *, recover: bool = False, **fields: Any) -> ResolvedLaunch:
    command = LaunchExecution(
        command_id=f"launch:{execution_id}",
        execution_id=execution_id,
        project="tests",
        domain="dev",
        relaunch_of=original.execution_id,
        recover=recover,
        **fields,
    )
    return ResolvedLaunch(command=command, workflow=original.workflow, original=original)


def failed_chain() -> Execution:
    """An execution of A → B → C whose B failed."""
    state, events = launched(lifecycle_workflows.chain, {"x": 1, "flag": FLAG}, AT)
    second = queued_of(decided(state, succeed(queued_of(events)["step"], {"result": 2})))["unless_flagged"]
    decided(state, fail(second))
    assert state.status == "failed"
    return state


class TestRelaunchAndRecover:
    def test_a_relaunch_runs_the_same_version_and_inputs_linked_to_the_original(self) -> None:
        original = failed_chain()
        launch, queued = decided(None, relaunch(original))
        assert isinstance(launch, ExecutionLaunched)
        assert (launch.workflow, launch.inputs, launch.relaunch_of, launch.recovered_from) == (
            original.workflow,
            original.inputs,
            "e",
            "",
        )
        assert isinstance(queued, NodeQueued) and queued.node == "step"

    def test_a_recovery_reuses_what_succeeded_and_runs_only_the_rest(self) -> None:
        original = failed_chain()
        outcome = decide_batch(None, [relaunch(original, recover=True)], AT)
        launch, recovered, queued = outcome.events
        assert isinstance(launch, ExecutionLaunched) and launch.recovered_from == "e" and launch.relaunch_of == ""
        assert recovered == NodeRecovered(node="step", outputs={"result": 2}, source_execution="e")
        assert isinstance(queued, NodeQueued) and queued.node == "unless_flagged" and queued.inputs["x"] == 2
        state = outcome.state
        assert state is not None and state.nodes["step"].status == "recovered" and not state.nodes["step"].attempts
        third = queued_of(decided(state, succeed(queued, {"result": 4}, "r")))["step-1"]
        assert isinstance(decided(state, succeed(third, {"result": 5}, "r"))[-1], ExecutionSucceeded)
        assert state.outputs == {"result": 5}

    @pytest.mark.parametrize(
        ("change", "reason"),
        [
            ({"inputs": {"x": 2}}, "a relaunch of execution e runs with its inputs: give none"),
            ({"workflow": "other"}, "a relaunch of execution e runs its workflow version: name no workflow"),
        ],
    )
    def test_a_relaunch_that_names_its_own_inputs_or_workflow_is_refused(
        self, change: dict[str, Any], reason: str
    ) -> None:
        outcome = decide_batch(None, [relaunch(failed_chain(), **change)], AT)
        assert outcome.state is None and outcome.rejections[0][1].startswith(reason)

    def test_only_an_execution_that_failed_or_was_aborted_is_recovered(self) -> None:
        running, _ = launched(lifecycle_workflows.chain, {"x": 1, "flag": FLAG}, AT)
        outcome = decide_batch(None, [relaunch(running, recover=True)], AT)
        assert outcome.rejections[0][1] == (
            "execution e is still running: recover it once it has failed or been aborted"
        )
        decided(running, abort())
        assert decide_batch(None, [relaunch(running, recover=True)], AT).state is not None

    def test_a_relaunch_of_an_unknown_execution_is_refused(self) -> None:
        original = failed_chain()
        resolved = relaunch(original)
        unknown = ResolvedLaunch(command=resolved.command, workflow=original.workflow)
        assert decide_batch(None, [unknown], AT).rejections[0][1] == "execution e does not exist in tests/dev"


class Story:
    """An execution driven through the pure core, keeping each decision's events as a history to check."""

    def __init__(self, first: ResolvedLaunch, execution_id: str = "e") -> None:
        outcome = decide_batch(None, [first], AT)
        assert outcome.state is not None
        self.state, self.decisions, self.execution_id = outcome.state, [outcome.events], execution_id

    def step(self, *commands: Any) -> list[Event]:
        events = decided(self.state, *commands)
        if events:
            self.decisions.append(events)
        return events

    def problems(self) -> list[tuple[str, str]]:
        return [(p.kind, p.message) for p in check_execution(history(self.execution_id, self.decisions), ended=True)]


class TestInvariants:
    def test_a_finish_execution_with_skipped_nodes_keeps_every_invariant(self) -> None:
        story = Story(resolved_launch(lifecycle_workflows.branches.spec, {"x": 1, "flag": FLAG}))
        roots = queued_of(story.decisions[0])
        story.step(fail(roots["unless_flagged"]))
        story.step(succeed(queued_of(story.step(succeed(roots["step-1"], {"result": 2})))["step-2"], {"result": 3}))
        assert story.state.status == "failed" and story.problems() == []
        details = [(t.event, t.detail) for t in timeline(history("e", story.decisions)) if t.event == "node_skipped.v1"]
        assert details == [("node_skipped.v1", "node 'unless_flagged' failed")] * 2

    def test_an_aborted_execution_with_its_stopped_attempt_keeps_every_invariant(self) -> None:
        story = Story(resolved_launch(lifecycle_workflows.chain.spec, {"x": 1, "flag": FLAG}))
        queued = queued_of(story.decisions[0])["step"]
        story.step(abort())
        story.step(
            ReportAttemptStopped(
                command_id="s", execution_id="e", node="step", attempt_id=queued.attempt_id, worker="w", reason="killed"
            )
        )
        assert story.problems() == []
        told = [(t.event, t.detail) for t in timeline(history("e", story.decisions))][-2:]
        assert told == [("execution_aborted.v1", "enough (by ann@box)"), ("attempt_stopped.v1", "killed")]

    def test_a_recovery_keeps_every_invariant(self) -> None:
        story = Story(relaunch(failed_chain(), recover=True), "r")
        queued = queued_of(story.decisions[0])["unless_flagged"]
        story.step(succeed(queued_of(story.step(succeed(queued, {"result": 4}, "r")))["step-1"], {"result": 5}, "r"))
        assert story.state.status == "succeeded" and story.problems() == []

    def test_a_skip_without_a_failure_a_late_recovery_and_an_early_stop_are_reported(self) -> None:
        first = resolved_launch(lifecycle_workflows.chain.spec, {"x": 1, "flag": FLAG})
        launch_events = decide_batch(None, [first], AT).events
        queued = queued_of(launch_events)["step"]
        forged = [
            launch_events,
            [NodeSkipped(node="step-1", reason="?")],
            [NodeRecovered(node="step", outputs={"result": 2}, source_execution="x")],
            [AttemptStopped(node="step", attempt_id=queued.attempt_id, worker="w", reason="?")],
        ]
        kinds = [p.kind for p in check_execution(history("e", forged))]
        assert kinds == ["skipped_wrongly", "recovered_late", "stopped_early"]


def test_a_decision_that_records_a_stopped_attempt_shows_its_execution_ended() -> None:
    """Executors read an execution's last decision to know it ended: after an abort, it may record a stop."""
    stopped = AttemptStopped(node="step", attempt_id="e/step/1", worker="w", reason="killed")
    [record] = history("e", [[stopped]])
    assert codec.ends_execution(record.data)
    [other] = history("e", [[NodeSkipped(node="step", reason="?")]])
    assert not codec.ends_execution(other.data)


def test_a_relaunch_of_a_launch_through_a_plan_keeps_the_plan_and_its_resolved_inputs() -> None:
    spec = lifecycle_workflows.chain.spec
    plan = LaunchPlanSpec(
        name="nightly",
        version="v1",
        workflow=spec.name,
        workflow_version=spec.version,
        default_inputs={"x": 7},
        fixed_inputs={"flag": FLAG},
    )
    command = LaunchExecution(
        command_id="launch:e", execution_id="e", project="tests", domain="dev", launch_plan="nightly"
    )
    original = decide_batch(None, [ResolvedLaunch(command=command, workflow=spec, launch_plan=plan)], AT).state
    assert original is not None and original.launch_plan == "nightly@v1"
    launch = decided(None, relaunch(original))[0]
    assert isinstance(launch, ExecutionLaunched)
    assert (launch.launch_plan, launch.inputs, launch.relaunch_of) == ("nightly@v1", {"x": 7, "flag": FLAG}, "e")


def test_a_recovery_that_names_no_execution_is_refused() -> None:
    command = LaunchExecution(command_id="launch:r", execution_id="r", project="tests", domain="dev", recover=True)
    resolved = ResolvedLaunch(command=command, workflow=lifecycle_workflows.chain.spec)
    [(_, reason)] = decide_batch(None, [resolved], AT).rejections
    assert reason == "a recovery names the execution it recovers (relaunch_of)"
