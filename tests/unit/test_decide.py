"""The pure state machine: ``decide``, ``decide_batch``, ``evolve``/``apply_event`` and replay."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from plait import codec, workflow
from plait.core.commands import (
    AbortExecution,
    Command,
    ReportAttemptResult,
    ReportAttemptResults,
    ReportAttemptStarted,
    ResolvedLaunch,
)
from plait.core.decide import Rejected, decide, decide_batch
from plait.core.events import (
    TERMINAL_EVENTS,
    AttemptFailed,
    AttemptStarted,
    CommandRejected,
    Decision,
    Event,
    ExecutionAborted,
    ExecutionFailed,
    ExecutionLaunched,
    ExecutionSucceeded,
    NodeFailed,
    NodeQueued,
    NodeSucceeded,
    TaskError,
)
from plait.core.ids import attempt_id
from plait.core.state import Execution
from plait.sdk import Workflow
from tests import definitions
from tests.helpers.decisions import decision_of, replay, without_bookkeeping
from tests.helpers.launching import resolved_launch

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
EXECUTION = "exec-1"
WORKER = "worker-1"
BOOM = TaskError(kind="user", message="boom", error_type="RuntimeError")
_command_ids = itertools.count(1)


def launch_of(workflow: Workflow[..., Any], inputs: dict[str, Any], command_id: str = "launch-1") -> ResolvedLaunch:
    return resolved_launch(workflow.spec, inputs, EXECUTION, command_id)


def aid(node: str, attempt: int = 1) -> str:
    return attempt_id(EXECUTION, node, attempt)


def started(node: str, attempt: int = 1) -> ReportAttemptStarted:
    return ReportAttemptStarted(
        command_id=f"started-{next(_command_ids)}",
        execution_id=EXECUTION,
        node=node,
        attempt_id=aid(node, attempt),
        worker=WORKER,
    )


def result(
    node: str, attempt: int = 1, *, outputs: dict[str, Any] | None = None, error: TaskError | None = None
) -> ReportAttemptResult:
    return ReportAttemptResult(
        command_id=f"result-{next(_command_ids)}",
        execution_id=EXECUTION,
        node=node,
        attempt_id=aid(node, attempt),
        worker=WORKER,
        outputs=outputs,
        error=error,
    )


def succeeded(node: str, value: Any, attempt: int = 1) -> ReportAttemptResult:
    return result(node, attempt, outputs={"result": value})


def node_succeeded(node: str, value: Any, attempt: int = 1) -> NodeSucceeded:
    return NodeSucceeded(node=node, attempt_id=aid(node, attempt), outputs={"result": value}, worker=WORKER)


def queued(task: str, node: str, inputs: dict[str, Any], attempt: int = 1, queue: str = "default") -> NodeQueued:
    return NodeQueued(
        node=node,
        attempt_id=aid(node, attempt),
        attempt=attempt,
        task=f"tests.definitions.{task}",
        queue=queue,
        inputs=inputs,
    )


class Run:
    """An execution driven through ``decide_batch``, keeping the decisions a scheduler would append."""

    def __init__(self, workflow: Workflow[..., Any], inputs: dict[str, Any]) -> None:
        self.state: Execution | None = None
        self.decisions: list[Decision] = []
        self.events = self.send(launch_of(workflow, inputs))

    @property
    def execution(self) -> Execution:
        assert self.state is not None
        return self.state

    def send(self, *commands: Command | ResolvedLaunch, report_started: bool = True) -> list[Event]:
        """Decide ``commands``; a result's attempt is first reported started (as a slow attempt's executor
        does) unless ``report_started`` is False."""
        unstarted = self._unstarted(commands) if report_started and self.state is not None else []
        if unstarted:
            self.send(*(started(c.node, int(c.attempt_id.rsplit("/", 1)[1])) for c in unstarted))
        outcome = decide_batch(self.state, commands, AT)
        self.state = outcome.state
        if outcome.events:
            self.decisions.append(decision_of(outcome, AT))
        return outcome.events

    def _unstarted(self, commands: tuple[Command | ResolvedLaunch, ...]) -> list[ReportAttemptResult]:
        results = [c for c in commands if isinstance(c, ReportAttemptResult)]
        unstarted = []
        for command in results:
            node = self.execution.nodes.get(command.node)
            attempt = node.find_attempt(command.attempt_id) if node else None
            if attempt is not None and attempt.status == "queued":
                unstarted.append(command)
        return unstarted

    def node_statuses(self) -> dict[str, str]:
        return {node_id: node.status for node_id, node in self.execution.nodes.items()}


def finish_diamond(run: Run) -> None:
    run.send(succeeded("increment", 6))
    run.send(succeeded("double", 12), succeeded("increment-1", 7))
    run.send(succeeded("merge", 19))


# --- launch ---------------------------------------------------------------------------------------------------


def test_launch_queues_exactly_the_root_nodes_with_resolved_inputs() -> None:
    run = Run(definitions.diamond, {"x": 5})

    assert run.events == [
        ExecutionLaunched(
            execution_id=EXECUTION, project="tests", domain="dev", workflow=definitions.diamond.spec, inputs={"x": 5}
        ),
        queued("increment", "increment", {"x": 5}),
    ]
    assert run.node_statuses() == {
        "increment": "queued",
        "double": "waiting",
        "increment-1": "waiting",
        "merge": "waiting",
    }
    assert run.execution.status == "running"
    assert run.execution.launch_command == "launch-1"


def test_launch_queues_every_root_of_a_fan_out() -> None:
    run = Run(definitions.fan_out_fan_in, {"x": 3})

    assert run.events[1:] == [
        queued("scale", node, {"x": 3, "by": by})
        for node, by in [("scale", 1), ("scale-1", 2), ("scale-2", 3), ("scale-3", 4), ("scale-4", 5)]
    ]


def test_launch_fills_in_default_inputs() -> None:
    run = Run(definitions.moved, {"point": {"x": 1, "y": 2}})

    launched, shift = run.events
    assert isinstance(launched, ExecutionLaunched)
    assert launched.inputs == {"point": {"x": 1, "y": 2}, "by": 1}
    assert shift == queued("shift", "shift", {"point": {"x": 1, "y": 2}, "by": 1})


def test_launch_of_a_workflow_without_nodes_succeeds_at_once() -> None:
    run = Run(definitions.passthrough, {"x": 1})

    assert run.events[1:] == [ExecutionSucceeded(outputs={"result": "none"})]
    assert run.execution.status == "succeeded"
    assert run.execution.outputs == {"result": "none"}


@pytest.mark.parametrize(
    ("inputs", "fragments"),
    [
        pytest.param({}, ["missing input 'x' (int)"], id="missing"),
        pytest.param({"x": 1, "y": 2}, ["unknown input 'y'"], id="unknown"),
        pytest.param({"x": "five"}, ["input 'x' expects int", "got `str`"], id="wrong-type"),
        pytest.param({"x": [1]}, ["input 'x' expects int", "got `array`"], id="list-for-int"),
        pytest.param({"y": 1}, ["missing input 'x'", "unknown input 'y'"], id="every-problem-at-once"),
    ],
)
def test_bad_launch_inputs_are_rejected_naming_the_input(inputs: dict[str, Any], fragments: list[str]) -> None:
    with pytest.raises(Rejected) as rejected:
        decide(None, launch_of(definitions.diamond, inputs))

    assert rejected.value.reason.startswith("workflow 'tests.definitions.diamond': ")
    for fragment in fragments:
        assert fragment in rejected.value.reason


@pytest.mark.parametrize(
    ("point", "fragments"),
    [
        pytest.param({"x": "a", "y": 1}, ["got `str`", "`$.x`"], id="wrong-field-type"),
        pytest.param({"x": 1}, ["missing required field `y`"], id="missing-field"),
        pytest.param({"x": 1, "y": 2, "z": 3}, ["unknown field `z`"], id="unknown-field"),
    ],
)
def test_a_bad_field_of_a_struct_input_is_rejected_with_its_path(point: dict[str, Any], fragments: list[str]) -> None:
    with pytest.raises(Rejected) as rejected:
        decide(None, launch_of(definitions.moved, {"point": point}))

    assert "input 'point' expects tests.definitions.Point" in rejected.value.reason
    for fragment in fragments:
        assert fragment in rejected.value.reason


def test_a_launch_of_a_spec_whose_node_id_would_break_attempt_ids_is_rejected() -> None:
    """A spec any client registered, not traced by the SDK: a ',' would split a dispatch copy's attempt list, a line
    break would end a message header."""
    launch = launch_of(definitions.diamond, {"x": 1})
    spec = launch.workflow
    renamed = msgspec.structs.replace(spec, nodes=tuple(msgspec.structs.replace(n, id=f"{n.id},x") for n in spec.nodes))
    with pytest.raises(Rejected, match="may not hold '/', ',', whitespace or control characters"):
        decide(None, msgspec.structs.replace(launch, workflow=renamed))


def test_a_numeric_string_is_not_an_int_input() -> None:
    with pytest.raises(Rejected, match="input 'x' expects int"):
        decide(None, launch_of(definitions.diamond, {"x": "5"}))


def test_decide_batch_keeps_no_trace_of_a_rejected_launch() -> None:
    launch = launch_of(definitions.diamond, {})

    outcome = decide_batch(None, [launch], AT)

    assert outcome.state is None
    assert outcome.events == []
    assert outcome.command_ids == []
    assert [(command, "missing input 'x'" in reason) for command, reason in outcome.rejections] == [(launch, True)]


def test_an_unresolved_launch_is_rejected() -> None:
    with pytest.raises(Rejected, match="resolved against the registry"):
        decide(None, launch_of(definitions.diamond, {"x": 1}).command)


def test_a_relaunch_with_the_same_command_id_changes_nothing() -> None:
    run = Run(definitions.diamond, {"x": 5})

    assert run.send(launch_of(definitions.diamond, {"x": 5})) == []
    assert run.send(launch_of(definitions.diamond, {"x": 6})) == []
    assert run.execution.inputs == {"x": 5}


def test_a_relaunch_with_another_command_id_is_rejected() -> None:
    run = Run(definitions.diamond, {"x": 5})
    relaunch = launch_of(definitions.diamond, {"x": 5}, command_id="launch-2")

    with pytest.raises(Rejected, match=f"execution {EXECUTION} already exists"):
        decide(run.state, relaunch)
    events = run.send(relaunch)

    assert events == [
        CommandRejected(
            command_id="launch-2",
            command_type="launch_execution.v1",
            reason=f"execution {EXECUTION} already exists",
        )
    ]
    assert run.execution.rejected_commands == events


# --- results --------------------------------------------------------------------------------------------------


def test_a_node_is_queued_only_when_all_its_upstreams_succeeded() -> None:
    run = Run(definitions.diamond, {"x": 5})

    assert run.send(succeeded("increment", 6)) == [
        node_succeeded("increment", 6),
        queued("double", "double", {"x": 6}),
        queued("increment", "increment-1", {"x": 6}),
    ]
    assert run.send(succeeded("double", 12)) == [node_succeeded("double", 12)]
    assert run.execution.nodes["merge"].status == "waiting"
    assert run.send(succeeded("increment-1", 7)) == [
        node_succeeded("increment-1", 7),
        queued("merge", "merge", {"a": 12, "b": 7}),
    ]
    assert run.send(succeeded("merge", 19)) == [
        node_succeeded("merge", 19),
        ExecutionSucceeded(outputs={"result": 19}),
    ]

    state = run.execution
    assert state.status == "succeeded"
    assert state.outputs == {"result": 19}
    assert state.node_outputs == {
        "increment": {"result": 6},
        "double": {"result": 12},
        "increment-1": {"result": 7},
        "merge": {"result": 19},
    }
    assert set(run.node_statuses().values()) == {"succeeded"}
    assert state.finished_at == AT


def test_a_fan_in_waits_for_the_last_upstream_and_keeps_the_binding_order() -> None:
    run = Run(definitions.fan_out_fan_in, {"x": 3})
    scales = ["scale", "scale-1", "scale-2", "scale-3", "scale-4"]

    for node in reversed(scales[1:]):
        events = run.send(succeeded(node, 3 * (scales.index(node) + 1)))
        assert [type(e) for e in events] == [NodeSucceeded]
    events = run.send(succeeded("scale", 3))

    assert events[1:] == [queued("summarize", "summarize", {"values": [3, 6, 9, 12, 15]})]
    bounds = result("summarize", outputs={"low": 3, "high": 15})
    assert run.send(bounds)[1:] == [queued("increment", "increment", {"x": 3})]
    assert run.send(succeeded("increment", 4))[1:] == [ExecutionSucceeded(outputs={"low": 4, "high": 15})]


def test_a_node_that_reads_one_upstream_twice_is_queued_once() -> None:
    run = Run(definitions.doubled_up, {"x": 1})

    assert run.send(succeeded("increment", 2)) == [
        node_succeeded("increment", 2),
        queued("merge", "merge", {"a": 2, "b": 2}),
    ]
    assert run.send(succeeded("merge", 4))[1:] == [ExecutionSucceeded(outputs={"result": 4})]


def test_a_started_report_marks_the_attempt_running() -> None:
    run = Run(definitions.diamond, {"x": 5})

    assert run.send(started("increment")) == [
        AttemptStarted(node="increment", attempt_id=aid("increment"), worker=WORKER)
    ]

    node = run.execution.nodes["increment"]
    assert node.status == "running"
    assert (node.attempts[0].status, node.attempts[0].worker, node.attempts[0].started_at) == ("running", WORKER, AT)


def test_a_duplicate_result_changes_nothing() -> None:
    run = Run(definitions.diamond, {"x": 5})
    first = succeeded("increment", 6)
    run.send(first)

    assert run.send(first) == []
    assert run.send(succeeded("increment", 6)) == []  # redelivered under another command id
    assert run.send(succeeded("increment", 100)) == []  # a different outcome of a finished attempt
    assert run.execution.node_outputs["increment"] == {"result": 6}


def test_a_duplicate_started_report_changes_nothing() -> None:
    run = Run(definitions.diamond, {"x": 5})
    report = started("increment")
    run.send(report)

    assert run.send(report) == []
    assert run.send(started("increment")) == []


def test_a_started_report_after_the_result_changes_nothing() -> None:
    run = Run(definitions.diamond, {"x": 5})
    run.send(succeeded("increment", 6))

    assert run.send(started("increment")) == []
    assert run.execution.nodes["increment"].status == "succeeded"


# --- failures and retries -------------------------------------------------------------------------------------


def test_a_failed_attempt_with_retries_left_is_queued_again_with_the_same_inputs() -> None:
    run = Run(definitions.retried, {"x": 4})

    events = run.send(result("flaky", error=BOOM))

    assert events == [
        AttemptFailed(
            node="flaky", attempt_id=aid("flaky"), error=BOOM, worker=WORKER, budget="retries", retries_left=1
        ),
        queued("flaky", "flaky", {"x": 4}, attempt=2),
    ]
    assert aid("flaky", 2) != aid("flaky", 1)
    node = run.execution.nodes["flaky"]
    assert node.status == "queued"
    assert [(a.attempt, a.status) for a in node.attempts] == [(1, "failed"), (2, "queued")]
    assert run.execution.status == "running"


def test_a_retry_stays_on_the_task_queue() -> None:
    run = Run(definitions.retried, {"x": 4})

    assert run.send(result("flaky_on_gpu", error=BOOM))[1:] == [
        queued("flaky_on_gpu", "flaky_on_gpu", {"x": 4}, attempt=2, queue="gpu")
    ]


def test_a_late_report_of_a_failed_attempt_changes_nothing() -> None:
    run = Run(definitions.retried, {"x": 4})
    run.send(result("flaky", error=BOOM))

    assert run.send(started("flaky")) == []
    assert run.send(succeeded("flaky", 4)) == []
    assert run.send(result("flaky", error=BOOM)) == []
    assert run.send(succeeded("flaky", 4, attempt=2)) == [node_succeeded("flaky", 4, attempt=2)]


def test_the_last_retry_failing_fails_the_node_and_the_execution() -> None:
    run = Run(definitions.retried, {"x": 4})
    run.send(result("flaky", 1, error=BOOM))
    run.send(result("flaky", 2, error=BOOM))

    assert run.send(result("flaky", 3, error=BOOM)) == [
        AttemptFailed(node="flaky", attempt_id=aid("flaky", 3), error=BOOM, worker=WORKER, budget="retries"),
        NodeFailed(node="flaky", error=BOOM),
        ExecutionFailed(node="flaky", error=BOOM),
    ]
    assert [a.status for a in run.execution.nodes["flaky"].attempts] == ["failed"] * 3


def test_a_failed_attempt_without_retries_fails_the_node_and_the_execution() -> None:
    run = Run(definitions.diamond, {"x": 5})

    assert run.send(result("increment", error=BOOM)) == [
        AttemptFailed(node="increment", attempt_id=aid("increment"), error=BOOM, worker=WORKER, budget="retries"),
        NodeFailed(node="increment", error=BOOM),
        ExecutionFailed(node="increment", error=BOOM),
    ]
    state = run.execution
    assert (state.status, state.failed_node, state.error, state.finished_at) == ("failed", "increment", BOOM, AT)
    assert state.nodes["increment"].status == "failed"


@pytest.mark.parametrize(
    ("outputs", "problem"),
    [
        pytest.param({"result": "six"}, "output 'result' expects int: Expected `int`, got `str`", id="wrong-type"),
        pytest.param({}, "missing output 'result'", id="missing"),
        pytest.param({"result": 6, "extra": 1}, "unexpected output 'extra'", id="unexpected"),
    ],
)
def test_outputs_that_do_not_match_the_interface_fail_the_attempt_as_the_tasks_own_failure(
    outputs: dict[str, Any], problem: str
) -> None:
    run = Run(definitions.diamond, {"x": 5})

    failed, node_failed, execution_failed = run.send(result("increment", outputs=outputs))

    assert isinstance(failed, AttemptFailed)
    assert (failed.error.kind, failed.error.error_type, failed.budget) == ("user", "BadOutputs", "retries")
    assert failed.error.message.startswith("task 'tests.definitions.increment' returned bad outputs: ")
    assert problem in failed.error.message
    assert node_failed == NodeFailed(node="increment", error=failed.error)
    assert execution_failed == ExecutionFailed(node="increment", error=failed.error)
    assert "increment" not in run.execution.node_outputs


def test_a_struct_output_with_a_wrong_field_fails_the_attempt() -> None:
    run = Run(definitions.moved, {"point": {"x": 1, "y": 2}})

    failed = run.send(result("shift", outputs={"result": {"x": "two", "y": 3}}))[0]

    assert isinstance(failed, AttemptFailed)
    assert (failed.error.kind, failed.budget) == ("user", "retries")
    assert "output 'result' expects tests.definitions.Point" in failed.error.message
    assert "`$.x`" in failed.error.message


def test_bad_outputs_are_retried_like_any_failure() -> None:
    run = Run(definitions.retried, {"x": 4})

    failed, requeued = run.send(result("flaky", outputs={"result": None}))

    assert isinstance(failed, AttemptFailed)
    assert (failed.error.kind, failed.budget) == ("user", "retries")
    assert requeued == queued("flaky", "flaky", {"x": 4}, attempt=2)


def test_a_numeric_string_is_not_an_int_output() -> None:
    run = Run(definitions.diamond, {"x": 5})

    assert isinstance(run.send(succeeded("increment", "6"))[0], AttemptFailed)


# --- the end of an execution ----------------------------------------------------------------------------------


def fail_diamond(run: Run) -> None:
    run.send(result("increment", error=BOOM))


def abort(run: Run) -> None:
    run.send(AbortExecution(command_id="abort-1", execution_id=EXECUTION, reason="stop"))


@pytest.mark.parametrize("end", [finish_diamond, fail_diamond, abort])
def test_commands_after_the_execution_ended_change_nothing(end: Callable[[Run], None]) -> None:
    run = Run(definitions.diamond, {"x": 5})
    end(run)
    before = msgspec.to_builtins(run.state)

    commands: list[Command] = [
        started("increment"),
        started("double"),
        succeeded("increment", 6),
        result("increment", error=BOOM),
        succeeded("merge", 19),
        succeeded("ghost", 0),
        AbortExecution(command_id="abort-2", execution_id=EXECUTION),
    ]
    for command in commands:
        assert decide(run.state, command) == []
    assert run.execution.terminal
    assert msgspec.to_builtins(run.state) == before


def test_abort_ends_a_running_execution() -> None:
    run = Run(definitions.diamond, {"x": 5})
    run.send(succeeded("increment", 6))

    assert run.send(AbortExecution(command_id="abort-1", execution_id=EXECUTION, reason="stop")) == [
        ExecutionAborted(reason="stop")
    ]
    state = run.execution
    assert (state.status, state.abort_reason, state.finished_at) == ("aborted", "stop", AT)
    assert state.outputs is None


# --- rejected commands ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        pytest.param(succeeded("ghost", 1), f"execution {EXECUTION} has no node 'ghost'", id="result-unknown-node"),
        pytest.param(
            succeeded("increment", 1, attempt=2),
            f"node 'increment' has no attempt '{EXECUTION}/increment/2'",
            id="result-unknown-attempt",
        ),
        pytest.param(
            succeeded("merge", 1), f"node 'merge' has no attempt '{EXECUTION}/merge/1'", id="result-waiting-node"
        ),
        pytest.param(
            started("ghost"),
            f"execution {EXECUTION} has no attempt '{EXECUTION}/ghost/1' of node 'ghost'",
            id="started",
        ),
        pytest.param(result("increment"), "a result must carry either outputs or an error", id="empty-result"),
    ],
)
def test_a_command_that_cannot_apply_is_rejected(command: Command, reason: str) -> None:
    run = Run(definitions.diamond, {"x": 5})

    with pytest.raises(Rejected) as rejected:
        decide(run.state, command)

    assert rejected.value.reason == reason


def test_decide_batch_records_a_rejected_command_on_an_existing_execution() -> None:
    run = Run(definitions.diamond, {"x": 5})
    ghost, good = succeeded("ghost", 1), succeeded("increment", 6)

    outcome = decide_batch(run.state, [ghost, good], AT)

    rejected = CommandRejected(
        command_id=ghost.command_id,
        command_type="report_attempt_result.v1",
        reason=f"execution {EXECUTION} has no node 'ghost'",
    )
    quick_start = AttemptStarted(node="increment", attempt_id=aid("increment"), worker=WORKER)
    assert outcome.events[:3] == [rejected, quick_start, node_succeeded("increment", 6)]
    assert outcome.command_ids == [ghost.command_id, good.command_id]
    assert outcome.rejections == [(ghost, rejected.reason)]
    assert run.execution.rejected_commands == [rejected]
    assert run.execution.status == "running"


def test_a_result_without_a_started_report_records_the_start_in_the_same_decision() -> None:
    run = Run(definitions.diamond, {"x": 5})
    events = run.send(succeeded("increment", 6), report_started=False)
    assert events[:2] == [
        AttemptStarted(node="increment", attempt_id=aid("increment"), worker=WORKER),
        node_succeeded("increment", 6),
    ]
    attempt = run.execution.nodes["increment"].attempts[0]
    assert (attempt.status, attempt.worker, attempt.started_at) == ("succeeded", WORKER, AT)
    assert run.send(started("increment"), report_started=False) == [], "a late started report changes nothing"


def test_decide_batch_records_nothing_for_a_missing_execution() -> None:
    report = started("increment")

    outcome = decide_batch(None, [report], AT)

    assert outcome.state is None
    assert outcome.events == []
    assert outcome.command_ids == []
    assert outcome.rejections == [(report, f"execution {EXECUTION} does not exist")]


# --- replay ---------------------------------------------------------------------------------------------------


def test_replaying_the_decisions_rebuilds_the_state_built_while_deciding() -> None:
    run = Run(definitions.retried, {"x": 4})
    duplicate = started("flaky")
    run.send(duplicate, result("flaky", error=BOOM), started("flaky_on_gpu"), report_started=False)
    ghost, relaunch = succeeded("ghost", 0), launch_of(definitions.retried, {"x": 4}, command_id="launch-2")
    run.send(duplicate, ghost, relaunch, report_started=False)
    run.send(started("flaky", 2), succeeded("flaky", 4, attempt=2), succeeded("flaky_on_gpu", 4), report_started=False)
    run.send(succeeded("merge", 8), succeeded("merge", 8), report_started=False)
    assert run.execution.status == "succeeded"

    replayed = replay(run.decisions)

    assert without_bookkeeping(replayed) == without_bookkeeping(run.state)
    assert replayed is not None
    assert (replayed.decisions, replayed.last_sequence, replayed.last_digest) == (5, 5, "digest-5")
    assert len(replayed.rejected_commands) == 2


def test_replaying_a_failed_execution_rebuilds_its_state() -> None:
    run = Run(definitions.diamond, {"x": 5})
    run.send(started("increment"), result("increment", outputs={"result": "six"}))

    assert without_bookkeeping(replay(run.decisions)) == without_bookkeeping(run.state)


def test_results_sent_together_are_decided_as_the_same_results_one_by_one() -> None:
    apart, together = Run(definitions.fan_out_fan_in, {"x": 3}), Run(definitions.fan_out_fan_in, {"x": 3})
    results = [succeeded(node, i) for i, node in enumerate(["scale", "scale-1", "scale-2", "scale-3", "scale-4"])]
    batch = ReportAttemptResults(command_id="results-1", execution_id=EXECUTION, results=tuple(results))

    events = together.send(batch, report_started=False)

    assert events == apart.send(*results, report_started=False)
    assert together.decisions[-1].commands == tuple(r.command_id for r in results), "each result is recorded"
    assert without_bookkeeping(together.state) == without_bookkeeping(apart.state)
    with pytest.raises(Rejected, match="one by one"):
        decide(together.state, batch)


def test_ends_execution_reads_only_the_event_kinds_and_agrees_with_the_decoded_decision() -> None:
    succeeding, failing = Run(definitions.diamond, {"x": 5}), Run(definitions.diamond, {"x": 5})
    finish_diamond(succeeding)
    failing.send(result("increment", error=BOOM))
    decisions = succeeding.decisions + failing.decisions
    assert [codec.ends_execution(codec.encode(d)) for d in decisions] == [
        any(isinstance(e, TERMINAL_EVENTS) for e in d.events) for d in decisions
    ]
    assert codec.ends_execution(codec.encode(succeeding.decisions[-1]))
    assert codec.ends_execution(codec.encode(failing.decisions[-1]))


def test_ends_execution_tells_large_decisions_apart_too() -> None:
    run = Run(definitions.diamond, {"x": 5})
    finish_diamond(run)
    padding = tuple(f"command-{i}" for i in range(500))  # as a decision of many commands is
    large = [codec.encode(msgspec.structs.replace(d, commands=padding)) for d in run.decisions]
    assert all(len(data) > 4096 for data in large)
    assert [codec.ends_execution(data) for data in large] == [False] * (len(large) - 1) + [True]


@workflow
def weighing(table: dict[str, int]) -> int:
    return definitions.weigh(table=table)


def test_ends_execution_is_not_fooled_by_a_terminal_events_tag_in_a_value() -> None:
    """The byte search only rules decisions out: a tag inside a value sends it to the decoder, which says no."""
    tag = str(ExecutionSucceeded.__struct_config__.tag)
    table = {tag: 1} | {f"row{i}": i for i in range(500)}  # a large decision: searched before it is decoded
    launched = codec.encode(Run(weighing, {"table": table}).decisions[0])
    assert f'"{tag}"'.encode() in launched and len(launched) > 4096
    assert not codec.ends_execution(launched)
