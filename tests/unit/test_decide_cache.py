"""Caching in the pure state machine: look-ups, hits, reservations, waiting, and keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from plait.core.commands import (
    CacheOutcome,
    LaunchExecution,
    ReportAttemptResult,
    ReportCacheLookup,
    ReportCacheLookups,
    ResolvedLaunch,
)
from plait.core.decide import decide, decide_batch
from plait.core.events import (
    ExecutionSucceeded,
    NodeCacheHit,
    NodeCacheLookup,
    NodeCacheWaiting,
    NodeQueued,
    TaskError,
)
from plait.core.ids import attempt_id, cache_key
from plait.core.state import Execution
from tests import cache_workflows

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
EXECUTION = "exec-c"
UNTIL = AT + timedelta(minutes=10)


def launched(inputs: dict[str, Any], *, overwrite: bool = False) -> Execution:
    command = LaunchExecution(
        command_id="launch",
        execution_id=EXECUTION,
        project="tests",
        domain="dev",
        workflow=cache_workflows.squared_then_doubled.name,
        version=cache_workflows.squared_then_doubled.spec.version,
        inputs=inputs,
        overwrite_cache=overwrite,
    )
    outcome = decide_batch(
        None, [ResolvedLaunch(command=command, workflow=cache_workflows.squared_then_doubled.spec)], AT
    )
    assert outcome.state is not None
    return outcome.state


def report(state: Execution, outcome: CacheOutcome, round_: int = 1, **found: Any) -> ReportCacheLookup:
    node = state.nodes["slow_square"]
    return ReportCacheLookup(
        command_id=f"cache-{outcome}-{round_}",
        execution_id=EXECUTION,
        node="slow_square",
        cache_key=node.cache_key,
        round=round_,
        outcome=outcome,
        **found,
    )


def apply(state: Execution, *commands: Any) -> list[Any]:
    outcome = decide_batch(state, list(commands), AT)
    return outcome.events


def expected_key(x: int, seconds: float) -> str:
    spec = cache_workflows.slow_square.spec
    return cache_key(spec.name, spec.cache_version, spec.interface, {"x": x, "seconds": seconds})


def test_a_cached_task_is_looked_up_before_it_runs() -> None:
    state = launched({"x": 3})
    node = state.nodes["slow_square"]
    assert node.status == "cache_lookup" and node.cache_round == 1
    assert node.cache_key == expected_key(3, 0.0)
    assert state.nodes["plain_double"].status == "waiting"


def test_a_hit_reuses_the_outputs_and_dispatches_nothing() -> None:
    state = launched({"x": 3})
    events = apply(state, report(state, "hit", outputs={"result": 9}, source_execution="old", source_node="n"))
    assert [type(e) for e in events] == [NodeCacheHit, NodeQueued]
    hit, queued = events
    assert hit.outputs == {"result": 9} and (hit.source_execution, hit.source_node) == ("old", "n")
    assert isinstance(queued, NodeQueued) and queued.node == "plain_double" and queued.inputs == {"x": 9}
    assert state.nodes["slow_square"].status == "succeeded" and state.nodes["slow_square"].cached_from == "old/n"
    assert not state.nodes["slow_square"].attempts


def test_an_unusable_entry_is_computed_again() -> None:
    state = launched({"x": 3})
    [queued] = apply(state, report(state, "hit", outputs={"result": "nine"}, source_execution="old", source_node="n"))
    assert isinstance(queued, NodeQueued) and queued.cache_key == state.nodes["slow_square"].cache_key


def test_a_reserved_key_runs_and_keeps_its_key_through_retries() -> None:
    state = launched({"x": 3})
    [queued] = apply(state, report(state, "reserved"))
    assert isinstance(queued, NodeQueued) and queued.cache_key == expected_key(3, 0.0) and queued.attempt == 1
    failure = ReportAttemptResult(
        command_id="r1",
        execution_id=EXECUTION,
        node="slow_square",
        attempt_id=attempt_id(EXECUTION, "slow_square", 1),
        worker="w",
        error=TaskError(kind="system", message="lost"),
    )
    task_name = state.nodes["slow_square"].task
    retried = msgspec.structs.replace(state.workflow.tasks[task_name], retries=1)
    state.workflow = msgspec.structs.replace(state.workflow, tasks={**state.workflow.tasks, task_name: retried})
    events = apply(state, failure)
    assert isinstance(events[-1], NodeQueued) and events[-1].attempt == 2 and events[-1].cache_key == queued.cache_key


def test_a_held_key_waits_then_looks_up_again_when_released() -> None:
    state = launched({"x": 3})
    held = report(state, "held", holder_execution="other", holder_node="slow_square", until=UNTIL)
    [waiting] = apply(state, held)
    assert isinstance(waiting, NodeCacheWaiting) and waiting.until == UNTIL and waiting.holder_execution == "other"
    assert apply(state, held) == [], "a repeated report changes nothing"
    [again] = apply(state, report(state, "released"))
    assert isinstance(again, NodeCacheLookup) and again.round == 2
    assert apply(state, report(state, "hit", round_=1, outputs={"result": 9})) == [], "round 1 is over"


def test_a_release_that_overtakes_its_held_report_still_starts_a_new_round() -> None:
    state = launched({"x": 3})
    [again] = apply(state, report(state, "released"))
    assert isinstance(again, NodeCacheLookup) and again.round == 2
    late = report(state, "held", round_=1, holder_execution="other", holder_node="n", until=UNTIL)
    assert apply(state, late) == []
    assert state.nodes["slow_square"].cache_holder == ""


def test_overwrite_cache_runs_the_task_and_stores_its_result() -> None:
    state = launched({"x": 3}, overwrite=True)
    node = state.nodes["slow_square"]
    assert node.status == "queued" and node.cache_key == expected_key(3, 0.0) and node.cache_round == 0


def test_an_execution_served_entirely_from_the_cache_succeeds() -> None:
    command = LaunchExecution(
        command_id="launch",
        execution_id=EXECUTION,
        project="tests",
        domain="dev",
        workflow=cache_workflows.increments.name,
        version=cache_workflows.increments.spec.version,
        inputs={"start": 10},
    )
    state = decide_batch(None, [ResolvedLaunch(command=command, workflow=cache_workflows.increments.spec)], AT).state
    assert state is not None
    hits = [
        ReportCacheLookup(
            command_id=f"hit-{node.id}",
            execution_id=EXECUTION,
            node=node.id,
            cache_key=node.cache_key,
            round=1,
            outcome="hit",
            outputs={"result": 7},
        )
        for node in state.nodes.values()
    ]
    together = ReportCacheLookups(command_id="hits", execution_id=EXECUTION, reports=tuple(hits))
    outcome = decide_batch(state, [together], AT)
    events = outcome.events
    assert isinstance(events[-1], ExecutionSucceeded) and events[-1].outputs == {"result": [7, 7, 7, 7]}
    assert not any(isinstance(e, NodeQueued) for e in events)
    assert outcome.command_ids == [hit.command_id for hit in hits], "reports sent together are decided one by one"


def test_the_key_depends_on_inputs_and_cache_version_but_not_on_the_code() -> None:
    spec = cache_workflows.slow_square.spec
    key = cache_key(spec.name, "1", spec.interface, {"x": 1, "seconds": 0.0})
    assert key == cache_key(spec.name, "1", spec.interface, {"seconds": 0.0, "x": 1}), "input order is canonical"
    assert key != cache_key(spec.name, "2", spec.interface, {"x": 1, "seconds": 0.0})
    assert key != cache_key(spec.name, "1", spec.interface, {"x": 2, "seconds": 0.0})
    assert key != cache_key("other.task", "1", spec.interface, {"x": 1, "seconds": 0.0})
    edited = msgspec.structs.replace(spec, version="a-new-code-version")
    assert key == cache_key(edited.name, edited.cache_version, edited.interface, {"x": 1, "seconds": 0.0})


def test_a_report_for_a_node_not_looking_up_is_ignored() -> None:
    state = launched({"x": 3})
    apply(state, report(state, "reserved"))
    assert decide(state, report(state, "hit", outputs={"result": 9})) == []
