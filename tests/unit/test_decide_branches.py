"""Conditionals in the pure state machine: a branch node takes the first case that holds once the values its
conditions read are known, skips the other cases' nodes, and succeeds with the taken case's outputs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from plait import conditional, task, workflow
from plait.core.decide import decide_batch
from plait.core.events import (
    AttemptStarted,
    BranchTaken,
    Event,
    ExecutionFailed,
    ExecutionSucceeded,
    NodeQueued,
    NodeSkipped,
    NodeSucceeded,
)
from plait.core.state import Execution
from plait.errors import DefinitionError
from tests import branch_workflows, map_workflows
from tests.helpers.launching import launched
from tests.helpers.reports import result_of

AT = datetime(2026, 1, 2, tzinfo=UTC)


def succeed(state: Execution, queued: NodeQueued, value: Any) -> list[Event]:
    command = result_of(queued, value, state.execution_id)
    started, *events = decide_batch(state, [command], AT).events  # a result unannounced is recorded started first
    assert isinstance(started, AttemptStarted)
    return events


def only_queued(events: list[Event]) -> NodeQueued:
    [queued] = [e for e in events if isinstance(e, NodeQueued)]
    return queued


def test_the_first_case_that_holds_runs_and_the_others_are_skipped() -> None:
    state, events = launched(branch_workflows.classify, {"x": 3.0}, AT)
    events = succeed(state, only_queued(events), 6.0)
    assert [type(e) for e in events] == [NodeSucceeded, BranchTaken, NodeSkipped, NodeSkipped, NodeQueued]
    taken = events[1]
    assert isinstance(taken, BranchTaken) and (taken.node, taken.case) == ("size", 1)
    assert taken.condition == "(double.result > 1) & (double.result <= 10)"
    assert {e.node for e in events if isinstance(e, NodeSkipped)} == {"label", "label-2"}
    queued = only_queued(events)
    assert (queued.node, queued.inputs) == ("label-1", {"prefix": "medium", "x": 6.0})
    assert state.nodes["size"].status == "running" and state.nodes["label"].status == "skipped"


def test_the_branch_succeeds_with_the_taken_cases_output_and_its_children_go_on() -> None:
    state, events = launched(branch_workflows.classify, {"x": 3.0}, AT)
    events = succeed(state, only_queued(events), 6.0)
    events = succeed(state, only_queued(events), "medium:6")
    assert [type(e) for e in events] == [NodeSucceeded, NodeSucceeded, NodeQueued]
    assert events[1] == NodeSucceeded(node="size", attempt_id="", outputs={"result": "medium:6"})
    shout = only_queued(events)
    assert (shout.node, shout.inputs) == ("shout", {"text": "medium:6"})
    [_done, finished] = succeed(state, shout, "MEDIUM:6")
    assert isinstance(finished, ExecutionSucceeded) and finished.outputs == {"result": "MEDIUM:6"}
    assert state.status == "succeeded"


def test_the_else_case_runs_when_no_condition_holds() -> None:
    state, events = launched(branch_workflows.classify, {"x": 0.25}, AT)
    events = succeed(state, only_queued(events), 0.5)
    taken = next(e for e in events if isinstance(e, BranchTaken))
    assert (taken.case, taken.condition) == (2, "else")
    assert only_queued(events).inputs == {"prefix": "small", "x": 0.25}


def test_a_branch_on_a_workflow_input_is_decided_at_launch() -> None:
    state, events = launched(branch_workflows.positive_only, {"x": 2.0}, AT)
    assert [type(e).__name__ for e in events] == ["ExecutionLaunched", "BranchTaken", "NodeQueued"]
    [_done, _branch_done, finished] = succeed(state, only_queued(events), 4.0)
    assert isinstance(finished, ExecutionSucceeded) and finished.outputs == {"result": 4.0}


def test_an_else_that_fails_fails_the_execution_with_its_message() -> None:
    state, events = launched(branch_workflows.positive_only, {"x": -1.0}, AT)
    assert [type(e).__name__ for e in events] == [
        "ExecutionLaunched",
        "BranchTaken",
        "NodeSkipped",
        "NodeFailed",
        "ExecutionFailed",
    ]
    failed = events[-1]
    assert isinstance(failed, ExecutionFailed) and failed.node == "sign"
    assert (failed.error.message, failed.error.error_type) == ("x must not be negative", "BranchFailed")
    assert state.status == "failed"


def test_a_nested_branch_runs_only_inside_its_taken_case_and_skips_with_its_parent() -> None:
    state, events = launched(branch_workflows.nested, {"x": -1.0, "fast": True}, AT)
    skipped = {e.node for e in events if isinstance(e, NodeSkipped)}
    assert skipped == {"inner", "label", "double", "label-1"}
    assert only_queued(events).node == "label-2"
    state, events = launched(branch_workflows.nested, {"x": 2.0, "fast": False}, AT)
    assert [(e.node, e.case) for e in events if isinstance(e, BranchTaken)] == [("outer", 0), ("inner", 1)]
    events = succeed(state, only_queued(events), 4.0)
    events = succeed(state, only_queued(events), "slow:4")
    assert [(type(e).__name__, getattr(e, "node", "")) for e in events] == [
        ("NodeSucceeded", "label-1"),
        ("NodeSucceeded", "inner"),
        ("NodeSucceeded", "outer"),
        ("ExecutionSucceeded", ""),
    ]
    assert state.outputs == {"result": "slow:4"}


@task
def parse(text: str) -> int:
    return int(text)


@task
def as_text(n: int) -> str:
    return str(n)


@task
def maybe(n: int) -> int | None:
    return n if n > 0 else None


@workflow
def checks_none(n: int) -> str:
    found = maybe(n=n)
    return conditional("found").if_(found == None).then(as_text(n=0)).else_().then(as_text(n=n))  # noqa: E711


def test_an_optional_output_compares_with_none() -> None:
    state, events = launched(checks_none, {"n": 0}, AT)
    events = succeed(state, only_queued(events), None)
    taken = next(e for e in events if isinstance(e, BranchTaken))
    assert (taken.case, taken.condition) == (0, "maybe.result == None")
    assert only_queued(events).node == "as_text"


def test_cases_with_different_output_types_are_refused_when_defined() -> None:
    with pytest.raises(
        DefinitionError, match=r"case 1: produces 'result' \(str\), but case 0 produces 'result' \(int\)"
    ):

        @workflow
        def mismatched(n: int) -> int:
            return conditional("c").if_(n > 1).then(parse(text="1")).else_().then(as_text(n=n))


def test_a_condition_used_as_a_bool_is_refused_when_defined() -> None:
    with pytest.raises(DefinitionError, match="not known while the workflow is defined"):

        @workflow
        def python_if(n: int) -> int:
            if n > 1:
                return parse(text="1")
            return parse(text="2")


def test_comparing_a_promise_with_a_value_of_another_type_is_refused() -> None:
    with pytest.raises(DefinitionError, match=r"'one' is not a int"):

        @workflow
        def wrong_type(n: int) -> int:
            return conditional("c").if_(n == "one").then(parse(text="1")).else_().then(parse(text="2"))


def test_a_node_inside_a_case_cannot_be_read_outside_it() -> None:
    with pytest.raises(DefinitionError, match="inside case 0 of branch 'c'"):

        @workflow
        def leaks(n: int) -> str:
            inside: list[Any] = []

            def keep(value: Any) -> Any:
                inside.append(value)
                return value

            conditional("c").if_(n > 1).then(keep(parse(text="1"))).else_().then(parse(text="2"))
            return as_text(n=inside[0])


def test_plain_workflows_keep_their_encoding_and_versions() -> None:
    """Nodes outside conditionals leave the new fields out of their encoding, so their content hashes are as
    before."""
    for node in [*branch_workflows.classify.spec.nodes, *map_workflows.scaled_sum.spec.nodes]:
        encoded = msgspec.json.encode(node)
        assert (b'"branch":{' in encoded) == (node.id == "size")
        assert (b'"guard"' in encoded) == node.id.startswith("label")


def test_a_conditional_without_an_else_is_refused_when_defined() -> None:
    with pytest.raises(DefinitionError, match=r"conditional 'c' is not ended: end it with \.else_\(\)"):

        @workflow
        def unfinished(n: int) -> int:
            conditional("c").if_(n > 1).then(parse(text="1"))
            return parse(text="2")
