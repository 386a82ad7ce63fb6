"""Bounds: nesting of values at the edge, rejections recorded per execution, decisions that cannot be stored or
read back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from plait import codec
from plait.core.commands import ReportAttemptResult
from plait.core.decide import MAX_RECORDED_REJECTIONS, decide_batch, decide_unstorable
from plait.core.events import AttemptFailed, CommandRejected, Decision, ExecutionFailed, NodeFailed, NodeQueued
from plait.core.validate import MAX_VALUE_DEPTH, nesting_problem
from plait_scheduler.decisions import UnreadableDecision, encode_readable
from tests import definitions
from tests.helpers.launching import launched, resolved_launch

AT = datetime(2026, 1, 2, tzinfo=UTC)


def nested(depth: int) -> Any:
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def test_nesting_is_measured_in_containers_and_refused_past_the_limit() -> None:
    assert nesting_problem(1) is None
    assert nesting_problem(nested(MAX_VALUE_DEPTH)) is None
    assert nesting_problem([list(range(10_000)), {"a": [1, 2]}]) is None
    assert nesting_problem(nested(MAX_VALUE_DEPTH + 1)) == (
        f"is nested more than {MAX_VALUE_DEPTH} levels deep; the limit is {MAX_VALUE_DEPTH}"
    )


def test_a_launch_input_nested_too_deeply_is_rejected_naming_it() -> None:
    launch = resolved_launch(definitions.diamond.spec, {"x": nested(500)})
    outcome = decide_batch(None, [launch], AT)
    assert outcome.events == []
    [(_, reason)] = outcome.rejections
    assert "input 'x' is nested more than 64 levels deep; the limit is 64" in reason


def test_outputs_nested_too_deeply_fail_the_attempt_and_every_decision_decodes() -> None:
    """Nested ~977 deep, a value made a decision that no reader could decode: now it never gets that far."""
    state, _ = launched(definitions.diamond, {"x": 1}, AT)
    attempt = state.nodes["increment"].attempts[0].attempt_id
    result = ReportAttemptResult(
        command_id="r",
        execution_id="e",
        node="increment",
        attempt_id=attempt,
        worker="w",
        outputs={"result": nested(977)},
    )
    outcome = decide_batch(state, [result], AT)
    failed = next(e for e in outcome.events if isinstance(e, AttemptFailed))
    assert "output 'result' is nested more than 64 levels deep" in failed.error.message
    data = codec.encode(
        Decision(execution_id="e", at=AT, replica="r", commands=("r",), previous="", events=tuple(outcome.events))
    )
    assert codec.decision_decoder.decode(data).events == tuple(outcome.events)


def test_rejections_recorded_on_an_execution_are_capped_and_all_are_still_returned() -> None:
    state, _ = launched(definitions.diamond, {"x": 1}, AT)
    junk = [
        ReportAttemptResult(command_id=f"junk-{i}", execution_id="e", node="nope", attempt_id="a", worker="w")
        for i in range(MAX_RECORDED_REJECTIONS + 20)
    ]
    outcome = decide_batch(state, junk, AT)
    assert len(outcome.rejections) == MAX_RECORDED_REJECTIONS + 20
    assert sum(isinstance(e, CommandRejected) for e in outcome.events) == MAX_RECORDED_REJECTIONS
    assert len(decide_batch(outcome.state, junk[:1], AT).events) == 0


def test_an_unstorable_decision_fails_the_node_whose_value_made_it() -> None:
    state, _ = launched(definitions.diamond, {"x": 1}, AT)
    attempt = state.nodes["increment"].attempts[0].attempt_id
    result = ReportAttemptResult(
        command_id="r", execution_id="e", node="increment", attempt_id=attempt, worker="w", outputs={"result": 2}
    )
    too_large = decide_batch(launched(definitions.diamond, {"x": 1}, AT)[0], [result], AT).events
    outcome = decide_unstorable(state, result, too_large, "the decision would take 9 bytes; the limit is 8", AT)
    assert [type(e) for e in outcome.events] == [AttemptFailed, NodeFailed, ExecutionFailed]
    assert all(getattr(e, "node", None) == "increment" for e in outcome.events)
    assert outcome.state is not None and outcome.state.status == "failed"
    assert outcome.state.error is not None and outcome.state.error.message.endswith("the limit is 8")
    assert outcome.command_ids == ["r"]


def test_a_decision_nested_too_deeply_to_be_read_back_is_refused_before_it_is_appended() -> None:
    def queueing(depth: int) -> Decision:
        inputs = {"x": nested(depth)}
        event = NodeQueued(node="n", attempt_id="e/n/1", attempt=1, task="t", queue="q", inputs=inputs)
        return Decision(execution_id="e", at=AT, replica="r", commands=("c",), previous="", events=(event,))

    readable = encode_readable(queueing(900))
    assert codec.decision_decoder.decode(readable) == queueing(900)
    with pytest.raises(UnreadableDecision, match="nests too deeply to be stored and read back"):
        encode_readable(queueing(1200))
